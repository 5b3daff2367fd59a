"""The AR-DAE loss recovers a known score."""

import numpy as np
import torch

from napari_noise2score.core.training import annealed_sigma, ardae_loss


def mixture(z: np.ndarray, means, stds, weights) -> tuple[np.ndarray, np.ndarray]:
    """Density and score (d/dz log density) of a 1-D Gaussian mixture."""
    comps = np.stack([w / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((z - m) / s) ** 2)
                      for m, s, w in zip(means, stds, weights, strict=True)])
    grads = np.stack([-(z - m) / s**2 for m, s in zip(means, stds, strict=True)])
    density = comps.sum(0)
    return density, (comps * grads).sum(0) / density


def test_ardae_loss_recovers_gaussian_mixture_score():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    means, stds, weights = (-1.0, 1.5), (0.4, 0.6), (0.4, 0.6)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64), torch.nn.SiLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps, s_max, s_min, n = 2000, 0.5, 0.1, 4096
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        s = annealed_sigma(step / steps, s_max, s_min)
        first = rng.random(n) < weights[0]
        y = np.where(first, rng.normal(means[0], stds[0], n), rng.normal(means[1], stds[1], n))
        y = torch.tensor(y, dtype=torch.float32)[:, None]
        u = torch.randn_like(y)
        y, u = torch.cat([y, y]), torch.cat([u, -u])  # antithetic pairs, as in training
        loss = ardae_loss(net(y + s * u), u, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    # the minimiser is the score of the data smoothed by the last sigma_a
    z = np.linspace(-2.5, 3.5, 121)
    smoothed = [np.sqrt(sd**2 + s**2) for sd in stds]
    density, expected = mixture(z, means, smoothed, weights)
    with torch.no_grad():
        got = net(torch.tensor(z, dtype=torch.float32)[:, None])[:, 0].numpy()
    err = np.abs(got - expected)
    scale = np.abs(expected).max()
    # density-weighted mean error within 2% of the score's range
    assert (density * err).sum() / density.sum() < 0.02 * scale
    # and where the data are (within one std of either mode) within 10%
    core = (np.abs(z - means[0]) < stds[0]) | (np.abs(z - means[1]) < stds[1])
    assert err[core].max() < 0.1 * scale
    # the score takes both signs, as it must
    assert (got > 1).any() and (got < -1).any()


def test_annealing_runs_from_max_to_min():
    assert annealed_sigma(0.0, 0.05, 0.001) == 0.05
    assert abs(annealed_sigma(1.0, 0.05, 0.001) - 0.001) < 1e-12
    mid = annealed_sigma(0.5, 0.05, 0.001)
    assert 0.001 < mid < 0.05 and abs(mid - np.sqrt(0.05 * 0.001)) < 1e-9
