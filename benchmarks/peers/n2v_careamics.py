"""Noise2Void peer denoiser via CAREamics (self-supervised, trained on the image itself).

Usage:
    python benchmarks/peers/n2v_careamics.py NOISY.tif OUT.tif --max-seconds 120 [--seed 0]

Trains a 2-D N2V (CAREamics ``create_advanced_n2v_config``, default UNet, patch
64x64, batch 16, Adam + ReduceLROnPlateau, CAREamics' default augmentations)
on the noisy image itself, or on all planes of a 3-D TIFF (a stack of 2-D
captures, axes SYX: one model for the stack, as a user trains on a stack), then
predicts every plane with the last checkpoint. The output is written as float32
in the input's units and shape.

Training budget: the Lightning trainer gets ``max_time = max_seconds`` and an
epoch count it never reaches (``UNBOUNDED_EPOCHS``), so N2V trains for the whole
budget on any machine (an earlier version planned the epochs from a per-epoch
time measured on a loaded machine and stopped after about 35 s of 120).
Prediction time is not part of the budget.

Environment note: CAREamics imports torchvision, and the only torchvision
wheel matching torch 2.13.0 that pip can get here (0.28.0 from PyPI) is the
CUDA build, whose C extension cannot load next to the CPU torch. Its pure
Python part is fine, except that ``import torchvision`` fails while
registering fake kernels for the ``torchvision::nms``/``qnms`` operators that
the missing extension would have defined. ``_import_careamics`` detects that
case and defines those two operator schemas (no kernels) before importing
torchvision again. N2V never calls these operators.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Epochs planned: never reached, the time budget (max_time) ends training.
UNBOUNDED_EPOCHS = 100_000

PATCH = 64
BATCH = 16


def _import_careamics():
    """Import careamics, working around a CUDA-only torchvision wheel (see module doc)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _import_careamics._keepalive = lib  # the Library must outlive the import
        import torchvision  # noqa: F401,F811
    import careamics

    return careamics


def _epoch_timer():
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.train_start = None
            self.epoch_ends = []

        def on_train_start(self, trainer, pl_module):
            self.train_start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epoch_ends.append(time.perf_counter())

    return EpochTimer()


def n2v_denoise(
    noisy: np.ndarray,
    max_seconds: float = 120,
    seed: int = 0,
    *,
    n_epochs: int | None = None,
    info: dict | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Train Noise2Void on ``noisy`` (2-D) itself and return its prediction.

    Parameters
    ----------
    noisy : 2-D image, or a stack of 2-D planes (S, Y, X) sharing one model
        (any numeric dtype).
    max_seconds : training time budget in seconds (prediction excluded).
    seed : seed for CAREamics / Lightning (patch sampling, masking, init).
    n_epochs : override the number of epochs derived from ``max_seconds``
        (the ``max_seconds`` hard stop still applies).
    info : if a dict is given, it is filled with run statistics
        (epochs planned / run, per-epoch seconds, train and predict seconds).
    verbose : show Lightning's progress bar and model summary.

    Returns
    -------
    float32 array of the same shape, in the input's units.
    """
    noisy = np.asarray(noisy)
    if noisy.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D image or a stack of them, got shape {noisy.shape}")
    axes = "YX" if noisy.ndim == 2 else "SYX"
    if min(noisy.shape[-2:]) < PATCH:
        raise ValueError(f"image smaller than the {PATCH}x{PATCH} patch size")
    _import_careamics()
    import torch
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    torch.manual_seed(seed)
    if n_epochs is None:
        n_epochs = UNBOUNDED_EPOCHS
    total = int(math.ceil(max_seconds))
    days, hours = total // 86400, total % 86400 // 3600
    max_time = f"{days:02d}:{hours:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"

    config = create_advanced_n2v_config(
        experiment_name="n2v_single_image",
        data_type="array",
        axes=axes,
        patch_size=[PATCH, PATCH],
        batch_size=BATCH,
        num_epochs=n_epochs,
        num_workers=0,
        seed=seed + 1,  # CAREamics requires seed > 0
        trainer_params={
            "accelerator": "cpu",
            "max_time": max_time,
            "enable_model_summary": verbose,
        },
    )

    timer = _epoch_timer()
    data = noisy.astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="n2v_careamics_") as work_dir:
        engine = CAREamist(
            config, work_dir=work_dir, callbacks=[timer], enable_progress_bar=verbose
        )
        t0 = time.perf_counter()
        engine.train(train_data=data)
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds, _ = engine.predict(data, data_type="array", axes=axes)
        t_pred = time.perf_counter() - t1
    out = np.concatenate([np.asarray(p, np.float32).reshape(-1, *noisy.shape[-2:])
                          for p in preds]).reshape(noisy.shape)

    if info is not None:
        ends = timer.epoch_ends
        starts = [timer.train_start] + ends[:-1] if ends else []
        per_epoch = [e - s for s, e in zip(starts, ends, strict=False)]
        info.update(
            epochs_planned=n_epochs,
            epochs_run=len(ends),
            sec_per_epoch_median=float(np.median(per_epoch)) if per_epoch else float("nan"),
            sec_per_epoch_first=per_epoch[0] if per_epoch else float("nan"),
            train_seconds=t_train,
            predict_seconds=t_pred,
        )
    return out


def main(argv=None) -> int:
    import tifffile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("noisy", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override the derived epoch count")
    ap.add_argument("--clean", type=Path, default=None,
                    help="optional clean reference (uint8): prints PSNR of noisy and output, "
                    "/255, output clipped to [0,1]")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    noisy = tifffile.imread(args.noisy)
    info: dict = {}
    out = n2v_denoise(noisy, max_seconds=args.max_seconds, seed=args.seed,
                      n_epochs=args.epochs, info=info, verbose=args.verbose)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(args.out, out)
    print(
        f"epochs {info['epochs_run']}/{info['epochs_planned']}, "
        f"{info['sec_per_epoch_median']:.2f} s/epoch "
        f"(median; first {info['sec_per_epoch_first']:.2f} s), "
        f"train {info['train_seconds']:.1f} s, predict {info['predict_seconds']:.1f} s"
    )
    if args.clean is not None:
        clean = tifffile.imread(args.clean).astype(np.float64) / 255.0

        def psnr(x):
            return 10 * np.log10(1.0 / np.mean((x - clean) ** 2))

        print(f"PSNR noisy {psnr(noisy.astype(np.float64) / 255.0):.2f} dB, "
              f"N2V {psnr(np.clip(out.astype(np.float64) / 255.0, 0, 1)):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
