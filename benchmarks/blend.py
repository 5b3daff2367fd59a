"""The fine-tune's weight-space blend (``finetune.BLEND``) at several shares, from one
fine-tune per model group: every low-photon group of ``benchmarks/lowphoton.py`` (FMD 5,
synthetic two-photon 6, W2S 3 channels x 8) is fine-tuned once from the prior
(``train(noise="auto")``, ``--max-steps``), and the network kept by the fine-tune's
criterion is blended with the prior at each ``--shares`` value (0: the prior itself, 1: the
fine-tuned network) and scored on every image of the group. PSNR dB and intensity-matched
PSNR (``lowphoton.metrics``), per kind and per image.

    python benchmarks/blend.py ../shared/data --max-steps 1000 \\
        --out benchmarks/results/blend.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from napari_noise2score import denoise, train
from napari_noise2score.core import finetune

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lowphoton as L  # noqa: E402

_blend = finetune.blend
_seen: dict = {}


def _recording_blend(start: dict, tuned: dict, share: float) -> dict:
    """finetune.blend, keeping the prior's and the kept network's weights of the last run."""
    _seen.update(start={k: v.clone() for k, v in start.items()},
                 tuned={k: v.clone() for k, v in tuned.items()})
    return _blend(start, tuned, share)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--kinds", default="fmd,twophoton,w2s")
    p.add_argument("--shares", default="0,0.25,0.5,0.75,1")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "blend.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shares = [float(v) for v in args.shares.split(",")]
    finetune.blend = _recording_blend
    results: dict[str, list] = {}
    for kind in args.kinds.split(","):
        for group in L.groups(args.data, kind):
            _seen.clear()
            model = train(group.noisy, noise="auto", seed=args.seed, max_steps=args.max_steps)
            if not _seen:
                print(f"{kind}/{group.name}: no blend (not the Anscombe route); skipped")
                continue
            rows = [{"image": n} for n in group.names]
            for share in shares:
                model.net.load_state_dict(_blend(_seen["start"], _seen["tuned"], share))
                for row, noisy, clean in zip(rows, group.noisy, group.clean, strict=True):
                    m = L.metrics(clean, denoise(noisy, model))
                    row[f"{share:g}"] = (m["psnr"], m["psnr_matched"])
            for row in rows:
                print(kind, row, flush=True)
            results.setdefault(kind, []).extend(rows)
    L.write_variant_results(args.out, results, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
