"""Markdown tables and the PSNR-vs-budget plot from a set12.py result file.

    python benchmarks/report.py benchmarks/results/set12.json --plot docs/img/set12_budget.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def mean(rows, key, i):
    return float(np.mean([r[key][i] for r in rows]))


def summary(result: dict) -> str:
    lines = [
        "| noise | budget (s) | steps | noisy PSNR / SSIM | Noise2Score PSNR / SSIM "
        "| BM3D PSNR / SSIM | N2S train s | N2S infer s (12 img) | BM3D s (12 img) "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        rows = run["rows"]
        bm3d = (f"{mean(rows, 'bm3d', 0):.2f} / {mean(rows, 'bm3d', 1):.3f}"
                if "bm3d" in rows[0] else "-")
        bm3d_s = f"{sum(r['bm3d_seconds'] for r in rows):.1f}" if "bm3d" in rows[0] else "-"
        lines.append(
            f"| {run['setting']} | {run['budget_s']:.0f} | {run['steps']} "
            f"| {mean(rows, 'noisy', 0):.2f} / {mean(rows, 'noisy', 1):.3f} "
            f"| {mean(rows, 'noise2score', 0):.2f} / {mean(rows, 'noise2score', 1):.3f} "
            f"| {bm3d} | {run['train_s']:.0f} | {run['infer_s']:.2f} | {bm3d_s} "
            f"| {run['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def per_image(result: dict, setting: str, budget: float) -> str:
    run = next(r for r in result["runs"]
               if r["setting"] == setting and r["budget_s"] == budget)
    lines = ["| image | noisy | Noise2Score | BM3D |", "|---|---|---|---|"]
    for r in run["rows"]:
        b = f"{r['bm3d'][0]:.2f} / {r['bm3d'][1]:.3f}" if "bm3d" in r else "-"
        lines.append(f"| {r['image']:02d} | {r['noisy'][0]:.2f} / {r['noisy'][1]:.3f} "
                     f"| {r['noise2score'][0]:.2f} / {r['noise2score'][1]:.3f} | {b} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((r for r in result["runs"] if r["setting"] == "gaussian25"),
                  key=lambda r: r["budget_s"])
    x = [r["budget_s"] for r in runs]
    y = [mean(r["rows"], "noise2score", 0) for r in runs]
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.plot(x, y, "o-", label="Noise2Score (this plugin, CPU)")
    bm3d = [r for r in runs if "bm3d" in r["rows"][0]]
    if bm3d:
        ax.axhline(mean(bm3d[0]["rows"], "bm3d", 0), color="k", ls="--", label="BM3D (true sigma)")
    ax.axhline(30.13, color="gray", ls=":", label="Noise2Score paper (GPU, hours)")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training budget (s, 2-core CPU)")
    ax.set_ylabel("mean PSNR (dB), Set12, sigma=25")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("result", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    result = json.loads(args.result.read_text())
    print(summary(result))
    print()
    tp = result["throughput"]
    print(f"Inference on one {tp['size']}x{tp['size']} plane: {tp['seconds']:.2f} s, "
          f"{tp['mpix_per_s']:.2f} megapixels/s")
    print()
    print(per_image(result, "gaussian25", max(r["budget_s"] for r in result["runs"]
                                             if "bm3d" in r["rows"][0])))
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
