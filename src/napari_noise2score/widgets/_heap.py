"""Python's full garbage collection walks every object in the process while holding the GIL:
with napari, Qt and torch loaded that heap takes 0.1-0.5 s to walk on a laptop CPU, and a
training loop's allocations trigger such a walk every half minute or so, which freezes the
viewer that long. While a widget's worker runs, the objects that existed when it started
are frozen (``gc.freeze``: left out of collections, still freed by reference counting), so
a collection only walks what was allocated since; they are thawed when the last worker ends."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

_lock = threading.Lock()
_holds = 0


def hold_heap_still() -> Callable[[], None]:
    """Freeze the current heap for a job; returns the (idempotent) release for its end."""
    global _holds
    with _lock:
        if _holds == 0:
            gc.freeze()
        _holds += 1
    released = False

    def release() -> None:
        global _holds
        nonlocal released
        with _lock:
            if released:
                return
            released = True
            _holds -= 1
            if _holds == 0:
                gc.unfreeze()

    return release
