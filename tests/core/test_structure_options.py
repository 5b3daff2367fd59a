"""Structure: TrainConfig is the one source of the options; the CLI and the npe2 commands
take the same set, with the same defaults (a drift between them fails here)."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

from napari_noise2score import _commands
from napari_noise2score.cli import _config, build_parser
from napari_noise2score.core.config import NOT_EXPOSED, TRAIN_OPTIONS, TrainConfig
from napari_noise2score.core.errors import Noise2ScoreError

FIELDS = {f.name for f in fields(TrainConfig)}
#: What a training front end takes besides TrainConfig's fields.
TRAIN_EXTRA = {"inputs", "output", "series"}
#: Options the CLI's denoise has and the npe2 command has not (on purpose): the blind
#: search, the tile memory, the cluster distribution, and --noise (pretrained prior only).
DENOISE_CLI_ONLY = {"blind", "memory", "distribute", "noise"}


def _options(command: str) -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.default for a in sub.choices[command]._actions if a.dest != "help"}


def _signature(func) -> dict:
    return {n: p.default for n, p in inspect.signature(func).parameters.items()}


def test_every_field_is_exposed_or_listed_as_not():
    assert set(TRAIN_OPTIONS) | set(NOT_EXPOSED) == FIELDS
    assert not set(TRAIN_OPTIONS) & set(NOT_EXPOSED)


@pytest.mark.parametrize("command", ["train", "run"])
def test_cli_training_options_are_the_configs(command):
    options = set(_options(command))
    denoising = {"tta", "wiener"} if command == "run" else set()  # run denoises too
    assert options & FIELDS == set(TRAIN_OPTIONS) | denoising
    if command == "train":
        assert options - FIELDS == TRAIN_EXTRA


def test_cli_defaults_are_the_configs():
    args = build_parser().parse_args(["train", "in.tif", "-o", "m.n2s"])
    assert _config(args) == TrainConfig()


def test_npe2_train_takes_the_configs_options_and_defaults():
    signature = _signature(_commands.train)
    assert set(signature) - TRAIN_EXTRA == set(TRAIN_OPTIONS)
    defaults = TrainConfig()
    for name in TRAIN_OPTIONS:
        expected = None if name == "noise" else getattr(defaults, name)  # None: auto
        assert signature[name] == expected, name


def test_npe2_and_cli_denoise_take_the_same_options_and_defaults():
    cli, npe2 = _options("denoise"), _signature(_commands.denoise)
    assert set(cli) - set(npe2) == DENOISE_CLI_ONLY
    assert set(npe2) <= set(cli)
    for name in set(npe2) - {"inputs", "model", "output"}:
        assert npe2[name] == cli[name], name


def test_config_is_checked_on_construction():
    with pytest.raises(Noise2ScoreError, match="max_steps must be >= 1"):
        TrainConfig(max_steps=0)
    from dataclasses import replace

    with pytest.raises(Noise2ScoreError, match="unknown mixed mode"):
        replace(TrainConfig(), mixed_mode="linear")
