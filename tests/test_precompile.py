"""Modules shipped pre-compiled: `precompile = true` / `--precompile` write NAME.cwasm beside
NAME.wasm, wheels that hold one are platform wheels, and `load_module` uses the .cwasm only when
it fits (which path ran is read from `on_fallback`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import wasmtime
from hatchling.builders.wheel import WheelBuilder

from hatch_wizer import WizenOptions, load_module, precompile
from hatch_wizer.build.cli import main
from hatch_wizer.build.project import main_build
from hatch_wizer.engine.loader import TRAILER_MAGIC
from hatch_wizer.engine.precompile import CPU_LEVELS, _elf_section, host_target
from tests.harness import hatch_pyproject, wheel_platform
from tests.test_setuptools_plugin import make_project as setuptools_project

WAT = """
(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (global.set $g (i32.const 40)) (i32.store (i32.const 16) (i32.const 2)))
  (func (export "get") (result i32) (i32.add (global.get $g) (i32.load (i32.const 16)))))
"""
OTHER = '(module (func (export "get") (result i32) (i32.const 1)))'


def get(module: wasmtime.Module, engine: wasmtime.Engine) -> int:
    store = wasmtime.Store(engine)
    result = wasmtime.Instance(store, module, []).exports(store)["get"](store)
    assert isinstance(result, int)
    return result


def load(path: Path, engine: wasmtime.Engine | None = None) -> tuple[int, list[str]]:
    """`get()` of the module loaded by `load_module`, and the reasons it fell back (if)."""
    engine = engine or wasmtime.Engine()
    reasons: list[str] = []
    return get(load_module(engine, path, on_fallback=reasons.append), engine), reasons


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """`mod.wasm` wizened by the CLI with --precompile, `mod.cwasm` beside it."""
    (tmp_path / "mod.wat").write_text(WAT)
    out = tmp_path / "out" / "mod.wasm"
    assert main([str(tmp_path / "mod.wat"), "-o", str(out), "--precompile", "-q"]) == 0
    return out


def test_cli_writes_the_cwasm_and_load_module_takes_it(built: Path) -> None:
    assert built.with_suffix(".cwasm").read_bytes().endswith(TRAILER_MAGIC)
    assert load(built) == (42, [])
    engine = wasmtime.Engine()
    assert get(wasmtime.Module(engine, built.read_bytes()), engine) == 42  # as the .wasm does


def test_another_engine_config_compiles_the_wasm(built: Path) -> None:
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    reasons: list[str] = []
    module = load_module(engine, built, on_fallback=reasons.append)
    assert reasons == ["mod.cwasm: Module was compiled without fuel support but it is enabled for the host"]  # fmt: skip
    store = wasmtime.Store(engine)
    store.set_fuel(1000)
    assert wasmtime.Instance(store, module, []).exports(store)["get"](store) == 42


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ("missing", "No such file or directory"),
        ("truncated", "not a module pre-compiled by hatch-wizer"),
        ("garbage", "not a module pre-compiled by hatch-wizer"),
        ("no trailer", "not a module pre-compiled by hatch-wizer"),
        ("elf header", "Unsupported ELF header"),
        ("another module's", "compiled from another module than the .wasm beside it"),
        ("stale", "compiled from another module than the .wasm beside it"),
    ],
)
def test_a_spoilt_or_foreign_cwasm_compiles_the_wasm(built: Path, spoil: str, reason: str) -> None:
    cwasm = built.with_suffix(".cwasm")
    data = cwasm.read_bytes()
    if spoil == "missing":
        cwasm.unlink()
    elif spoil == "truncated":
        cwasm.write_bytes(data[: len(data) // 2])
    elif spoil == "garbage":
        cwasm.write_bytes(b"\x7fELF nonsense")
    elif spoil == "no trailer":  # wasmtime's own artifact, fine but not bound to the .wasm
        cwasm.write_bytes(data[: -32 - len(TRAILER_MAGIC)])
    elif spoil == "elf header":
        cwasm.write_bytes(b"\0" * 64 + data[64:])
    elif spoil == "another module's":
        cwasm.write_bytes(precompile(wasmtime.wat2wasm(OTHER)).data)
    else:  # the .wasm was rebuilt, the .cwasm is last build's
        built.write_bytes(wasmtime.wat2wasm(WAT))
    value, reasons = load(built)
    assert value == (0 if spoil == "stale" else 42)  # the new .wasm ran (not wizened: 0)
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_precompiling_is_reproducible_and_needs_only_the_cpu_level() -> None:
    wasm = wasmtime.wat2wasm(WAT)
    assert precompile(wasm) == precompile(wasm, WizenOptions(cache=False))  # same bytes
    first = precompile(wasm)
    assert first.wasmtime == version("wasmtime").split(".")[0]  # what wasmtime compares on loading
    assert first.target == host_target()
    section = _elf_section(first.data, b".wasmtime.engine")
    features = dict(re.findall(rb"[\x04-\x20](has_[a-z0-9_]+)\x02(.)", section))
    level = {f.encode() for f in CPU_LEVELS.get(host_target().split("-")[0], ("", ()))[1]}
    if host_target().startswith("x86_64"):  # this machine has AVX-512: the code uses none of it
        assert first.cpu == "x86-64-v2" and b"has_sse41" in level
        assert {b"has_avx", b"has_avx2", b"has_bmi2", b"has_avx512f"} <= set(features) - level
    assert {name for name, on in features.items() if on == b"\x01"} == level, features


def test_precompile_needs_an_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mod.wat").write_text(WAT)
    assert main([str(tmp_path / "mod.wat"), "--precompile"]) == 2
    assert "--precompile needs -o FILE" in capsys.readouterr().err
    assert main([str(tmp_path / "mod.wat"), "--precompile", "-o", "."]) == 2
    assert "--precompile needs -o FILE" in capsys.readouterr().err
    # A directory without --precompile: one line about the write, not a ValueError.
    assert main([str(tmp_path / "mod.wat"), "-o", "."]) == 1
    assert capsys.readouterr().err.endswith("cannot write the module to .: Is a directory\n")


def test_importing_load_module_loads_no_build_machinery() -> None:
    code = (
        "import sys, hatch_wizer; hatch_wizer.load_module; "
        "print(sorted(m for m in sys.modules if m.startswith(('hatch', 'setuptools'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # The loader and the suffix's home; not hatchling, not the options, cache or pipeline.
    assert eval(out.stdout) == ["hatch_wizer", "hatch_wizer.engine", "hatch_wizer.engine.loader", "hatch_wizer.errors", "hatch_wizer.files"]  # fmt: skip


def test_every_public_name_resolves() -> None:
    import hatch_wizer

    assert all(getattr(hatch_wizer, name) is not None for name in hatch_wizer.__all__)
    assert sorted(dir(hatch_wizer)) == sorted(hatch_wizer.__all__)


HATCH_WIZER = 'modules = [{ path = "src/pkg/mod.wasm", precompile = true }, "src/pkg/plain.wasm"]'


def hatch_project(root: Path) -> Path:
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/pkg/__init__.py").write_text("")
    (root / "src/pkg/mod.wasm").write_bytes(wasmtime.wat2wasm(WAT))
    (root / "src/pkg/plain.wasm").write_bytes(wasmtime.wat2wasm(WAT))
    (root / "pyproject.toml").write_text(hatch_pyproject(HATCH_WIZER))
    return root


def test_hatch_wheel_holds_both_files_and_a_platform_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    wheels = []
    for name in ("one", "two"):
        root = hatch_project(tmp_path / name)
        [wheel] = WheelBuilder(str(root)).build(directory=str(tmp_path / name / "dist"))
        wheels.append(Path(wheel))
    assert wheels[0].name == f"pkg-1.0-py3-none-{wheel_platform()}.whl"
    assert wheels[0].read_bytes() == wheels[1].read_bytes()  # reproducible, .cwasm included
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        assert {"pkg/mod.wasm", "pkg/mod.cwasm", "pkg/plain.wasm"} <= names
        assert "pkg/plain.cwasm" not in names
        assert "Root-Is-Purelib: false" in z.read("pkg-1.0.dist-info/WHEEL").decode()
        z.extractall(tmp_path / "installed")
    assert load(tmp_path / "installed/pkg/mod.wasm") == (42, [])


def test_setuptools_wheel_holds_both_files_and_a_platform_tag(tmp_path: Path) -> None:
    wizer = '[tool.wizer]\nprecompile = true\nmodules = ["src/stpkg/mod.wasm"]'
    root = setuptools_project(tmp_path / "p", wizer, WAT)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--wheel", "-o", str(tmp_path / "d"), str(root)]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"build_wizer: src/stpkg/mod.wasm: .*, \.cwasm .* for wasmtime \d+ on ", result.stdout + result.stderr)  # fmt: skip
    [wheel] = (tmp_path / "d").glob("*.whl")
    assert wheel.name == f"stpkg-1.0-py3-none-{wheel_platform()}.whl"
    with zipfile.ZipFile(wheel) as z:
        assert {"stpkg/mod.wasm", "stpkg/mod.cwasm"} <= set(z.namelist())
        assert "Root-Is-Purelib: false" in z.read("stpkg-1.0.dist-info/WHEEL").decode()
        z.extractall(tmp_path / "installed")
    assert load(tmp_path / "installed/stpkg/mod.wasm") == (42, [])


def test_hatch_wizer_build_precompile_flag_and_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hatch_project(tmp_path / "p")
    out = root / "build/wizer/src/pkg"
    assert main_build(["--project", str(root)]) == 0
    assert (out / "mod.cwasm").is_file() and not (out / "plain.cwasm").exists()
    assert main_build(["--project", str(root), "--precompile"]) == 0
    assert (out / "plain.cwasm").is_file()  # the flag precompiles every module
    capsys.readouterr()
    assert main_build(["--project", str(root), "--precompile"]) == 0
    assert capsys.readouterr().out.count("up to date") == 2
    assert main_build(["--project", str(root)]) == 0  # plain.wasm without the flag: no .cwasm
    assert not (out / "plain.cwasm").exists() and (out / "mod.cwasm").is_file()
    assert load(out / "plain.wasm")[0] == load(out / "mod.wasm")[0] == 42


def test_precompile_key_is_a_boolean_and_components_are_refused(tmp_path: Path) -> None:
    from hatch_wizer.build.config import load_config
    from hatch_wizer.errors import ConfigError, UnsupportedModule

    table = {"tool": {"wizer": {"modules": [{"path": "m.wasm", "precompile": "yes"}]}}}
    with pytest.raises(ConfigError, match=r"^tool\.wizer\.modules\[0\]\.precompile must be a boolean$"):  # fmt: skip
        load_config(table, tmp_path)
    table["tool"]["wizer"] = {"precompile": True, "modules": ["m.wasm"]}
    config = load_config(table, tmp_path)
    assert config is not None and config.modules[0].options.precompile
    with pytest.raises(UnsupportedModule, match="components are not supported"):
        precompile(bytes(wasmtime.wat2wasm("(component)")))


def test_a_failed_cwasm_write_names_the_cwasm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mod.wat").write_text(WAT)
    (tmp_path / "out.cwasm").mkdir()  # the module's write succeeds, the .cwasm's cannot
    out = tmp_path / "out.wasm"
    assert main([str(tmp_path / "mod.wat"), "--precompile", "-o", str(out), "--no-cache"]) == 1
    assert capsys.readouterr().err.endswith(
        f"cannot write {tmp_path / 'out.cwasm'}: Is a directory\n"
    )
