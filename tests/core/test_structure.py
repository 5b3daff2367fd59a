"""The package's structure: no import cycle among its modules (imports inside functions
and ``TYPE_CHECKING`` blocks count too), and library errors worded for every front end.
The test suite's structure: no test file imports another test file, or conftest.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import ROOT, SRC

PACKAGE = SRC / "napari_noise2score"
NAME = PACKAGE.name


def module_name(path: Path) -> str:
    parts = (NAME, *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` (the module in ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from a import b``: the module a.b when there is one, else a itself
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` of a package module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert f"{NAME}.api" in graph[NAME]  # the package's lazy __getattr__
    assert f"{NAME}.gui" in graph[f"{NAME}.cli"]  # cmd_gui imports it when run


def test_no_import_cycle_among_the_package_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# ---- errors worded for every front end ----------------------------------------------------

#: Front ends that speak the command line (excluded).
CLI_MODULES = {"cli.py", "export/cli.py"}
FLAG = re.compile(r"(?<![\w-])--[a-z{]")


def _texts(tree: ast.AST):
    """Every string literal outside docstrings (f-strings with ``{}`` for their fields)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}"
                                       for v in node.values)


def test_library_texts_name_parameters_not_command_line_flags():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in CLI_MODULES:
            continue
        for line, text in _texts(ast.parse(path.read_text(encoding="utf-8"))):
            if FLAG.search(text) and "napari-noise2score " not in text:  # not a usage line
                found.append(f"{rel}:{line}: {text!r}")
    assert not found, "library texts speak CLI flags:\n" + "\n".join(found)


def test_the_command_line_puts_its_flags_into_library_messages():
    from napari_noise2score.cli import in_flag_terms

    assert in_flag_terms("give the axes, e.g. axes=TZYX") == "give the axes, e.g. --axes TZYX"
    assert in_flag_terms("choose one with series=N") == "choose one with --series N"
    assert in_flag_terms("the max_steps parameter or the lr") == "--steps or the lr"
    assert in_flag_terms("tta=True / tta=False") == "--tta / --no-tta"
    assert in_flag_terms("colour=3, the colour parameter") == "colour=3, the colour parameter"


def _error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def test_axes_and_series_errors_in_parameters_for_the_api_and_flags_for_the_cli(
        tmp_path, capsys):
    import numpy as np
    import pytest
    import tifffile

    from napari_noise2score.cli import main
    from napari_noise2score.core.errors import AxesError, InputFileError
    from napari_noise2score.io.lazy import open_lazy

    plane = np.random.default_rng(0).normal(100, 10, (2, 2, 40, 48)).astype(np.float32)
    ambiguous = tmp_path / "q.tif"
    tifffile.imwrite(ambiguous, plane)  # 4D, no axes in the metadata
    with pytest.raises(AxesError) as info:
        open_lazy(ambiguous)
    assert "axes=TZYX" in str(info.value) and "--" not in str(info.value)
    assert main(["estimate", str(ambiguous)]) == 2
    assert "--axes TZYX" in _error_line(capsys)

    two = tmp_path / "two.tif"
    with tifffile.TiffWriter(two) as tif:
        tif.write(plane[0, 0])
        tif.write(plane[0], photometric="minisblack")
    with pytest.raises(InputFileError) as info:
        open_lazy(two)
    assert "series=N" in str(info.value) and "--" not in str(info.value)
    assert main(["estimate", str(two)]) == 2
    assert "--series N" in _error_line(capsys)


# ---- the test suite: shared code comes from helpers.py and conftest's fixtures ------------
TESTS = ROOT / "tests"


def imported_test_modules(tree: ast.AST) -> list[str]:
    """The test modules (``test_*``) and conftest modules that ``tree`` imports, anywhere in
    it: by name, dotted (``tests.e2e.test_batch``) or from a package of the tests (``from .
    import test_x``, ``from tests.io import test_load``; a library's ``test_*`` function,
    as in ``from bioimageio.core import test_model``, is no test module)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.level or names[0].split(".")[0] in ("", "tests"):
                names += [alias.name for alias in node.names]
        else:
            continue
        found += [name for name in names
                  if any(part.startswith("test_") or part == "conftest"
                         for part in name.split("."))]
    return found


def test_no_test_file_imports_another_test_file():
    files = sorted(TESTS.rglob("*.py"))
    assert Path(__file__).resolve() in files and len(files) > 20
    offending = {str(f.relative_to(TESTS)): names for f in files
                 if (names := imported_test_modules(ast.parse(f.read_text(), str(f))))}
    assert not offending, f"import shared code from helpers.py or a fixture: {offending}"


def test_the_test_import_check_sees_test_and_conftest_imports():
    code = ("from test_batch import ROOT\nimport conftest\nimport tests.e2e.test_cli\n"
            "def f():\n    from tests.io import test_load\n    from . import test_x\n"
            "from helpers import smooth_image\nimport napari_noise2score.core.noise\n"
            "from bioimageio.core import test_model\n")
    assert sorted(imported_test_modules(ast.parse(code))) == [
        "conftest", "test_batch", "test_load", "test_x", "tests.e2e.test_cli"]


def test_test_file_basenames_are_unique():
    """pytest imports test files without ``__init__.py`` by their basename."""
    names = [f.name for f in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
