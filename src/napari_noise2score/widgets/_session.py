"""The model shared by the Train and Denoise widgets of one viewer."""

from __future__ import annotations

import weakref
from pathlib import Path
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

    def load(self, path: str | Path) -> Any:
        """Read a model file into the store (Noise2ScoreError when it cannot be read)."""
        from ..api import load_model

        model = load_model(path)
        self.set(model, f"loaded from {Path(path).name}")
        return model


_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_for(viewer: Any) -> ModelStore:
    """The one ModelStore of ``viewer`` (made on first use)."""
    if viewer not in _STORES:
        _STORES[viewer] = ModelStore()
    return _STORES[viewer]
