"""napari dock widgets (magicgui containers): everything here runs on the GUI thread except
the workers (napari thread_workers)."""

from ._common import engine_ready
from .denoise_widget import DenoiseWidget
from .train_widget import TrainWidget

__all__ = ["DenoiseWidget", "TrainWidget", "engine_ready"]
