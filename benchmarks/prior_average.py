"""Averages of prior files, for measurement (docs/algorithm.md, stop 22).

``weights OUT FILE...`` writes the mean of the files' weights (same network) as a prior
file; ``outputs FILE,FILE[,...] ARGS...`` runs ``benchmarks/wiener_variants.py ARGS`` with
the Anscombe route's network replaced by the mean of the files' networks' outputs (a
development wrapper: the shipped package is not changed).

    python benchmarks/prior_average.py weights /tmp/soup.pt A.pt B.pt
    python benchmarks/prior_average.py outputs A.pt,B.pt ../shared/data --kinds fmd \\
        --variants base --threads 1 --out /tmp/ens.json
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

from napari_noise2score.core import prior as P
from napari_noise2score.core.network import ConditionedUNet


def average_weights(out: Path, files: list[str]) -> Path:
    """The mean of the priors' weights, with the last one's provenance and the steps of each."""
    priors = [P.load_prior(Path(f)) for f in files]
    net = priors[0].network()
    net.load_state_dict({k: sum(p.state_dict[k].float() for p in priors) / len(priors)
                         for k in priors[0].state_dict})
    provenance = dict(priors[-1].provenance)
    provenance["average_of"] = [{"file": Path(f).name, "steps": p.history[0]}
                                for f, p in zip(files, priors, strict=True)]
    return P.save_prior(out, net.eval(), provenance)


class MeanOfNetworks(ConditionedUNet):
    """A conditioned network whose output is the mean of the member priors' networks'."""

    def __init__(self, members: list[P.Prior]) -> None:
        super().__init__(**members[0].arch)
        self.load_state_dict(members[0].state_dict)
        self.others = torch.nn.ModuleList(m.network() for m in members[1:])

    def set_tau(self, tau) -> MeanOfNetworks:
        super().set_tau(tau)
        for net in self.others:
            net.set_tau(tau)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        for net in self.others:
            out = out + net(x)
        return out / (1 + len(self.others))


def run_with_mean_of_outputs(files: list[str], argv: list[str]) -> None:
    """wiener_variants.py with the Anscombe route's shipped network replaced."""
    members = [P.load_prior(Path(f)) for f in files]
    real = P.load_prior

    def load_prior(path=None, route=P.ANSCOMBE_ROUTE):
        prior = real(path, route)
        if path is not None or route != P.ANSCOMBE_ROUTE:
            return prior
        mean = P.Prior(prior.state_dict, prior.arch, prior.provenance)
        mean.network = lambda: MeanOfNetworks(members).eval()
        return mean

    P.load_prior = load_prior
    sys.argv = ["wiener_variants.py", *argv]
    runpy.run_path(str(Path(__file__).with_name("wiener_variants.py")), run_name="__main__")


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("weights", "outputs"):
        sys.exit(__doc__)
    if sys.argv[1] == "weights":
        print(f"wrote {average_weights(Path(sys.argv[2]), sys.argv[3:])}")
    else:
        run_with_mean_of_outputs(sys.argv[2].split(","), sys.argv[3:])


if __name__ == "__main__":
    main()
