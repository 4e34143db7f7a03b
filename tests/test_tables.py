"""Tables changed during init are snapshotted (the Rust Wizer rejects these modules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hatch_wizer import WizenOptions
from hatch_wizer.wasm.parse import parse_module
from tests.harness import assert_same_behaviour, wasm_of

OPTS = WizenOptions(cache=False)

# A plugin host the way runtimes build one: init grows the function table and installs a
# callback per plugin, recording each plugin's slot in a registry in linear memory.
REGISTRY_WAT = """(module
  (type $handler (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $callbacks 1 funcref)
  (global $count (export "count") (mut i32) (i32.const 0))
  (elem declare func $double $square $negate $shout)
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  (func $negate (param i32) (result i32) (i32.sub (i32.const 0) (local.get 0)))
  (func $shout (param i32) (result i32) (i32.add (local.get 0) (i32.const 1000)))
  (func $register (param $name i32) (param $f funcref)
    (local $slot i32)
    (local.set $slot (table.grow $callbacks (local.get $f) (i32.const 1)))
    ;; registry: name id -> slot, at 64 + 4 * name
    (i32.store offset=64 (i32.shl (local.get $name) (i32.const 2)) (local.get $slot))
    (global.set $count (i32.add (global.get $count) (i32.const 1))))
  (func (export "wizer-initialize")
    (call $register (i32.const 0) (ref.func $double))
    (call $register (i32.const 1) (ref.func $square))
    (call $register (i32.const 2) (ref.func $negate))
    (call $register (i32.const 3) (ref.func $shout))
    ;; a plugin replaced after registration, and slot 0 left empty on purpose
    (table.set $callbacks (i32.load offset=72 (i32.const 0)) (ref.func $double)))
  (func (export "dispatch") (param $name i32) (param $arg i32) (result i32)
    (call_indirect $callbacks (type $handler)
      (local.get $arg) (i32.load offset=64 (i32.shl (local.get $name) (i32.const 2)))))
  (func (export "call_slot") (param $slot i32) (param $arg i32) (result i32)
    (call_indirect $callbacks (type $handler) (local.get $arg) (local.get $slot))))"""


def test_plugin_registry_built_at_init_behaves_the_same() -> None:
    calls = [("dispatch", (n, 7)) for n in range(4)]
    calls += [("call_slot", (slot, 3)) for slot in range(7)]  # 0 is null, 5 and 6 out of range
    out = assert_same_behaviour(REGISTRY_WAT, calls, OPTS)
    assert parse_module(out).tables[0].limits.minimum == 5


def _rust_wizer() -> Path | None:
    found = shutil.which("wizer")
    candidates = [Path(found)] if found else []
    candidates += Path("benches/.work/npm").glob("**/wizer-linux-x64/wizer")
    return next((c for c in candidates if c.is_file()), None)


def test_rust_wizer_rejects_what_we_snapshot(tmp_path: Path) -> None:
    wizer = _rust_wizer()
    if wizer is None:
        pytest.skip("the Rust Wizer is not installed (npm @bytecodealliance/wizer-linux-x64)")
    src = tmp_path / "registry.wasm"
    src.write_bytes(wasm_of(REGISTRY_WAT))
    result = subprocess.run(
        [str(wizer), str(src), "-o", str(tmp_path / "out.wasm")], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "table.grow" in result.stderr or "table.set" in result.stderr


def test_foreign_function_left_in_a_table_is_an_error(tmp_path: Path) -> None:
    from hatch_wizer import Preload, wizen
    from hatch_wizer.errors import InitError

    helper = tmp_path / "helper.wat"
    helper.write_text(
        "(module (func $secret (result i32) i32.const 7) (elem declare func $secret)"
        ' (func (export "get") (result funcref) (ref.func $secret)))'
    )
    wat = """(module (import "helper" "get" (func $get (result funcref)))
      (table 2 funcref)
      (func (export "wizer-initialize") (table.set (i32.const 1) (call $get))))"""
    options = WizenOptions(preloads=(Preload("helper", helper),), cache=False)
    with pytest.raises(
        InitError, match="table 0 slot 1 holds a function that the module does not define or import"
    ):
        wizen(wasm_of(wat), options)
