"""napari dock widgets (Qt): everything here runs on the GUI thread except the workers."""

from .denoise_widget import DenoiseWidget
from .train_widget import TrainWidget

__all__ = ["DenoiseWidget", "TrainWidget"]
