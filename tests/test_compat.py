"""The version ranges hatch-wizer declares, and what a user outside them sees: one line naming
the installed release and the range, never an AttributeError. `.ci/run` runs the fast subset on
the oldest declared releases; these tests pin the declarations to the code that checks them."""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import setuptools
import wasmtime

from hatch_wizer.build import setuptools_plugin
from hatch_wizer.build.cli import main
from hatch_wizer.engine import wasmtime_api as api
from hatch_wizer.engine.compile import engine_config
from hatch_wizer.errors import ConfigError, UnsupportedWasmtime
from hatch_wizer.options import Features

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lower_bound(name: str, requirements: list[str]) -> str:
    [bound] = [m[1] for r in requirements if (m := re.fullmatch(rf"{name}>=([\d.]+)", r))]
    return bound


def test_the_adapter_checks_the_declared_wasmtime_range() -> None:
    assert f"wasmtime>={_lower_bound('wasmtime', PROJECT['dependencies'])}" == api.SUPPORTED


def test_the_plugin_checks_the_tested_setuptools() -> None:
    tested = _lower_bound("setuptools", PROJECT["optional-dependencies"]["test"])
    assert tested == str(setuptools_plugin.OLDEST_SETUPTOOLS)


@pytest.fixture
def fresh_check() -> Iterator[None]:
    api.require.cache_clear()
    api.require_component.cache_clear()
    yield
    api.require.cache_clear()
    api.require_component.cache_clear()


def _as_if(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the installed wasmtime-py look like `version` from 39-43: the check is by
    capability, and these lack exception references (`wasmtime_exnref_t`, new in 44)."""
    monkeypatch.setattr(api, "installed_version", lambda: version)
    monkeypatch.delattr(importlib.import_module("wasmtime._ffi"), "wasmtime_exnref_t")


def test_an_old_wasmtime_is_named_in_one_line(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_if("42.0.0", monkeypatch)
    with pytest.raises(UnsupportedWasmtime) as info:
        api.require()
    message = str(info.value)
    assert message == (
        f"wasmtime-py 42.0.0 is older than hatch-wizer needs; hatch-wizer supports "
        f"{api.SUPPORTED} (pip install '{api.SUPPORTED}')"
    )


def test_a_missing_internal_is_named_not_raised(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if a release renamed one of the C functions the adapter calls.
    monkeypatch.setattr(api, "_FFI", (*api._FFI, "wasmtime_renamed_away"))
    with pytest.raises(UnsupportedWasmtime, match=r"lacks _ffi\.wasmtime_renamed_away, which"):
        api.require()


def test_a_release_in_range_is_taken_without_asking_its_version(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The version (importlib.metadata, slow to import) is only for the message.
    monkeypatch.setattr(api, "installed_version", lambda: pytest.fail("version looked up"))
    assert api.require() is importlib.import_module("wasmtime._ffi")


def test_a_missing_component_internal_is_named_when_a_component_needs_it(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wasmtime import component

    [owner] = [cls for cls in component.VariantType.__mro__ if "_tagged" in vars(cls)]
    monkeypatch.delattr(owner, "_tagged")
    api.require()  # core modules do not need it
    with pytest.raises(UnsupportedWasmtime, match=r"lacks component\.VariantType\._tagged, which"):
        api.require_component()


def test_the_cli_reports_an_unsupported_wasmtime_in_one_line(
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _as_if("40.0.0", monkeypatch)
    module = tmp_path / "in.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")
    assert main([str(module), "-o", str(tmp_path / "out.wasm"), "--no-cache"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("hatch-wizer: error: ")
    assert line.endswith(f"wasmtime-py 40.0.0 is older than hatch-wizer needs; hatch-wizer "
                         f"supports {api.SUPPORTED} (pip install '{api.SUPPORTED}')")  # fmt: skip
    assert not (tmp_path / "out.wasm").exists()


def test_an_old_setuptools_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setuptools, "__version__", "63.4.3")
    with pytest.raises(ConfigError, match=r"^setuptools 63\.4\.3 is too old .* setuptools>=64 "):
        setuptools_plugin._check_setuptools(setuptools.__version__)


def test_no_module_but_the_adapter_reaches_into_wasmtime() -> None:
    """Private wasmtime-py names (`_ffi`, `_context()`, `_from_ptr`, handles) appear only in
    the adapter, so a release that renames one breaks one module, with a clear error; the
    benchmarks' too. (Only engine/ imports wasmtime in the package: test_architecture.py.)"""
    private = re.compile(
        r"wasmtime\._|_ffi\b|\._context\(|_from_ptr|__private|\._tagged\(|wrap_extern"
        r"|\._(func|global|table|instance)\b(?!\()"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(
            [*(ROOT / "hatch_wizer/engine").glob("*.py"), *(ROOT / "benches").glob("*.py")]
        )
        if path.name != "wasmtime_api.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line.split("#", 1)[0])
    ]
    assert not offenders


def test_the_raw_call_passes_i32s_and_reports_traps() -> None:
    wat = """(module (func (export "sub") (param i32 i32) (result i32) local.get 0 local.get 1 i32.sub)
      (func (export "trap") unreachable))"""
    store = wasmtime.Store()
    instance = wasmtime.Instance(store, wasmtime.Module(store.engine, wat), [])
    sub, trap = (api.export(store, instance, name) for name in ("sub", "trap"))
    assert api.call_i32(store, sub, (2, 44), 1) == -42
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        api.call_i32(store, trap, (), 0)


def test_the_single_pass_allocator_reaches_cranelift() -> None:
    # Through Config.cranelift_flag_set from wasmtime-py 45, its C function on 44 (the oldest
    # venv of .ci/run): the compiled artifact records Cranelift's settings.
    wasm = wasmtime.wat2wasm('(module (func (export "f") (param i32) (result i32) local.get 0))')

    def compiled(regalloc: str) -> bytes:
        config = engine_config(Features(), cache=False, stoppable=False, regalloc=regalloc)
        return wasmtime.Module(wasmtime.Engine(config), wasm).serialize()

    assert compiled("single-pass") != compiled("backtracking") == compiled("backtracking")


RECURSE = """(module (func $r (export "r") (param i32) (result i32)
  (if (result i32) (local.get 0)
    (then (i32.add (call $r (i32.sub (local.get 0) (i32.const 1))) (i32.const 1)))
    (else (i32.const 0)))))"""


def _deepest(config: wasmtime.Config) -> int:
    """The deepest recursion of RECURSE that code compiled with `config` runs without
    exhausting the wasm stack (to within 1 %)."""
    engine = wasmtime.Engine(config)
    module = wasmtime.Module(engine, wasmtime.wat2wasm(RECURSE))
    low, high = 1, 1 << 24
    while high - low > low // 100:
        depth = (low + high) // 2
        store = wasmtime.Store(engine)
        try:
            wasmtime.Instance(store, module, []).exports(store)["r"](store, depth)
            low = depth
        except wasmtime.Trap:
            high = depth
    return low


def test_single_pass_code_gets_twice_the_default_wasm_stack() -> None:
    # Its frames are bigger; max_wasm_stack reaches 44 through the C function.
    config = engine_config(Features(), cache=False, stoppable=False, regalloc="single-pass")
    default = engine_config(Features(), cache=False, stoppable=False, regalloc="single-pass")
    api.set_config(default, "max_wasm_stack", 512 << 10)  # wasmtime's default
    assert 1.9 < _deepest(config) / _deepest(default) < 2.1
