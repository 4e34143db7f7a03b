"""The package's layers, read from its imports: each may import only the layers below it, and
only the engine imports wasmtime. The public names import from where the README says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "hatch_wizer"

# Bottom to top. A module may import its own layer and the layers below it.
LAYERS = [
    {"errors", "options", "names", "files"},  # shared leaves
    {"wasm"},  # the binary format
    {"module"},  # the core-module pipeline
    {"component"},  # the component pipeline, which applies the module pipeline
    {"engine"},  # wasmtime: runs what the pipelines made
    {"core", "cache"},  # the public face: wizen(), and the results it reuses
    {"build"},  # the front ends
    {"__init__", "__main__"},  # the package and its `python -m`
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str:
    """`hatch_wizer.engine.runtime` -> `engine`; the package itself -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module
    package = package if path.name == "__init__.py" else package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.level == 0:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def test_every_module_has_a_layer() -> None:
    assert {_module_layer(p) for p in _sources()} <= set(RANK)


def _upward(layer: str, imports: list[tuple[str, list[str], int]]) -> list[str]:
    return [
        f"line {line}: {target}"
        for target, names, line in imports
        if target.split(".")[0] == "hatch_wizer"
        and names != ["__version__"]  # the version lives in the package's __init__
        and RANK[_layer(target)] > RANK[layer]
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path: Path) -> None:
    upward = _upward(_module_layer(path), _imports(path))
    assert not upward, f"{path.name} imports from a layer above its own: {upward}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_engine_imports_wasmtime(path: Path) -> None:
    uses = [t for t, _, _ in _imports(path) if t.split(".")[0] == "wasmtime"]
    assert _module_layer(path) == "engine" or not uses, f"{path} imports {uses}"


def _postpones_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )  # fmt: skip


def _defines_a_namedtuple(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "NamedTuple" for base in node.bases)
        for node in ast.walk(tree)
    )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_namedtuple_modules_evaluate_annotations(path: Path) -> None:
    """`typing.NamedTuple` compiles every string annotation of its fields into a ForwardRef:
    with postponed annotations that was ~185 compile() calls, ~2.5 ms of each cold CLI run
    (benches/cli_overhead.py). Modules that define one evaluate their annotations instead."""
    tree = ast.parse(path.read_text())
    assert not (_defines_a_namedtuple(tree) and _postpones_annotations(tree)), path


def test_a_wrong_import_is_caught() -> None:
    """The walk resolves relative imports, and an import turned around is reported."""
    assert {"hatch_wizer.wasm.binary", "hatch_wizer.errors"} <= {
        t for t, _, _ in _imports(PACKAGE / "wasm" / "parse.py")
    }
    engine = _imports(PACKAGE / "engine" / "runtime.py")
    assert {"wasmtime", "hatch_wizer.module.instrumentation"} <= {t for t, _, _ in engine}
    assert {t for t, _, _ in _imports(PACKAGE / "build" / "__init__.py")} == set()
    assert _upward("module", [("hatch_wizer.engine.runtime", ["Runtime"], 7)]) == [
        "line 7: hatch_wizer.engine.runtime"
    ]
    assert _upward("engine", [("hatch_wizer.module.state", ["Ref"], 7)]) == []


def test_public_names_import_from_where_the_readme_says() -> None:
    from hatch_wizer import (
        InstanceState,
        WizenOptions,
        WizerError,
        instrument,
        snapshot,
        wizen,
    )
    from hatch_wizer.build.cli import entrypoint
    from hatch_wizer.build.hatch_hook import hatch_register_build_hook
    from hatch_wizer.build.setuptools_plugin import build_wizer, finalize_distribution_options

    assert callable(wizen) and callable(instrument) and callable(snapshot)
    assert issubclass(WizerError, Exception) and WizenOptions().init_func
    assert hasattr(InstanceState, "global_value")
    assert callable(entrypoint) and callable(hatch_register_build_hook)
    assert callable(finalize_distribution_options) and build_wizer is not None


def test_entry_points_name_existing_targets() -> None:
    import importlib
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    targets = [project["scripts"]["hatch-wizer"]]
    for group in project["entry-points"].values():
        targets += group.values()
    for target in targets:
        module, _, attr = target.partition(":")
        loaded = importlib.import_module(module)
        assert not attr or hasattr(loaded, attr), target
