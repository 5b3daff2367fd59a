"""Structure: the noise model is a type; no module outside core/noise.py decides by its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_noise2score
from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.noise import (
    NOISE_MODELS,
    NOISE_TYPES,
    NoiseParams,
    model_for,
    noise_model,
)

PACKAGE = Path(napari_noise2score.__file__).parent
NOISE_MODULE = PACKAGE / "core" / "noise.py"


def _names_in(node: ast.AST) -> list[str]:
    """Noise-model names written as string literals in ``node`` (or its tuple/list/set)."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in NOISE_MODELS]


def name_decisions(source: str) -> list[tuple[int, str]]:
    """(line, name) of every comparison with a noise-model name (``==``, ``!=``, ``in``,
    ``not in``) and every dict keyed by noise-model names (a dispatch table)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                found += [(node.lineno, n) for n in _names_in(operand)]
        elif isinstance(node, ast.Dict):
            found += [(node.lineno, n) for key in node.keys if key is not None
                      for n in _names_in(key)]
        elif isinstance(node, ast.MatchValue):
            found += [(node.lineno, n) for n in _names_in(node.value)]
    return found


def test_no_decision_on_a_noise_model_name_outside_the_noise_module():
    offenders = [f"{path.relative_to(PACKAGE)}:{line}: {name!r}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path != NOISE_MODULE
                 for line, name in name_decisions(path.read_text(encoding="utf-8"))]
    assert not offenders, "decide by the noise type's attributes instead:\n" + "\n".join(
        offenders)


@pytest.mark.parametrize("code", [
    'if noise == "gaussian": pass',
    'x = model.noise != "gamma"',
    'ok = cfg.noise in ("poisson", "poisson-gaussian")',
    'TABLE = {"gaussian": 1}',
])
def test_the_check_sees_name_decisions(code):
    assert name_decisions(code)


def test_a_plain_name_is_not_a_decision():
    assert not name_decisions('p = NoiseParams("gaussian", sigma=1.0)')


def test_the_registry_holds_one_type_per_family():
    assert NOISE_MODELS == ("gaussian", "poisson", "gamma", "poisson-gaussian")
    for name, kind in NOISE_TYPES.items():
        assert kind.name == name and noise_model(name) is kind
        assert kind.searched in kind.needs
        assert model_for(**{p: 1.5 for p in kind.needs}) == name
        assert NoiseParams(name, 2.0, 2.0, 2.0).kind is kind
    with pytest.raises(Noise2ScoreError, match="unknown noise model"):
        noise_model("laplace")
