"""Where outputs go: checked before any work, never onto an input, with the usual permissions.

Every command (train, denoise, run, demo, the npe2 commands, the napari writer) checks its
outputs here first: ``refuse_inputs`` (no output, image or model, replaces an input however
the paths are spelled), ``check_location`` (no folder where a file goes, a writable folder,
room on the disk). ``output_error`` words an OSError met while writing in one line, and
``set_default_mode`` gives a temporary file a new file's permissions (0644 under umask 022).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import OutputError


def format_bytes(n: float) -> str:
    """A size in the largest binary unit that keeps it at or above 1: ``512 B``, ``3.4 MiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file however spelled: relative or absolute, with
    ``..``, through symlinks (both resolved), or as two hardlinks of one file (inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist: nothing to overwrite
        return False


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside the existing folder ``folder`` (both resolved)."""
    return folder.is_dir() and Path(os.path.realpath(path)).is_relative_to(
        os.path.realpath(folder))


def refuse_inputs(path: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                  what: str = "output") -> None:
    """Raise OutputError when ``path`` is one of ``inputs`` (see ``same_file``) or a folder
    that holds one (a zarr output replaces its folder whole)."""
    path = Path(path)
    for src in inputs:
        if same_file(path, src) or _inside(Path(src), path):
            raise OutputError(f"the {what} {path} would overwrite its input {src}")


def _replaceable_store(path: Path) -> bool:
    """Whether a zarr output may replace the folder ``path``: a zarr store, or empty."""
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & {".zarray", ".zgroup", "zarr.json"})


def _existing_parent(path: Path) -> Path:
    """``path``'s folder, or its nearest existing ancestor (folders are created later)."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_location(path: str | os.PathLike, nbytes: int = 0,
                   inputs: Iterable[str | os.PathLike] = (), kind: str = "file",
                   what: str = "output") -> None:
    """Refuse, before any work, an output that would replace an input (``refuse_inputs``),
    a ``kind`` ("file", "folder" of files, or "zarr": a store replaced whole) that does not
    fit what is there (e.g. a folder where a file goes, a folder that is not a zarr store),
    a read-only folder, or a disk without room for ``nbytes``."""
    path = Path(path)
    if kind == "file" and path.is_dir():  # the clearest reason, whatever the folder holds
        raise OutputError(f"cannot write {path}: a folder of that name exists")
    refuse_inputs(path, inputs, what)
    if kind == "folder":
        if path.exists() and not path.is_dir():
            raise OutputError(f"cannot write into {path}: it is a file, not a folder")
    elif path.is_dir() and (kind == "file" or not _replaceable_store(path)):
        raise OutputError(f"cannot write {path}: a folder of that name exists")
    elif kind == "zarr" and path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {path}: a file of that name exists")
    folder = path if kind == "folder" and path.is_dir() else _existing_parent(path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {folder} is read-only")
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise OutputError(f"cannot write {path}: the {what} needs {format_bytes(nbytes)}, "
                          f"the disk has {format_bytes(free)} free")


def _short_write(exc: OSError) -> bool:
    """A write that stopped short without an errno (NumPy's "N requested and M written")."""
    text = str(exc)
    return exc.errno is None and "requested and" in text and "written" in text


def output_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """One clear line for an OSError met while writing ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or _short_write(exc):
        return OutputError(f"cannot write {path}: the disk is full; nothing was kept")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"cannot write {path}: permission denied (read-only?)")
    if exc.errno == errno.EISDIR:
        return OutputError(f"cannot write {path}: a folder of that name exists")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def umask() -> int:
    """The process's umask (read from /proc where it can be, so nothing is changed)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the portable way: set, then restore at once
    os.umask(mask)
    return mask


def set_default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) or folder made by mkdtemp (0700) the mode a new
    file or folder gets from the umask (0644 or 0755 under umask 022)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())
