"""The model shared by the Train and Denoise widgets of one viewer."""

from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal


class ModelStore:
    """Holds the current model of a viewer; ``changed`` fires when it is replaced."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.model: Any = None
        self.source: str = ""

    def set(self, model: Any, source: str) -> None:
        self.model, self.source = model, source
        self.changed.emit(model)


_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_for(viewer: Any) -> ModelStore:
    """The one ModelStore of ``viewer`` (made on first use)."""
    if viewer not in _STORES:
        _STORES[viewer] = ModelStore()
    return _STORES[viewer]
