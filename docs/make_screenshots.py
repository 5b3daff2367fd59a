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
    while widget.running:
        settle(0.1)


def main() -> int:
    IMG.mkdir(exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise", tabify=False)
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    meta = viewer.layers["noisy sample"].metadata
    settings = {"noise": "poisson-gaussian", "gain": meta["gain"], "sigma": meta["read_sigma"],
                "max_seconds": 600, "max_steps": 400}  # a fixed amount, whatever the machine
    for name, value in settings.items():
        train_w.fields[name].value = value
    settle()
    viewer.window.screenshot(str(IMG / "1_sample_and_train_widget.png"), canvas_only=False)
    train_w.train_button.native.click()
    settle(12)
    viewer.window.screenshot(str(IMG / "2_training.png"), canvas_only=False)
    wait_for(train_w)
    settle()
    denoise_w.choose_layer("noisy sample")
    denoise_w.denoise_button.native.click()
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
    train_w.advanced.expand(animate=False)
    settle()
    train_w.native.grab().save(str(IMG / "train_widget.png"))
    denoise_w.native.grab().save(str(IMG / "denoise_widget.png"))
    viewer.close()
    print(f"screenshots in {IMG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
