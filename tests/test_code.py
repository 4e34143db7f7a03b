"""The instruction decoder used to find GC mutations in modules with GC types."""

from __future__ import annotations

from pathlib import Path

import pytest

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.errors import UnsupportedModule
from hatch_wizer.wasm.code import _bodies, _instructions, gc_mutations
from hatch_wizer.wasm.parse import parse_module
from tests.harness import assert_same_behaviour, wasm_of

OPTS = WizenOptions(cache=False)

GC_WAT = """(module
  (type $point (struct (field $x (mut i32))))
  (type $arr (array (mut i32)))
  (global $origin (ref $point) (struct.new $point (i32.const 5)))
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set $g (struct.get $point $x (global.get $origin))))
  (func $move (export "move") (struct.set $point $x (global.get $origin) (i32.const 9)))
  (func (export "fill") (array.fill $arr (array.new_default $arr (i32.const 3)) (i32.const 0) (i32.const 1) (i32.const 2))))"""


def test_gc_mutation_is_rejected_with_function_name_and_offset() -> None:
    with pytest.raises(
        UnsupportedModule, match=r"function 1 \(`move`\) uses `struct.set` at offset 0x[0-9a-f]+"
    ):
        wizen(wasm_of(GC_WAT), OPTS)


def test_all_gc_mutations_are_found() -> None:
    found = [name for _, _, name in gc_mutations(parse_module(wasm_of(GC_WAT)))]
    assert found == ["struct.set", "array.fill"]


def test_gc_module_without_mutations_is_wizened() -> None:
    wat = """(module
      (type $point (struct (field $x i32)))
      (global $origin (ref $point) (struct.new $point (i32.const 5)))
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer-initialize") (global.set $g (struct.get $point 0 (global.get $origin))))
      (func (export "x") (result i32) (struct.get $point 0 (global.get $origin))))"""
    assert_same_behaviour(wat, [("x", ())], OPTS)


def test_decoder_stays_aligned_on_a_real_c_program() -> None:
    module = parse_module(Path("tests/data/ctors.wasm").read_bytes())
    for _, start, end in _bodies(module):
        *_, (offset, op, _) = _instructions(module.wasm, start, end)
        assert (offset, op) == (end - 1, 0x0B)


def test_decoder_handles_every_immediate_kind() -> None:
    wat = """(module (memory 1) (memory $m2 1) (table 1 funcref) (tag $e (param i32))
      (type $t (func (param i32) (result i32)))
      (func $f (param i32) (result i32) (local f64 v128)
        (block (result i32) (loop (br_if 0 (i32.const 0))) (i32.const 1))
        (br_table 0 0 0 (i32.const 0))
        (drop (call_indirect (type $t) (i32.const 0) (i32.const 0)))
        (drop (select (result i32) (i32.const 1) (i32.const 2) (i32.const 0)))
        (drop (i64.const -1)) (drop (f32.const 1)) (drop (f64.const 2))
        (i32.store $m2 offset=8 (i32.const 0) (i32.load8_u offset=3 (i32.const 0)))
        (local.set 2 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (v128.const i64x2 1 2) (v128.const i64x2 3 4)))
        (drop (i32x4.extract_lane 1 (local.get 2)))
        (v128.store32_lane offset=4 2 (i32.const 0) (local.get 2))
        (memory.copy $m2 0 (i32.const 0) (i32.const 0) (i32.const 0))
        (drop (ref.is_null (ref.null func)))
        (try_table (catch $e 0) (throw $e (i32.const 1))) (drop)
        (drop (i32.atomic.rmw.add offset=4 (i32.const 0) (i32.const 1)))
        (atomic.fence)
        (i32.const 0))
      (func (export "wizer-initialize")))"""
    module = parse_module(wasm_of(wat))
    for _, start, end in _bodies(module):
        *_, (offset, op, _) = _instructions(module.wasm, start, end)
        assert (offset, op) == (end - 1, 0x0B)
