"""Atomic outputs: every file or folder is written under a temporary name beside it,
``.NAME.HOST.PID.RANDOM.tmp``, and renamed when complete, so an existing output is always a
finished one; the leftovers of killed writers are recognised and removed."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .outputs import output_error, set_default_mode

#: A temporary output untouched this long is a leftover whatever wrote it (another host's,
#: or one whose writer cannot be told): a live writer touches it at every plane.
STALE_AFTER_SECONDS = 24 * 3600


@contextmanager
def atomic_output(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """A temporary file (or folder) beside ``path``, ``.NAME.HOST.PID.RANDOM.tmp`` with the
    umask's permissions, renamed to ``path`` when the block ends and removed if it raises
    (an OSError then becomes one clear OutputError). Leftovers of killed writers of the
    same output are removed first (``remove_stale_temporaries``)."""
    path = Path(path)
    prefix = f".{path.name}.{_host()}.{os.getpid()}."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
        set_default_mode(tmp, directory)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        yield tmp
        if directory and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise output_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def _host() -> str:
    """This machine's name as it appears in temporary names: letters, digits and dashes."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32] or "host"


def _fields(tmp: Path, output_name: str) -> list[str]:
    """What a temporary name adds to ``.NAME.`` before ``.tmp``, split at the dots."""
    return tmp.name[len(output_name) + 2 : -len(".tmp")].split(".")


def temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary outputs of the output ``path`` by any writer: ``.NAME.HOST.PID.RANDOM.tmp``
    or, from older versions, ``.NAME.RANDOM.tmp``."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    head = f".{path.name}."
    found = [p for p in path.parent.iterdir()
             if p.name.startswith(head) and p.name.endswith(".tmp")]
    return sorted(p for p in found if len(_fields(p, path.name)) in (1, 3))


def _writer(tmp: Path, output_name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that writes ``tmp``, or None when its name does not say."""
    fields = _fields(tmp, output_name)
    if len(fields) != 3 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _mtimes(tmp: Path) -> Iterator[float]:
    """Modification times of a temporary file, or of a temporary zarr folder and its files."""
    yield tmp.stat().st_mtime
    if tmp.is_dir():
        for root, _dirs, files in os.walk(tmp):
            yield os.stat(root).st_mtime
            for name in files:
                yield os.stat(os.path.join(root, name)).st_mtime


def is_stale(tmp: Path, output_name: str, max_age: float = STALE_AFTER_SECONDS) -> bool:
    """Whether a temporary output is a leftover of a killed run: its writer, named in it, ran
    on this host and is gone; or (another host's, or an unnamed writer) nothing in it
    changed for ``max_age`` seconds."""
    writer = _writer(tmp, output_name)
    try:
        if writer is not None and writer[0] == _host():
            return not _process_alive(writer[1])
        newest = time.time() - max_age
        return not any(t > newest for t in _mtimes(tmp))
    except FileNotFoundError:  # its writer just finished or removed it
        return False


def remove_stale_temporaries(path: str | os.PathLike,
                             max_age: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the leftover temporary outputs of ``path`` (see ``is_stale``); those of live
    writers (another run sharing the folder) stay. Returns what was removed."""
    name = Path(path).name
    removed = []
    for tmp in temporaries(path):
        if is_stale(tmp, name, max_age):
            try:
                _remove(tmp)
            except OSError:  # not ours to remove (permissions): leave it
                continue
            removed.append(tmp)
    return removed


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
