"""The prior fine-tuned on the Anscombe route is blended with its start (finetune.BLEND)."""

import numpy as np
import torch

from helpers import smooth_image
from napari_noise2score._sample_data import two_photon_like
from napari_noise2score.core import finetune
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.prior import load_prior
from napari_noise2score.core.training import TrainDone, TrainNote, iter_training


def test_blend_is_the_weighted_point_between_start_and_tuned():
    start = {"w": torch.zeros(3), "n": torch.tensor(7)}
    tuned = {"w": torch.tensor([2.0, 4.0, -2.0]), "n": torch.tensor(9)}
    out = finetune.blend(start, tuned, 0.25)
    assert torch.allclose(out["w"], torch.tensor([0.5, 1.0, -0.5])) and out["n"] == 9


def _fine_tune(monkeypatch, share: float):
    monkeypatch.setattr(finetune, "BLEND", share)
    clean = smooth_image(256, 3) * 40.0
    noisy, _ = two_photon_like(clean, photons=clean.max() / 26.0, gain=26.0, read=10.0,
                               offset=14.0, seed=4)
    config = TrainConfig(noise="auto", max_steps=30, max_seconds=None, seed=0)
    notes, model = [], None
    for update in iter_training(noisy, config):
        if isinstance(update, TrainNote):
            notes.append(update.text)
        if isinstance(update, TrainDone):
            model = update.model
    assert model.config.anscombe and model.conditioned
    return model, notes


def test_a_fine_tuned_prior_keeps_the_blended_share_of_its_change(monkeypatch):
    prior = load_prior().state_dict
    tuned, notes = _fine_tune(monkeypatch, 1.0)
    assert any("1 of its change from the start kept" in n for n in notes), notes
    start, _ = _fine_tune(monkeypatch, 0.0)
    state = start.net.state_dict()
    assert all(torch.equal(state[k].cpu(), prior[k]) for k in prior)
    half, _ = _fine_tune(monkeypatch, 0.5)
    t, h = tuned.net.state_dict(), half.net.state_dict()
    k = next(k for k in prior if prior[k].is_floating_point() and not torch.equal(t[k], prior[k]))
    assert np.allclose(h[k].numpy(), (prior[k] + 0.5 * (t[k] - prior[k])).numpy(), atol=1e-6)
