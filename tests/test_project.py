"""Tests for `hatch-wizer build` (hatch_wizer.build.project), with the real engine on a tiny module."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer.build import project
from hatch_wizer.build.config import ModuleFile, find_modules, load_config, read_pyproject
from hatch_wizer.build.project import main_build, module_digest
from hatch_wizer.cache import key as cache_key
from hatch_wizer.errors import WizerError

WAT = """
(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (global.set $g (i32.const 42))
    (i32.store (i32.const 16) (i32.const 7)))
  (func (export "get") (result i32)
    (i32.add (global.get $g) (i32.load (i32.const 16)))))
"""

PYPROJECT = """\
[project]
name = "pkg"
version = "1.0"

[tool.wizer]
{extra}
modules = [{{ path = "pkg/*.wasm" }}]
"""


def make_project(root: Path, extra: str = "") -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/mod.wasm").write_bytes(wasmtime.wat2wasm(WAT))
    (root / "pyproject.toml").write_text(PYPROJECT.format(extra=extra))
    return root


def run_get(path: Path) -> tuple[int, list[str]]:
    """Call `get` without running init; also list the module's exports."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module.from_file(engine, str(path))
    exports = wasmtime.Instance(store, module, []).exports(store)
    return exports["get"](store), [e.name for e in module.exports]


def test_writes_initialized_modules_under_build_wizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path)
    assert main_build(["--project", str(root)]) == 0
    out = root / "build/wizer/pkg/mod.wasm"
    value, exports = run_get(out)
    assert value == 49
    assert "wizer-initialize" not in exports
    assert (root / "build/wizer/pkg/mod.wasm.wizer-hash").is_file()
    assert capsys.readouterr().out.startswith("pkg/mod.wasm: ")


def test_up_to_date_output_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    assert main_build(["--project", str(root)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(project, "_engine", lambda: pytest.fail("wizened again"))
    assert main_build(["--project", str(root)]) == 0
    assert capsys.readouterr().out == "pkg/mod.wasm: up to date\n"


@pytest.mark.parametrize("change", ["input", "options", "tool", "output"])
def test_any_change_rebuilds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    root = make_project(tmp_path)
    assert main_build(["--project", str(root)]) == 0
    if change == "input":
        (root / "pkg/mod.wasm").write_bytes(wasmtime.wat2wasm(WAT.replace("42", "1")))
    elif change == "options":
        (root / "pyproject.toml").write_text(PYPROJECT.format(extra="keep-init-func = true"))
    elif change == "tool":
        monkeypatch.setattr(cache_key, "__version__", "999")
    else:
        (root / "build/wizer/pkg/mod.wasm").unlink()
    capsys.readouterr()
    assert main_build(["--project", str(root)]) == 0
    assert "up to date" not in capsys.readouterr().out


@pytest.mark.parametrize("spoil", [b"", b"\0asm\1\0\0\0"], ids=["emptied", "replaced"])
def test_an_output_changed_since_it_was_written_is_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil: bytes
) -> None:
    root = make_project(tmp_path)
    assert main_build(["--project", str(root)]) == 0
    out = root / "build/wizer/pkg/mod.wasm"
    out.write_bytes(spoil)  # the input stamp beside it still matches
    capsys.readouterr()
    assert main_build(["--project", str(root)]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert run_get(out)[0] == 49


def test_out_dir_option(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    assert main_build(["--project", str(root), "--out-dir", str(tmp_path / "o"), "-q"]) == 0
    assert run_get(tmp_path / "o/pkg/mod.wasm")[0] == 49


def test_outputs_are_not_taken_for_inputs(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "pyproject.toml").write_text(
        PYPROJECT.replace("pkg/*.wasm", "**/*.wasm").format(extra="")
    )
    assert main_build(["--project", str(root), "-q"]) == 0
    assert main_build(["--project", str(root), "-q"]) == 0
    assert not (root / "build/wizer/build").exists()


def test_failure_exits_1_and_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path, extra='init-func = "missing"')
    assert main_build(["--project", str(root)]) == 1
    assert capsys.readouterr().err.startswith("hatch-wizer build: error: ")
    assert not (root / "build/wizer/pkg/mod.wasm").exists()


def test_config_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path, extra="allow-wasi = 1")
    assert main_build(["--project", str(root)]) == 1
    assert capsys.readouterr().err == (
        "hatch-wizer build: error: tool.wizer.allow-wasi must be a boolean\n"
    )


def test_project_without_modules_exits_1(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert main_build(["--project", str(tmp_path)]) == 1


def test_usage_errors_exit_2_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_build(["--bogus"]) == 2
    assert main_build(["--help"]) == 0
    assert "hatch-wizer build" in capsys.readouterr().out


def test_digest_does_not_depend_on_the_checkout_path(tmp_path: Path) -> None:
    extra = 'allow-wasi = true\npreopens = { "/data" = "data" }\npreload = { helper = "pkg/mod.wasm" }'
    digests = []
    for name in ["a", "b"]:
        root = make_project(tmp_path / name, extra=extra)
        (root / "data").mkdir()
        (root / "data/table.txt").write_text("1 2 3")
        config = load_config(read_pyproject(root), root)
        assert config is not None
        [module] = find_modules(config)
        digests.append(module_digest(module))
    assert digests[0] == digests[1]
    (tmp_path / "b/data/table.txt").write_text("changed")
    assert module_digest(module) != digests[0]


def test_digest_follows_source_date_epoch_when_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path, extra="reproducible = true")
    config = load_config(read_pyproject(root), root)
    assert config is not None
    [module] = find_modules(config)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    first = module_digest(module)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000")
    assert module_digest(module) != first



@pytest.mark.parametrize("precompile", [False, True])
def test_digest_follows_the_wasmtime_release_and_precompile(
    precompile: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another wasmtime runs init (and writes the .cwasm) anew: an up-to-date build rebuilds.
    from hatch_wizer.cache import key

    root = make_project(tmp_path, extra="precompile = true" if precompile else "")
    config = load_config(read_pyproject(root), root)
    assert config is not None
    [module] = find_modules(config)
    first = module_digest(module)
    assert first.endswith("+precompiled") == precompile
    monkeypatch.setattr(key, "_engine_release", lambda: "wasmtime-0.0.1")
    assert module_digest(module) != first

@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_works_as_a_make_recipe(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "Makefile").write_text(f"all:\n\t{sys.executable} -m hatch_wizer build -q\n")
    assert subprocess.run(["make", "-s"], cwd=root).returncode == 0
    (root / "pyproject.toml").write_text(PYPROJECT.format(extra="init-func = 3"))
    result = subprocess.run(["make", "-s"], cwd=root, capture_output=True, text=True)
    assert result.returncode != 0
    assert "tool.wizer.init-func must be a string" in result.stderr


LOOPS = '(module (func (export "wizer-initialize") (loop (br 0))))'


def modules_of(root: Path) -> list[ModuleFile]:
    config = load_config(read_pyproject(root), root)
    assert config is not None
    return find_modules(config)


def test_modules_are_wizened_side_by_side_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    for n in range(1, 4):
        (root / f"pkg/mod{n}.wasm").write_bytes(wasmtime.wat2wasm(WAT.replace("42", str(n))))
    threads = set()
    wizen = project.wizen_module

    def spy(module: ModuleFile, report: object = None) -> object:
        threads.add(threading.current_thread().name)
        return wizen(module, report)  # type: ignore[arg-type]

    monkeypatch.setattr(project, "wizen_module", spy)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert main_build(["--project", str(root), "-q"]) == 0
    assert len(threads) == 2
    values = [run_get(root / f"build/wizer/pkg/{name}.wasm")[0] for name in ("mod", "mod1", "mod2", "mod3")]
    assert values == [49, 8, 9, 10]


def test_ctrl_c_reaches_the_inits_on_every_thread(tmp_path: Path) -> None:
    root = make_project(tmp_path, extra="init-timeout = 60")
    (root / "pkg/mod.wasm").write_bytes(wasmtime.wat2wasm(LOOPS))
    (root / "pkg/mod2.wasm").write_bytes(wasmtime.wat2wasm(LOOPS))
    modules = modules_of(root)
    assert len(modules) == 2
    # A real SIGINT: it interrupts the main thread's wait, as Ctrl-C does.
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(project.wizen_modules(modules))
    assert time.monotonic() - started < 30
    assert not [t for t in threading.enumerate() if t.name.startswith("hatch-wizer")]


def test_a_failing_module_stops_the_others(tmp_path: Path) -> None:
    root = make_project(tmp_path, extra="init-timeout = 60")
    (root / "pkg/mod.wasm").write_bytes(wasmtime.wat2wasm(LOOPS))
    (root / "pkg/bad.wasm").write_bytes(b"\0asm\1\0\0\0\xff")
    started = time.monotonic()
    with pytest.raises(WizerError, match=r"^pkg/bad\.wasm: invalid module"):
        list(project.wizen_modules(sorted(modules_of(root), key=lambda m: m.name)))
    assert time.monotonic() - started < 30


# --- outputs never land on inputs; --in-place keeps the originals ------------------------------


@pytest.mark.parametrize("out_dir", [".", "pkg/.."])
def test_out_dir_onto_the_sources_is_refused_without_touching_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out_dir: str
) -> None:
    root = make_project(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    original = (root / "pkg/mod.wasm").read_bytes()
    assert main_build(["--project", str(root), "--out-dir", str(root / out_dir)]) == 1
    assert capsys.readouterr().err == (
        f"hatch-wizer build: error: --out-dir {root} would write pkg/mod.wasm over itself, "
        "and inputs are never overwritten (--in-place does it on purpose, keeping the originals)\n"
    )
    assert (root / "pkg/mod.wasm").read_bytes() == original
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_in_place_keeps_the_original_and_later_builds_wizen_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path)
    module = root / "pkg/mod.wasm"
    original = module.read_bytes()
    assert main_build(["--project", str(root), "--in-place"]) == 0
    assert run_get(module) == (49, ["memory", "get"])
    assert (root / ".wizer/originals/pkg/mod.wasm").read_bytes() == original
    wizened = module.read_bytes()
    # Again: up to date, not a wizening of the wizened module (which has no init export).
    assert main_build(["--project", str(root), "--in-place"]) == 0
    assert main_build(["--project", str(root)]) == 0  # to build/wizer, from the original
    assert (root / "build/wizer/pkg/mod.wasm").read_bytes() == wizened == module.read_bytes()
    assert capsys.readouterr().out.splitlines()[1:] == [
        "pkg/mod.wasm: up to date",
        f"pkg/mod.wasm: {len(original)} B \u2192 {len(wizened)} B (cached)",
    ]
    assert main_build(["--project", str(root), "--restore"]) == 0
    assert module.read_bytes() == original
    assert not (root / ".wizer").exists()


def test_a_new_module_replaces_the_kept_original(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    assert main_build(["--project", str(root), "--in-place"]) == 0
    rebuilt = wasmtime.wat2wasm(WAT.replace("i32.const 42", "i32.const 50"))
    (root / "pkg/mod.wasm").write_bytes(rebuilt)  # e.g. `make` wrote a new original
    assert main_build(["--project", str(root), "--in-place"]) == 0
    assert run_get(root / "pkg/mod.wasm")[0] == 57
    assert (root / ".wizer/originals/pkg/mod.wasm").read_bytes() == rebuilt
