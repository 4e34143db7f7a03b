"""Tests for the setuptools plugin: in-process command runs, and real `python -m build` runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import wasmtime
from setuptools import Distribution
from setuptools.errors import BaseError

from hatch_wizer.build import project
from hatch_wizer.build.setuptools_plugin import build_wizer, finalize_distribution_options
from hatch_wizer.options import WizenOptions

WAT = """
(module
  (memory (export "memory") 1)
  (func (export "wizer-initialize") (i32.store (i32.const 16) (i32.const 7)))
  (func (export "get") (result i32) (i32.load (i32.const 16))))
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64", "hatch-wizer"]
build-backend = "setuptools.build_meta"

[project]
name = "stpkg"
version = "1.0"

[tool.setuptools]
package-dir = {{ "" = "src" }}
packages = ["stpkg"]

[tool.setuptools.package-data]
stpkg = ["*.wasm"]

{wizer}
"""
WIZER = '[tool.wizer]\nmodules = [{ path = "src/stpkg/mod.wasm" }]'


def make_project(root: Path, wizer: str = WIZER, wat: str = WAT) -> Path:
    (root / "src/stpkg").mkdir(parents=True)
    (root / "src/stpkg/__init__.py").write_text("")
    (root / "src/stpkg/mod.wasm").write_bytes(wasmtime.wat2wasm(wat))
    (root / "pyproject.toml").write_text(PYPROJECT.format(wizer=wizer))
    return root


def distribution(root: Path, monkeypatch: pytest.MonkeyPatch) -> Distribution:
    monkeypatch.chdir(root)
    dist = Distribution(
        {
            "name": "stpkg",
            "package_dir": {"": "src"},
            "packages": ["stpkg"],
            "package_data": {"stpkg": ["*.wasm"]},
        }
    )
    dist.script_name = "setup.py"  # as setuptools.build_meta sets it
    finalize_distribution_options(dist)  # what the entry point does when installed
    return dist


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []

    def fake(wasm: bytes, options: WizenOptions, *, report: object = None, names: object = None) -> bytes:
        seen.append(wasm)
        return b"WIZENED(" + wasm + b")"

    monkeypatch.setattr(project, "_engine", lambda: fake)
    return seen


def test_inert_without_tool_wizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = distribution(make_project(tmp_path, wizer=""), monkeypatch)
    build = dist.get_command_class("build")
    assert "build_wizer" not in [name for name, _ in build.sub_commands]


def test_adds_build_wizer_as_a_build_sub_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = distribution(make_project(tmp_path), monkeypatch)
    finalize_distribution_options(dist)  # a second call adds nothing
    names = [name for name, _ in dist.get_command_class("build").sub_commands]
    assert names.count("build_wizer") == 1 and names[-1] == "build_wizer"
    assert dist.get_command_class("build_wizer") is build_wizer


def test_reads_the_source_not_last_builds_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[bytes]
) -> None:
    root = make_project(tmp_path)
    dist = distribution(root, monkeypatch)
    stale = root / "build/lib/stpkg/mod.wasm"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"WIZENED(old)")
    cmd = dist.get_command_obj("build_wizer")
    cmd.ensure_finalized()
    cmd.run()
    original = (root / "src/stpkg/mod.wasm").read_bytes()
    assert calls == [original]
    assert stale.read_bytes() == b"WIZENED(" + original + b")"
    assert cmd.get_outputs() == [str(Path("build/lib/stpkg/mod.wasm"))]


def test_editable_mode_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[bytes]
) -> None:
    root = make_project(tmp_path)
    cmd = distribution(root, monkeypatch).get_command_obj("build_wizer")
    cmd.editable_mode = True
    cmd.ensure_finalized()
    cmd.run()
    assert calls == []
    assert cmd.get_outputs() == []
    assert not (root / "build").exists()


def test_module_outside_package_data_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[bytes]
) -> None:
    root = make_project(tmp_path, wizer='[tool.wizer]\nmodules = ["other.wasm"]')
    (root / "other.wasm").write_bytes(b"\0asm")
    cmd = distribution(root, monkeypatch).get_command_obj("build_wizer")
    cmd.ensure_finalized()
    # A distutils error: setuptools prints it as one `error:` line, with no traceback.
    with pytest.raises(BaseError, match=r"^hatch-wizer: tool\.wizer\.modules\[0\]\.path: other\.wasm is not"):
        cmd.run()


def build_wheel(root: Path, out: Path) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--wheel", "-o", str(out), str(root)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "build_wizer: src/stpkg/mod.wasm: " in result.stdout + result.stderr
    [wheel] = out.glob("*.whl")
    return wheel


def test_python_m_build_ships_the_wizened_module_every_time(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    modules = []
    for run in ["1", "2"]:  # the second build finds build/lib from the first
        with zipfile.ZipFile(build_wheel(root, tmp_path / run)) as z:
            modules.append(z.read("stpkg/mod.wasm"))
    assert modules[0] == modules[1]
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, modules[0])
    assert "wizer-initialize" not in [e.name for e in module.exports]
    store = wasmtime.Store(engine)
    assert wasmtime.Instance(store, module, []).exports(store)["get"](store) == 7
    assert (root / "src/stpkg/mod.wasm").read_bytes() == wasmtime.wat2wasm(WAT)


def test_sdist_gets_an_in_place_modules_kept_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    assert project.main_build(["--project", str(root), "--in-place", "-q"]) == 0
    cmd = distribution(root, monkeypatch).get_command_obj("build_wizer")
    cmd.ensure_finalized()
    assert cmd.get_source_files() == [
        "src/stpkg/mod.wasm",
        ".wizer/originals/src/stpkg/mod.wasm",
        ".wizer/originals/src/stpkg/mod.wasm.wizened",
    ]
