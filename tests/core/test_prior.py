"""The pretrained prior: shipped weights, denoising with no training, fine-tuning that never
ends below its start, refusals outside its range, and the pre-training script."""

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import ROOT, psnr, smooth_image
from napari_noise2score import api
from napari_noise2score.cli import main
from napari_noise2score.core import prior as P
from napari_noise2score.core.device import available_devices
from napari_noise2score.core.noise import NoiseParams, simulate
from napari_noise2score.core.training import TrainDone, TrainNote, TrainProgress, iter_training

FAST = dict(max_seconds=None, patch_size=48, batch_size=8, device="cpu", tta=False)


@pytest.fixture(scope="module")
def case():
    """A 128 x 128 8-bit-range image with Gaussian noise sigma 25 (as float32)."""
    clean = np.stack([smooth_image(128, 3)]) * 220.0
    return clean, simulate(clean, NoiseParams("gaussian", 25.0), seed=4).astype(np.float32)


def finetune(noisy, stop=None, **options):
    updates = list(iter_training(noisy, api.make_config(noise="gaussian", sigma=25.0,
                                                        **{**FAST, **options}), stop))
    assert isinstance(updates[-1], TrainDone)
    return updates


def zero_shot(noisy):
    return api.denoise(noisy, api.load_model("pretrained").with_options(tta=False), sigma=25.0)


def test_weights_ship_inside_the_package():
    assert set(P.PRIOR_FILES) == {P.GAUSSIAN_ROUTE, P.ANSCOMBE_ROUTE}
    for route, path in P.PRIOR_FILES.items():
        assert path.is_file() and ROOT / "src" in path.parents
        assert path.stat().st_size < 8 * 2**20
        provenance = P.load_prior(route=route).provenance
        assert provenance["steps"] > 0 and provenance["commit"]
        assert "Train400" in provenance["data"]
    assert "weights/*.pt" in (ROOT / "pyproject.toml").read_text()
    # both files continue one self-supervised run, each its own way (docs/algorithm.md)
    gaussian = P.load_prior(route=P.GAUSSIAN_ROUTE).provenance
    anscombe = P.load_prior(route=P.ANSCOMBE_ROUTE).provenance
    start = gaussian["started_from"]
    assert start == anscombe["started_from"] and "AR-DAE" in start["data"]
    assert start["steps"] < min(gaussian["steps"], anscombe["steps"])
    assert "denoising score matching" in anscombe["data"]
    assert "W2S clean FOV 4-50" in anscombe["data"]


def _same_weights(net, prior) -> bool:
    return all(torch.equal(v.cpu(), prior.state_dict[k]) for k, v in net.state_dict().items())


def test_each_route_denoises_and_fine_tunes_with_its_own_prior(case):
    gaussian = P.load_prior(route=P.GAUSSIAN_ROUTE)
    anscombe = P.load_prior(route=P.ANSCOMBE_ROUTE)
    unbound = api.load_model("pretrained")
    bound, line = P.bind(unbound, [case[1][0]], sigma=25.0)
    assert "Gaussian noise" in line and _same_weights(bound.net, gaussian)
    assert bound.steps == gaussian.history[0]
    counts = (np.random.default_rng(3).poisson(case[0][0] / 4) * 4.0).astype(np.float32)
    bound, line = P.bind(unbound, [counts], gain=4.0)
    assert "Anscombe route" in line and _same_weights(bound.net, anscombe)
    assert bound.steps == anscombe.history[0]
    notes = [u.text for u in finetune(case[1], max_steps=1) if isinstance(u, TrainNote)]
    assert f"({gaussian.history[0]} pre-training steps)" in notes[0]


def test_pretrained_denoises_offline_from_the_cli(tmp_path, case, monkeypatch, capsys):
    clean, noisy = case
    src = tmp_path / "noisy.tif"
    tifffile.imwrite(src, np.clip(noisy[0], 0, 255).astype(np.uint8))

    def no_network(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    main(["denoise", str(src), "--model", "pretrained", "-o", str(tmp_path / "out.tif")])
    assert "pretrained prior: Gaussian noise sigma" in capsys.readouterr().out
    out = tifffile.imread(tmp_path / "out.tif")
    assert psnr(clean[0], out, 255) > psnr(clean[0], noisy[0], 255) + 4.0


def test_npe2_denoise_and_train_take_the_prior(tmp_path, case):
    from napari_noise2score import _commands

    clean, noisy = case
    src = tmp_path / "noisy.tif"
    tifffile.imwrite(src, np.clip(noisy[0], 0, 255).astype(np.uint8))
    summary = _commands.denoise(inputs=str(src), model="pretrained", sigma=25.0,
                                output=str(tmp_path / "out.tif"))
    assert len(summary["done"]) == 1 and not summary["failed"]
    out = tifffile.imread(tmp_path / "out.tif")
    assert psnr(clean[0], out, 255) > psnr(clean[0], noisy[0], 255) + 4.0
    path = _commands.train(inputs=str(src), output=str(tmp_path / "m.n2s"), sigma=25.0,
                           max_seconds=None, max_steps=3, init="pretrained", patch_size=48)
    assert api.load_model(path, device="cpu").config.network == "conditioned"


def test_load_model_pretrained_binds_to_the_data(case):
    clean, noisy = case
    model = api.load_model("pretrained", device="cpu")
    assert P.is_unbound(model)
    given = api.denoise(noisy, model, sigma=25.0)
    estimated = api.denoise(noisy, model)  # sigma estimated from the image
    for out in (given, estimated):
        assert psnr(clean, out, 255) > psnr(clean, noisy, 255) + 4.0


@pytest.mark.parametrize("options, match", [
    (dict(sigma=200.0), r"outside the prior's range \(5 to 75 / 255\)"),
    (dict(sigma=0.5), r"outside the prior's range"),
    (dict(shape=5.0), r"gamma noise is outside the prior's range"),
])
def test_prior_refuses_noise_outside_its_range(case, options, match):
    _, noisy = case
    with pytest.raises(P.PriorRangeError, match=match) as info:
        api.denoise(noisy, "pretrained", **options)
    assert "\n" not in str(info.value)


def test_init_pretrained_refuses_and_auto_falls_back_to_scratch(case):
    _, noisy = case
    counts = np.random.default_rng(0).poisson(20.0, (1, 64, 64)).astype(np.float32)
    counts_route = dict(noise="poisson", gain=1.0, transform="none", max_steps=2, **FAST)
    config = api.make_config(init="pretrained", **counts_route)
    with pytest.raises(P.PriorRangeError, match="outside the prior's range"):
        list(iter_training(counts, config))
    config = api.make_config(**counts_route)
    notes = [u.text for u in iter_training(counts, config) if isinstance(u, TrainNote)]
    assert notes[0].startswith("training from scratch: poisson noise is outside")
    config = api.make_config(noise="poisson", gain=1.0, max_steps=2, **FAST)  # Anscombe route
    notes = [u.text for u in iter_training(counts, config) if isinstance(u, TrainNote)]
    assert notes[0].startswith("fine-tuning the pretrained prior")
    updates = finetune(noisy, max_steps=2, init="scratch")
    assert [u.text for u in updates if isinstance(u, TrainNote)] == [
        "training from scratch (as asked)"]
    assert updates[-1].model.config.network == "plain"


def test_finetune_never_ends_below_the_prior(case):
    clean, noisy = case
    start = psnr(clean, zero_shot(noisy), 255)
    wrecked = finetune(noisy, max_steps=20, learning_rate=20.0)  # a rate that ruins the net
    notes = [u.text for u in wrecked if isinstance(u, TrainNote)]
    assert notes[0].startswith("fine-tuning the pretrained prior")
    assert "the starting model" in notes[-1]
    kept = api.denoise(noisy, wrecked[-1].model)
    assert psnr(clean, kept, 255) == pytest.approx(start, abs=1e-4)
    tuned = finetune(noisy, max_steps=60)[-1].model
    assert tuned.config.network == "conditioned" and tuned.steps == 60
    assert psnr(clean, api.denoise(noisy, tuned), 255) >= start - 0.05


def test_stop_mid_finetune_gives_a_usable_model(case, tmp_path):
    clean, noisy = case
    steps = []

    def stop():
        return len(steps) >= 3

    for update in iter_training(noisy, api.make_config(noise="gaussian", sigma=25.0,
                                                       max_steps=10_000, **FAST), stop):
        if isinstance(update, TrainProgress):
            steps.append(update.step)
    assert isinstance(update, TrainDone) and update.stopped and update.model.steps == 3
    path = update.model.save(tmp_path / "tuned.n2s")
    loaded = api.load_model(path, device="cpu")
    out = api.denoise(noisy, loaded)
    assert np.allclose(out, api.denoise(noisy, update.model), atol=1e-4)
    assert psnr(clean, out, 255) > psnr(clean, noisy, 255) + 4.0
    with pytest.raises(P.PriorRangeError):
        api.denoise(noisy, loaded, sigma=300.0)


def _script():
    spec = importlib.util.spec_from_file_location("pretrain", ROOT / "scripts" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pretrain"] = module  # its dataclass needs its module registered
    spec.loader.exec_module(module)
    return module


def _fake_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "train400").mkdir(parents=True)
    for i in range(3):
        img = (smooth_image(96, i) * 255).astype(np.uint8)
        Image.fromarray(img).save(root / "train400" / f"test_{i:03d}.png")
    for folder, fov in (("noisy", 1), ("clean", 51)):
        (root / "w2s" / folder).mkdir(parents=True)
        clean = smooth_image(256, 9) * 100
        img = clean if folder == "clean" else 10.0 * rng.poisson(clean / 10) + 5 + rng.normal(
            0, 3, clean.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / "w2s" / folder / f"fov{fov:03d}_ch1.png")


def test_pretrain_script_checkpoints_resumes_and_exports(tmp_path):
    script = _script()
    _fake_data(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--out", str(out), "--data", str(tmp_path / "data"), "--validate-every", "0"]
    script.main([*common, "--max-steps", "4"])
    script.main([*common, "--max-steps", "7"])  # resumes at step 4 from the checkpoint
    log = [line for line in (out / "log.jsonl").read_text().splitlines() if line]
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in log]
    assert steps[0] == 0 and 4 in steps and steps[-1] == 7 and steps == sorted(steps)
    assert "psnr_sigma25" in log[-1]
    target = tmp_path / "prior.pt"
    script.main([*common, "--export", str(target)])
    exported = P.load_prior(target)
    assert exported.provenance["steps"] == 7 and exported.provenance["validation"]["step"] == 7
    # a second run starts from that prior file and decays the learning rate
    second = tmp_path / "second"
    script.main(["--out", str(second), "--data", str(tmp_path / "data"), "--validate-every",
                 "0", "--init", str(target), "--decay", "7", "9", "--max-steps", "10"])
    state = torch.load(second / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 10 and state["started_from"]["steps"] == 7
    assert state["opt"]["param_groups"][0]["lr"] == pytest.approx(2.5e-5)
    cfg = script.PretrainConfig(decay=(7, 9))
    assert cfg.lr_at(7) == cfg.learning_rate and cfg.lr_at(8) == pytest.approx(
        (cfg.learning_rate + cfg.final_lr) / 2)
    script.main(["--out", str(second), "--data", str(tmp_path / "data"), "--export",
                 str(tmp_path / "second.pt")])
    assert P.load_prior(tmp_path / "second.pt").provenance["started_from"]["steps"] == 7


def test_init_from_a_model_file(case, tmp_path):
    _, noisy = case
    first = finetune(noisy, max_steps=2)[-1].model
    path = first.save(tmp_path / "first.n2s")
    updates = finetune(noisy, max_steps=2, init=str(path))
    assert [u.text for u in updates if isinstance(u, TrainNote)][0] == f"fine-tuning {path}"
    assert updates[-1].model.config.init == str(path)
    plain = finetune(noisy, max_steps=2, init="scratch")[-1].model.save(tmp_path / "plain.n2s")
    assert finetune(noisy, max_steps=2, init=str(plain))[-1].model.config.network == "plain"
    with pytest.raises(api.Noise2ScoreError, match="none of 'auto', 'pretrained', 'scratch'"):
        finetune(noisy, max_steps=2, init="pretrain")


def test_anscombe_route_domain_takes_the_scale_factor_within_the_range():
    """On the Anscombe route the prior's domain is the transformed planes' scale times
    ANSCOMBE_SCALE, unless the noise std (1 / the domain's scale) would leave the prior's
    range: then as far as the range allows, and data the range served before still is."""
    from napari_noise2score.core.config import TrainConfig

    cfg = TrainConfig(noise="poisson-gaussian", gain=10.0, sigma=5.0, transform="anscombe")
    hi = 1.0 / P.TAU_RANGE[1]
    assert P.anscombe_model(cfg, 10.0).scale == pytest.approx(10.0 * P.ANSCOMBE_SCALE)
    near = 1.1 * hi  # the factor alone would put the noise std above the range
    assert near * P.ANSCOMBE_SCALE < hi
    assert P.anscombe_model(cfg, near).scale == pytest.approx(hi)
    with pytest.raises(P.PriorRangeError):
        P.anscombe_model(cfg, 0.9 * hi)


def test_pretrain_sigma_jitter_spreads_the_told_std_not_the_noise(tmp_path):
    script = _script()
    planes = [smooth_image(96, i).astype(np.float32) for i in range(2)]
    batches = {}
    for jitter in (0.0, 0.3):
        cfg = script.PretrainConfig(sigma_jitter=jitter, w2s_fraction=0.0)
        run = script.Run(cfg, tmp_path / f"run{jitter}")
        natural = script.PatchSampler(planes, cfg.patch_size, cfg.seed)
        batches[jitter] = script.sample_batch(run, natural, None, 0.0, 256)
    (y0, s0, _), (y1, s1, _) = batches[0.0], batches[0.3]
    assert torch.equal(y0, y1)  # the same patches and the same noise
    lo, hi = script.PretrainConfig().sigma_range
    assert float(s0.min()) >= lo / 255 - 1e-6 and float(s0.max()) <= hi / 255 + 1e-6
    spread = float(torch.log(s1 / s0).std())
    assert 0.2 < spread < 0.4


def test_pretrain_runs_on_the_best_device_with_its_batch_and_says_where(tmp_path):
    """``--device auto`` takes the best device this machine has (the CPU here, a GPU where
    there is one), the batch size and learning rate given reach the checkpoint, and the
    exported prior says where it was trained."""
    script = _script()
    _fake_data(tmp_path / "data")
    out = tmp_path / "run"
    script.main(["--out", str(out), "--data", str(tmp_path / "data"), "--validate-every", "0",
                 "--max-steps", "2", "--device", "auto", "--batch-size", "4", "--lr", "1e-4"])
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2
    assert state["config"]["batch_size"] == 4 and state["config"]["learning_rate"] == 1e-4
    best = available_devices()[0]
    assert state["trained_on"].startswith("CPU" if best == "cpu" else "GPU")
    target = tmp_path / "prior.pt"
    script.main(["--out", str(out), "--data", str(tmp_path / "data"), "--export", str(target)])
    assert P.load_prior(target).provenance["hardware"] == state["trained_on"]


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "5"], "--batch-size 5: give an even number of 2 or more (antithetic pairs)"),
    (["--lr", "0"], "--lr 0: give a positive learning rate"),
    (["--warmup", "-1"], "--warmup -1: give a number of steps, 0 or more"),
    (["--clip-grad", "0"], "--clip-grad 0: give a positive gradient norm"),
    (["--target", "clean"],
     "--target clean: the W2S noisy captures have no clean value; give --w2s-fraction 0"),
    (["--photon-fraction", "0.3", "--micro-fraction", "0.6"],
     "--micro-fraction 0.6: give a share between 0 and 0.5 (1 - the W2S and photon shares)"),
])
def test_pretrain_refuses_bad_options_in_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        _script().main(["--out", str(tmp_path / "run"), *args])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
    assert not (tmp_path / "run").exists()


def test_pretrain_warmup_ramps_the_rate_and_clipping_bounds_the_gradient(tmp_path,
                                                                        monkeypatch):
    """``--warmup`` ramps the learning rate from 0 and ``--clip-grad`` caps every step's
    global gradient norm; both reach the checkpoint's configuration."""
    script = _script()
    cfg = script.PretrainConfig(warmup=4, decay=(10, 20))
    assert [cfg.lr_at(k) for k in range(5)] == pytest.approx(
        [cfg.learning_rate * f for f in (0.25, 0.5, 0.75, 1.0, 1.0)])
    norms = []
    real_step = torch.optim.Adam.step

    def step(opt, *a, **k):  # the gradient norm the optimiser sees
        grads = [q.grad for g in opt.param_groups for q in g["params"] if q.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(x) for x in grads]))))
        return real_step(opt, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    _fake_data(tmp_path / "data")
    out = tmp_path / "run"
    script.main(["--out", str(out), "--data", str(tmp_path / "data"), "--validate-every", "0",
                 "--max-steps", "3", "--warmup", "2", "--clip-grad", "1e-3"])
    assert len(norms) == 3 and max(norms) <= 1e-3 * (1 + 1e-4)
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["config"]["warmup"] == 2 and state["config"]["clip_grad"] == 1e-3


def test_pretrain_refuses_a_device_this_machine_lacks_in_one_line(tmp_path, capsys):
    missing = [d for d in ("cuda", "mps") if d not in available_devices()]
    if not missing:
        pytest.skip("this machine has every device kind")
    with pytest.raises(SystemExit) as info:
        _script().main(["--out", str(tmp_path / "run"), "--device", missing[0]])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"--device {missing[0]}: not available here; this machine has "
                            f"{', '.join(available_devices())}")
    assert not (tmp_path / "run").exists()


def test_pretrain_refuses_a_negative_sigma_jitter_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _script().main(["--out", str(tmp_path / "run"), "--sigma-jitter", "-0.1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--sigma-jitter -0.1: give a spread of 0 or more")
    assert not (tmp_path / "run").exists()


def test_pretrain_photon_patches_carry_the_noise_std_they_are_told(tmp_path):
    """The low-photon source: 8-bit captures of flat patches, after the GAT of their own
    effective noise and the Anscombe route's scale, have the std they are told (within the
    sampling spread) and a std inside the prior's range; the batch holds its share."""
    script = _script()
    cfg = script.PretrainConfig(photon_fraction=0.25, w2s_fraction=0.0)
    flat = np.full((48, 1, 64, 64), 0.5, np.float32)
    patches, std, _ = script.photon_patches(flat, cfg, np.random.default_rng(0))
    measured = patches.reshape(48, -1).std(axis=1)
    assert np.all(np.abs(measured / std - 1.0) < 0.12)
    lo, hi = P.TAU_RANGE
    assert float(std.min()) >= lo - 1e-6 and float(std.max()) <= hi + 1e-6
    run = script.Run(cfg, tmp_path / "run")
    planes = [smooth_image(96, i).astype(np.float32) for i in range(2)]
    natural = script.PatchSampler(planes, cfg.patch_size, cfg.seed)
    y, s, x = script.sample_batch(run, natural, None, 0.0, 16)
    assert y.shape[0] == 16 and s.shape == (16,) and x.shape == y.shape
    assert float(s.max()) <= hi + 1e-6


def test_pretrain_refuses_a_photon_share_beyond_the_batch_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _script().main(["--out", str(tmp_path / "run"), "--photon-fraction", "0.9"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--photon-fraction 0.9: give a share between 0 and 0.8 "
                            "(1 - the W2S share)")
    assert not (tmp_path / "run").exists()


def test_pretrain_clean_targets_invert_to_the_clean_counts(tmp_path):
    """The clean target of a low-photon patch is the transformed value whose exact unbiased
    inverse is the clean expectation: mapped back through ``gat_inverse`` it gives the clean
    counts, and the capture's noise about it has mean ~0 and the std the patch is told."""
    from napari_noise2score.core.anscombe import gat_inverse

    script = _script()
    counts = np.array([0.0, 0.05, 0.5, 2.0, 10.0, 150.0])
    for read in (0.0, 0.7, 2.0):
        d = script.expected_gat(counts, read)
        assert np.allclose(gat_inverse(d, 1.0, read), counts, atol=1e-3)
    cfg = script.PretrainConfig(photon_fraction=1.0, w2s_fraction=0.0)
    flat = np.full((32, 1, 64, 64), 0.3, np.float32)
    y, std, x = script.photon_patches(flat, cfg, np.random.default_rng(1))
    z = (y - x).reshape(32, -1) / std[:, None]
    assert abs(float(z.mean())) < 0.1
    assert np.all(np.abs(z.std(axis=1) - 1.0) < 0.15)


def test_pretrain_dsm_loss_is_zero_for_the_clean_answer_and_trains(tmp_path):
    """Denoising score matching: a network whose residual is exactly x - y has loss 0, and
    two steps of ``--target clean`` with the W2S clean source run, checkpoint and export
    with the target named in the provenance."""
    net = P.ConditionedUNet(**P.PRIOR_ARCH)
    x = torch.rand(2, 1, 32, 32)
    s = torch.tensor([0.1, 0.2])
    y = x + s.reshape(-1, 1, 1, 1) * torch.randn(x.shape)
    with torch.no_grad():
        assert float(P.conditioned_dsm_loss(net, y, s, x)) == pytest.approx(1.0, abs=0.2)
        net.forward = lambda z: x - y  # the perfect denoiser
        assert float(P.conditioned_dsm_loss(net, y, s, x)) == pytest.approx(0.0, abs=1e-10)
    script = _script()
    data = tmp_path / "data"
    _fake_data(data)
    Image.fromarray((smooth_image(128, 4) * 200).astype(np.uint8)).save(
        data / "w2s" / "clean" / "fov010_ch0.png")  # the W2S clean source's only plane
    assert len(script.load_micro(script.PretrainConfig(data=str(data)))) == 1
    out = tmp_path / "run"
    script.main(["--out", str(out), "--data", str(data), "--validate-every", "0",
                 "--max-steps", "2", "--target", "clean", "--w2s-fraction", "0",
                 "--micro-fraction", "0.5", "--photon-fraction", "0.25"])
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2 and state["config"]["target"] == "clean"
    target = tmp_path / "prior.pt"
    script.main(["--out", str(out), "--data", str(data), "--target", "clean",
                 "--w2s-fraction", "0", "--micro-fraction", "0.5", "--export", str(target)])
    data_line = P.load_prior(target).provenance["data"]
    assert "denoising score matching" in data_line and "W2S clean FOV 4-50" in data_line

