"""Regenerate the walkthrough screenshots in docs/img/ from the real widgets in a real viewer.

    xvfb-run -a python docs/make_screenshots.py        # or with a display: python docs/...
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

IMG = Path(__file__).resolve().parent / "img"
PLUGIN = "napari-noise2score"


def settle(seconds: float = 0.3) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:  # keep the GUI alive without spinning a core
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(widget) -> None:
    while widget.worker is not None:
        settle(0.1)


def main() -> int:
    IMG.mkdir(exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise", tabify=False)
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    meta = viewer.layers["noisy sample"].metadata
    train_w.noise.setCurrentText("poisson-gaussian")
    train_w.params["gain"].setValue(meta["gain"])
    train_w.params["sigma"].setValue(meta["read_sigma"])
    train_w.max_seconds.setValue(600)
    train_w.max_steps.setValue(400)  # a fixed amount of training, whatever the machine
    settle()
    viewer.window.screenshot(str(IMG / "1_sample_and_train_widget.png"), canvas_only=False)
    train_w.train_button.click()
    settle(12)
    viewer.window.screenshot(str(IMG / "2_training.png"), canvas_only=False)
    wait_for(train_w)
    settle()
    denoise_w.layer_picker.setCurrentText("noisy sample")
    denoise_w.denoise_button.click()
    wait_for(denoise_w)
    settle()
    viewer.layers["noisy sample"].visible = False
    viewer.canvas.grid.enabled = False
    settle()
    viewer.window.screenshot(str(IMG / "3_denoised.png"), canvas_only=False)
    viewer.layers["noisy sample"].visible = True
    viewer.canvas.grid.enabled = True
    viewer.layers["clean reference"].visible = True
    viewer.reset_view()
    settle()
    viewer.window.screenshot(str(IMG / "4_side_by_side.png"), canvas_only=False)
    train_w.grab().save(str(IMG / "train_widget.png"))
    denoise_w.grab().save(str(IMG / "denoise_widget.png"))
    viewer.close()
    print(f"screenshots in {IMG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
