"""Tests for the hatch build hook, through hatchling's own builders run in-process.

The engine is replaced by a fake that tags its input, so these tests check the plumbing:
which file is read, where the output lands, what is cleaned up and what is printed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder

from hatch_wizer.build import project
from hatch_wizer.errors import ConfigError
from hatch_wizer.options import WizenOptions
from tests.harness import WHEEL_HOOK, hatch_pyproject

ORIGINAL = b"\0asm original"

WIZER = 'init-func = "init"\nmodules = [{ path = "src/pkg/*.wasm" }]'

EARLIER_HOOK = """\
import tempfile
from pathlib import Path
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

class Generate(BuildHookInterface):
    def initialize(self, version, build_data):
        out = Path(tempfile.mkdtemp()) / "gen.wasm"
        out.write_bytes(b"\\0asm generated")
        build_data["force_include"][str(out)] = "pkg/gen.wasm"
"""


class FakeEngine:
    """Stands in for `core.wizen`: records calls and tags the bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, WizenOptions]] = []

    def __call__(self, wasm: bytes, options: WizenOptions, *, report: object = None, names: object = None) -> bytes:
        self.calls.append((wasm, options))
        return b"WIZENED(" + wasm + b")"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(project, "_engine", lambda: fake)
    return fake


@pytest.fixture
def temp_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory made by tempfile.mkdtemp during the test."""
    made: list[Path] = []
    real = tempfile.mkdtemp

    def spy(*args: object, **kwargs: object) -> str:
        path = real(*args, **kwargs)  # type: ignore[call-overload]
        made.append(Path(path))
        return str(path)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    return made


def make_project(root: Path, hooks: str = WHEEL_HOOK) -> Path:
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/pkg/__init__.py").write_text("")
    (root / "src/pkg/mod.wasm").write_bytes(ORIGINAL)
    (root / "pyproject.toml").write_text(hatch_pyproject(WIZER, hooks))
    return root


def build(root: Path, target: str = "wheel", version: str = "standard") -> Path:
    builder = WheelBuilder if target == "wheel" else SdistBuilder
    [artifact] = builder(str(root)).build(directory=str(root / "dist"), versions=[version])
    return Path(artifact)


def wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.startswith("pkg-1.0.dist-info")}


def test_wheel_holds_one_wizened_copy_at_the_module_path(
    tmp_path: Path, engine: FakeEngine, temp_dirs: list[Path]
) -> None:
    root = make_project(tmp_path)
    files = wheel_files(build(root))
    assert files == {"pkg/__init__.py": b"", "pkg/mod.wasm": b"WIZENED(" + ORIGINAL + b")"}
    [(wasm, options)] = engine.calls
    assert (wasm, options.init_func, options.reproducible) == (ORIGINAL, "init", True)
    assert temp_dirs and not any(d.exists() for d in temp_dirs)


def test_source_tree_and_dist_hold_nothing_new(tmp_path: Path, engine: FakeEngine) -> None:
    root = make_project(tmp_path)
    before = sorted(p for p in root.rglob("*") if "dist" not in p.parts)
    wheel = build(root)
    after = sorted(p for p in root.rglob("*") if "dist" not in p.parts)
    assert after == before
    assert (root / "src/pkg/mod.wasm").read_bytes() == ORIGINAL
    assert list((root / "dist").iterdir()) == [wheel]


def test_sdist_keeps_the_original(tmp_path: Path, engine: FakeEngine) -> None:
    sdist = build(make_project(tmp_path), target="sdist")
    with tarfile.open(sdist) as t:
        member = t.extractfile("pkg-1.0/src/pkg/mod.wasm")
        assert member is not None and member.read() == ORIGINAL
    assert engine.calls == []


def test_in_place_modules_go_into_the_sdist_and_wheel_as_their_originals(
    tmp_path: Path, engine: FakeEngine
) -> None:
    root = make_project(tmp_path, "[tool.hatch.build.hooks.wizer]")  # every target
    # What `hatch-wizer build --in-place` leaves: the module's output, the original kept.
    (root / "src/pkg/mod.wasm").write_bytes(b"IN PLACE OUTPUT")
    kept = root / ".wizer/originals/src/pkg/mod.wasm"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(ORIGINAL)
    wrote = hashlib.sha256(b"IN PLACE OUTPUT").hexdigest()
    kept.with_name("mod.wasm.wizened").write_text(f"{wrote} digest\n")
    with tarfile.open(build(root, target="sdist")) as t:
        member = t.extractfile("pkg-1.0/src/pkg/mod.wasm")
        assert member is not None and member.read() == ORIGINAL
    assert wheel_files(build(root))["pkg/mod.wasm"] == b"WIZENED(" + ORIGINAL + b")"


def test_editable_wheel_is_skipped_with_a_hint(
    tmp_path: Path, engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    hooks = (
        '[tool.hatch.build]\ndev-mode-dirs = ["src"]\n[tool.hatch.build.targets.wheel.hooks.wizer]'
    )
    build(make_project(tmp_path, hooks), version="editable")
    assert engine.calls == []
    err = capfd.readouterr().err
    assert "wizer: editable install: the package loads its modules from the source tree" in err
    assert "`hatch-wizer build --in-place` wizens them there" in err


def test_prints_one_line_per_module(
    tmp_path: Path, engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    build(make_project(tmp_path))
    err = capfd.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("wizer: ")]
    assert len(line) == 1
    assert line[0].startswith("wizer: src/pkg/mod.wasm: 13 B \u2192 22 B in ")


def test_hook_table_overrides_tool_wizer(tmp_path: Path, engine: FakeEngine) -> None:
    hooks = """[tool.hatch.build.targets.wheel.hooks.wizer]
enable-by-default = true
dependencies = ["hatch-wizer"]
init-func = "other"
"""
    build(make_project(tmp_path, hooks))
    assert engine.calls[0][1].init_func == "other"


def test_bad_hook_option_names_the_hook_table(
    tmp_path: Path, engine: FakeEngine, temp_dirs: list[Path], capfd: pytest.CaptureFixture[str]
) -> None:
    hooks = "[tool.hatch.build.targets.wheel.hooks.wizer]\ninit-func = 1"
    where = "tool.hatch.build.targets.wheel.hooks.wizer"
    with pytest.raises(SystemExit) as e:  # app.abort(): the message, then exit 1
        build(make_project(tmp_path, hooks))
    assert e.value.code == 1
    assert capfd.readouterr().err == f"hatch-wizer: error: {where}.init-func must be a string\n"
    assert not any(d.exists() for d in temp_dirs)


def test_failure_while_wizening_removes_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_dirs: list[Path]
) -> None:
    def broken(wasm: bytes, options: WizenOptions, *, report: object = None, names: object = None) -> bytes:
        raise ConfigError("boom")

    monkeypatch.setattr(project, "_engine", lambda: broken)
    with pytest.raises(SystemExit):
        build(make_project(tmp_path))
    assert temp_dirs and not any(d.exists() for d in temp_dirs)


def test_wizens_a_module_an_earlier_hook_produced(tmp_path: Path, engine: FakeEngine) -> None:
    hooks = """[tool.hatch.build.targets.wheel.hooks.custom]
path = "hatch_build.py"

[tool.hatch.build.targets.wheel.hooks.wizer]
modules = [{ path = "pkg/gen.wasm" }]
"""
    root = make_project(tmp_path, hooks)
    (root / "hatch_build.py").write_text(EARLIER_HOOK)
    files = wheel_files(build(root))
    assert files["pkg/gen.wasm"] == b"WIZENED(\0asm generated)"
    assert files["pkg/mod.wasm"] == ORIGINAL  # the hook's `modules` replaced tool.wizer's


def test_inert_without_tool_wizer(
    tmp_path: Path, engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path)
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text[: text.index("[tool.wizer]")])
    assert wheel_files(build(root))["pkg/mod.wasm"] == ORIGINAL
    assert "no [tool.wizer] table" in capfd.readouterr().err


def test_importing_the_entry_points_does_not_load_the_engine() -> None:
    # hatchling imports every `hatch` entry point; setuptools calls every finalize hook.
    code = (
        "import sys, hatch_wizer.build.hatch_hook, hatch_wizer.build.setuptools_plugin\n"
        "assert 'wasmtime' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_file_that_cannot_be_written_is_one_line(
    tmp_path: Path, engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    hooks = (
        '[tool.hatch.build]\ndev-mode-dirs = ["src"]\n[tool.hatch.build.targets.wheel.hooks.wizer]'
        '\neditable = "in-place"'
    )
    root = make_project(tmp_path, hooks)
    (root / ".wizer").write_text("")  # where --in-place keeps the originals: not a directory
    with pytest.raises(SystemExit) as e:
        build(root, version="editable")
    assert e.value.code == 1
    err = capfd.readouterr().err
    assert err.startswith("hatch-wizer: error: ") and err.count("\n") == 1, err
    assert ".wizer" in err
    assert (root / "src/pkg/mod.wasm").read_bytes() == ORIGINAL
