"""`napari-noise2score gui`: napari with both dock widgets and the given files (or the
bundled sample) loaded; imports napari only when called."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .core.errors import Noise2ScoreError

PLUGIN = "napari-noise2score"


def open_viewer(files: Sequence[Path] = (), show: bool = True):
    """A napari viewer with the Train and Denoise widgets docked and ``files`` opened (the
    synthetic sample when there are none). Returns the viewer; ``show=False`` for tests."""
    try:
        import napari
    except ImportError as exc:  # headless install without the napari extra
        raise Noise2ScoreError("napari is not installed; install it with: pip install "
                               "'napari-noise2score[napari]'") from exc
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise Noise2ScoreError(f"no such file: {', '.join(missing)}")
    viewer = napari.Viewer(show=show)
    for path in files:
        viewer.open(str(path))
    if not files:
        viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    return viewer


def run_gui(files: Sequence[Path] = ()) -> None:
    """Open the viewer and run napari's event loop until it is closed."""
    import napari

    open_viewer(files)
    napari.run()
