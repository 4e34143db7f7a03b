"""End-to-end wizening of WAT fixtures: each output must behave like the original after init."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime

from hatch_wizer import Preload, WizenOptions, WizerError, instrument, wizen
from hatch_wizer.errors import ConfigError, InitError, InvalidModule, UnsupportedModule
from hatch_wizer.wasm.parse import parse_module
from tests.harness import assert_same_behaviour, observe, trap_unknown_imports, wasm_of

OPTS = WizenOptions(cache=False)


def exports_of(wasm: bytes) -> list[str]:
    return [e.name for e in parse_module(wasm).exports]


def test_mutable_globals_of_every_numeric_type_keep_exact_bits() -> None:
    out = assert_same_behaviour(
        """(module
          (global $i (export "i") (mut i32) (i32.const 0))
          (global $l (export "l") (mut i64) (i64.const 0))
          (global $f (export "f") (mut f32) (f32.const 0))
          (global $d (export "d") (mut f64) (f64.const 0))
          (global $v (export "v") (mut v128) (v128.const i64x2 0 0))
          (global $c (export "c") i32 (i32.const 7))
          (func (export "wizer-initialize")
            (global.set $i (i32.const -5))
            (global.set $l (i64.const 0x8000000000000001))
            (global.set $f (f32.reinterpret_i32 (i32.const 0x7fa00001)))   ;; a signalling NaN
            (global.set $d (f64.reinterpret_i64 (i64.const 0x7ff0000000000001)))
            (global.set $v (v128.const i32x4 1 2 3 0xffffffff)))
          (func (export "fbits") (result i32) (i32.reinterpret_f32 (global.get $f))))""",
        [("fbits", ())],
        OPTS,
    )
    assert "wizer-initialize" not in exports_of(out)


def test_memory_state_and_size_after_growth() -> None:
    assert_same_behaviour(
        """(module
          (memory (export "memory") 1 10)
          (data (i32.const 10) "hello")
          (func (export "wizer-initialize")
            (drop (memory.grow (i32.const 2)))
            (i32.store offset=1337 (i32.const 0) (i32.const 42))
            (i32.store8 offset=196607 (i32.const 0) (i32.const 9))   ;; last byte of the memory
            (i32.store8 (i32.const 10) (i32.const 0)))                ;; zero an original byte
          (func (export "size") (result i32) (memory.size))
          (func (export "grow") (result i32) (memory.grow (i32.const 7)))
          (func (export "grow_too_far") (result i32) (memory.grow (i32.const 1))))""",
        [("size", ()), ("grow", ()), ("grow_too_far", ())],
        OPTS,
    )


def test_multi_memory_and_memory64() -> None:
    assert_same_behaviour(
        """(module
          (memory $a (export "a") 1)
          (memory $b (export "b") i64 1)
          (memory $c (export "c") 2)
          (func (export "wizer-initialize")
            (i32.store $a offset=1337 (i32.const 0) (i32.const 41))
            (i32.store $b offset=1337 (i64.const 0) (i32.const 1))
            (i32.store $c offset=70000 (i32.const 0) (i32.const 3)))
          (func (export "run") (result i32)
            (i32.add (i32.load $a offset=1337 (i32.const 0)) (i32.load $b offset=1337 (i64.const 0)))))""",
        [("run", ())],
        OPTS,
    )


def test_start_function_runs_once_and_start_section_is_dropped() -> None:
    out = assert_same_behaviour(
        """(module
          (global $g (export "g") (mut i32) (i32.const 0))
          (func $start (global.set $g (i32.add (global.get $g) (i32.const 1))))
          (start $start)
          (func (export "wizer-initialize") (global.set $g (i32.mul (global.get $g) (i32.const 10)))))""",
        [],
        OPTS,
    )
    assert parse_module(out).start is None


def test_reactor_initialize_runs_first_and_is_unexported() -> None:
    out = assert_same_behaviour(
        """(module
          (global $g (export "g") (mut i32) (i32.const 0))
          (func (export "_initialize") (global.set $g (i32.const 6)))
          (func (export "wizer-initialize") (global.set $g (i32.mul (global.get $g) (i32.const 7)))))""",
        [],
        OPTS,
    )
    assert exports_of(out) == ["g"]


def test_initialize_as_init_func_runs_once() -> None:
    wat = """(module
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $g (i32.add (global.get $g) (i32.const 1)))))"""
    out = assert_same_behaviour(wat, [], WizenOptions(init_func="_initialize", cache=False))
    assert exports_of(out) == ["g"]


def test_keep_init_func_keeps_export_but_not_initialize() -> None:
    wat = """(module
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $g (i32.const 1)))
      (func (export "wizer-initialize") (global.set $g (i32.add (global.get $g) (i32.const 1)))))"""
    out = assert_same_behaviour(wat, [], WizenOptions(keep_init_func=True, cache=False))
    assert exports_of(out) == ["g", "wizer-initialize"]


def test_legacy_init_name_is_used_when_the_default_is_absent() -> None:
    wasm = wasm_of("""(module (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer.initialize") (global.set $g (i32.const 3))))""")
    lines: list[str] = []
    out = wizen(wasm, OPTS, report=lines.append)
    assert any("wizer.initialize" in line for line in lines)
    assert exports_of(out) == ["g"]


RENAME_WAT = """(module
  (func (export "wizer-initialize"))
  (func (export "func_a") (result i32) i32.const 1)
  (func (export "func_b") (result i32) i32.const 2)
  (func (export "func_c") (result i32) i32.const 3))"""


def test_renames_follow_wizer_semantics() -> None:
    options = WizenOptions(renames=(("func_a", "func_b"), ("func_b", "func_c")), cache=False)
    out = wizen(wasm_of(RENAME_WAT), options)
    module = parse_module(out)
    assert [(e.name, e.index) for e in module.exports] == [("func_a", 2), ("func_b", 3)]


@pytest.mark.parametrize(
    ("renames", "message"),
    [
        ((("x", "nope"),), "rename source `nope` is not an export"),
        ((("x", "func_a"), ("x", "func_b")), "more than one export is renamed to `x`"),
        ((("x", "func_a"), ("y", "func_a")), "`func_a` is renamed more than once"),
        ((("x", "wizer-initialize"),), "is the init function"),
    ],
)
def test_bad_renames_are_errors(renames: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(WizerError, match=message):
        wizen(wasm_of(RENAME_WAT), WizenOptions(renames=renames, cache=False))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_data_segments": 0}, r"^max_data_segments must be between 1 and 100000 .*not 0$"),
        ({"init_timeout": -1.0}, r"^init_timeout must be a positive number .*not -1.0$"),
        ({"init_timeout": float("inf")}, r"^init_timeout must be a positive number .*not inf$"),
        ({"unknown_imports": "ignore"}, r"^unknown_imports must be one of trap, reject, default"),
        ({"compiler": "llvm"}, r"^compiler must be one of auto, cranelift, winch, not 'llvm'$"),
        ({"opt_level": "3"}, r"^opt_level must be one of 0, 1, 2, s or None, not '3'$"),
        ({"regalloc_algorithm": "fast"}, r"^regalloc_algorithm must be one of backtracking, single-pass, not 'fast'$"),
    ],
)
def test_options_out_of_range_are_refused_before_any_work(
    change: dict[str, Any], message: str
) -> None:
    options = WizenOptions(cache=False)._replace(**change)
    with pytest.raises(ConfigError, match=message):
        wizen(b"not wasm", options)  # the options are checked before the bytes are
    with pytest.raises(ConfigError, match=message):
        instrument(wasm_of(RENAME_WAT), options)


def test_bulk_memory_passive_segments_survive_for_run_time_memory_init() -> None:
    out = assert_same_behaviour(
        """(module
          (memory (export "m") 1)
          (data $a "\\01\\02\\03\\04")
          (data $b (i32.const 100) "active")
          (data $c "\\05\\06\\07\\08")
          (func (export "wizer-initialize")
            (memory.init $a (i32.const 0) (i32.const 0) (i32.const 4))
            (memory.copy (i32.const 200) (i32.const 100) (i32.const 6))
            (memory.fill (i32.const 300) (i32.const 77) (i32.const 13)))
          (func (export "again") (result i32)
            (memory.init $a (i32.const 400) (i32.const 0) (i32.const 4))
            (memory.init $c (i32.const 404) (i32.const 0) (i32.const 4))
            (i32.load (i32.const 402)))
          (func (export "active_is_dropped")
            (memory.init $b (i32.const 0) (i32.const 0) (i32.const 1))))""",
        [("again", ()), ("active_is_dropped", ())],
        OPTS,
    )
    assert [s.mode for s in parse_module(out).data][:3] == ["passive"] * 3


def test_segment_dropped_during_init_becomes_empty() -> None:
    out = assert_same_behaviour(
        """(module
          (memory 1)
          (data $a "\\01\\02\\03\\04")
          (data $b "\\05")
          (func (export "wizer-initialize") (data.drop $a))
          (func (export "use_a") (memory.init $a (i32.const 0) (i32.const 0) (i32.const 1)))
          (func (export "use_a_empty") (memory.init $a (i32.const 0) (i32.const 0) (i32.const 0)))
          (func (export "use_b") (result i32)
            (memory.init $b (i32.const 0) (i32.const 0) (i32.const 1)) (i32.load8_u (i32.const 0))))""",
        [("use_a", ()), ("use_a_empty", ()), ("use_b", ())],
        OPTS,
    )
    assert [s.length for s in parse_module(out).data[:2]] == [0, 1]


def test_unknown_import_is_fine_until_called() -> None:
    wat = """(module (import "x" "f" (func $f))
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer-initialize") (global.set $g (i32.const 1)))
      (func (export "run") (call $f)))"""
    assert_same_behaviour(wat, [("run", ())], OPTS)


def test_calling_an_unknown_import_names_it() -> None:
    wasm = wasm_of("""(module (import "env" "host_fn" (func $f))
      (func (export "wizer-initialize") (call $f)))""")
    with pytest.raises(InitError, match="used the import `env::host_fn`, which nothing provides"):
        wizen(wasm, OPTS)


def test_preloads_provide_imports(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "helper.wat"  # type: ignore[operator]
    path.write_text(
        '(module (func (export "f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))'
    )
    wat = """(module (import "helper" "f" (func $f (param i32) (result i32)))
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer-initialize") (global.set $g (call $f (i32.const 41)))))"""
    out = wizen(wasm_of(wat), WizenOptions(preloads=(Preload("helper", path),), cache=False))
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    trap_unknown_imports(linker, wasmtime.Module(engine, out))
    instance = linker.instantiate(store, wasmtime.Module(engine, out))
    assert instance.exports(store)["g"].value(store) == 42


@pytest.mark.parametrize("names", [("helper", "helper"), ("wasi_snapshot_preview1",)])
def test_a_preload_whose_names_are_taken_is_one_error(tmp_path: Any, names: tuple[str]) -> None:
    path = tmp_path / "helper.wat"
    path.write_text('(module (func (export "fd_write")))')
    preloads = tuple(Preload(name, path) for name in names)
    options = WizenOptions(preloads=preloads, allow_wasi=True, cache=False)
    wasm = wasm_of('(module (func (export "wizer-initialize")))')
    with pytest.raises(ConfigError, match=f"^preload `{names[0]}` .*fd_write` defined twice$"):
        wizen(wasm, options)


def test_same_input_gives_same_bytes() -> None:
    wat = """(module (memory 4)
      (func (export "wizer-initialize") (local $i i32)
        (loop $l
          (i32.store8 (i32.mul (local.get $i) (i32.const 97)) (local.get $i))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))))"""
    assert wizen(wasm_of(wat), OPTS) == wizen(wasm_of(wat), OPTS)


def test_data_segment_limit_is_respected() -> None:
    # A byte every 6 bytes over 10 pages: about 109,000 runs, more than engines accept.
    wat = """(module (memory (export "m") 10)
      (func (export "wizer-initialize") (local $i i32)
        (loop $l
          (i32.store8 (local.get $i) (i32.const 42))
          (local.set $i (i32.add (local.get $i) (i32.const 6)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 655360))))))"""
    out = assert_same_behaviour(wat, [], OPTS)
    assert len(parse_module(out).data) <= 100_000
    small = wizen(wasm_of(wat), WizenOptions(max_data_segments=10, cache=False))
    assert len(parse_module(small).data) <= 10


def test_sparse_heap_stays_small() -> None:
    wat = """(module (memory (export "m") 1024)
      (func (export "wizer-initialize") (local $i i32)
        (loop $l
          (i32.store8 (i32.mul (local.get $i) (i32.const 33331)) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))))"""
    out = assert_same_behaviour(wat, [], OPTS)
    assert len(out) < 20_000


# --- tables and references -----------------------------------------------------------------------

TABLE_WAT = """(module
  (type $t (func (result i32)))
  (import "env" "imported" (func $imp (result i32)))
  (table $tab (export "tab") 4 funcref)
  (elem (table $tab) (i32.const 0) func $one $two)
  (elem declare func $three $imp)
  (global $fg (mut funcref) (ref.null func))
  (func $one (result i32) i32.const 1)
  (func $two (result i32) i32.const 2)
  (func $three (result i32) i32.const 3)
  (func (export "wizer-initialize")
    (table.set $tab (i32.const 1) (ref.func $three))
    (drop (table.grow $tab (ref.func $one) (i32.const 3)))
    (table.set $tab (i32.const 0) (ref.null func))
    (table.set $tab (i32.const 6) (ref.func $imp))
    (global.set $fg (ref.func $two)))
  (func (export "call") (param i32) (result i32) (call_indirect $tab (type $t) (local.get 0)))
  (func (export "size") (result i32) (table.size $tab))
  (func (export "callg") (result i32)
    (table.set $tab (i32.const 5) (global.get $fg))
    (call_indirect $tab (type $t) (i32.const 5))))"""


def _imported(store: wasmtime.Store, linker: wasmtime.Linker) -> None:
    ty = wasmtime.FuncType([], [wasmtime.ValType.i32()])
    linker.define_func("env", "imported", ty, lambda: 9)


def test_table_changes_are_snapshotted() -> None:
    calls = [("call", (i,)) for i in range(8)] + [("size", ()), ("callg", ())]
    out = assert_same_behaviour(TABLE_WAT, calls, OPTS, linker_setup=_imported)
    assert parse_module(out).tables[0].limits.minimum == 7


def test_imported_function_in_table_stays_imported() -> None:
    wat = """(module (import "env" "imported" (func $f (result i32)))
      (type $t (func (result i32)))
      (table $tab 2 funcref) (elem declare func $f)
      (func (export "wizer-initialize") (table.set $tab (i32.const 1) (ref.func $f)))
      (func (export "call") (param i32) (result i32) (call_indirect $tab (type $t) (local.get 0))))"""
    out = assert_same_behaviour(wat, [("call", (1,)), ("call", (0,))], OPTS, linker_setup=_imported)
    assert [(i.module, i.name) for i in parse_module(out).imports] == [("env", "imported")]


def test_externref_table_growth_and_null_globals_are_snapshotted() -> None:
    assert_same_behaviour(
        """(module (table $t (export "t") 1 externref)
          (global $e (mut externref) (ref.null extern))
          (func (export "wizer-initialize")
            (drop (table.grow $t (ref.null extern) (i32.const 4)))
            (global.set $e (ref.null extern)))
          (func (export "size") (result i32) (table.size $t)))""",
        [("size", ())],
        OPTS,
    )


def test_elem_segment_dropped_during_init_becomes_empty() -> None:
    out = assert_same_behaviour(
        """(module (type $t (func (result i32)))
          (table $tab 2 funcref)
          (elem $p func $one)
          (func $one (result i32) i32.const 1)
          (func (export "wizer-initialize") (elem.drop $p))
          (func (export "use") (result i32)
            (table.init $tab $p (i32.const 0) (i32.const 0) (i32.const 1))
            (call_indirect $tab (type $t) (i32.const 0))))""",
        [("use", ())],
        OPTS,
    )
    assert parse_module(out).elements[0].length == 0


# --- rejections ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wat", "error", "message"),
    [
        (
            '(module (import "env" "memory" (memory 1)) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "imported memory `env::memory` is not supported",
        ),
        (
            '(module (import "env" "g" (global i32)) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "imported global `env::g` is not supported",
        ),
        (
            '(module (import "env" "t" (table 1 funcref)) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "imported table `env::t` is not supported",
        ),
        (
            '(module (memory 1 1 shared) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "memory 0 is shared",
        ),
        (
            '(module (func (export "__wizer_x")) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "exports `__wizer_x`, but names starting with `__wizer_` are reserved",
        ),
        (
            '(module (import "__wizer_m" "f" (func)) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "imports `__wizer_m::f`",
        ),
        ("(module)", InitError, "the module has no `wizer-initialize` export"),
        (
            '(module (global (export "wizer-initialize") i32 (i32.const 0)))',
            InitError,
            "`wizer-initialize` export is not a function",
        ),
        (
            '(module (func (export "wizer-initialize") (param i32)))',
            InitError,
            "must take no arguments and return nothing",
        ),
        (
            '(module (global (mut anyref) (ref.null any)) (func (export "wizer-initialize")))',
            UnsupportedModule,
            "mutable global 0 has reference type `anyref`",
        ),
    ],
)
def test_rejections_have_clear_messages(wat: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        wizen(wasm_of(wat), OPTS)


def test_trap_in_init_reports_backtrace_with_offsets_in_the_input() -> None:
    # Instrumentation adds exports and functions before the code; offsets must not move.
    wasm = wasm_of("""(module (memory 1) (global (mut i32) (i32.const 0))
      (func $deep (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
      (func $init (export "wizer-initialize") (drop (call $deep (i32.const 0)))))""")
    div_u = wasm.index(b"\x20\x00\x6e") + 2  # local.get 0, then i32.div_u
    with pytest.raises(
        InitError,
        match=rf"`wizer-initialize` trapped: .*divide by zero \(in deep at {div_u:#x} < init at",
    ):
        wizen(wasm, OPTS)


def test_init_that_never_ends_times_out() -> None:
    wasm = wasm_of('(module (func (export "wizer-initialize") (loop $l (br $l))))')
    with pytest.raises(InitError, match=r"did not finish within 0\.5 s"):
        wizen(wasm, WizenOptions(init_timeout=0.5, cache=False))


def test_stack_overflow_in_init_is_an_error() -> None:
    wasm = wasm_of('(module (func $f (export "wizer-initialize") (call $f)))')
    with pytest.raises(InitError, match="call stack exhausted"):
        wizen(wasm, OPTS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello", "not a WebAssembly module"),
        (b"\0asm\x01\x00\x00\x00\x01\x05\x01", "offset"),
        (b"\0asm\x02\x00\x00\x00", "unsupported WebAssembly version"),
    ],
)
def test_invalid_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidModule, match=message):
        wizen(data, OPTS)


def test_component_given_to_the_core_path() -> None:
    from hatch_wizer import instrument

    with pytest.raises(InvalidModule, match="expected a core module, found a component"):
        instrument(b"\0asm\x0d\x00\x01\x00")


def test_the_two_step_functions_stay_functions_after_a_run() -> None:
    # The pipeline loads on the first call; no submodule may take over their names.
    import hatch_wizer

    wizen(wasm_of("(module (func (export \"wizer-initialize\")))"), OPTS)
    assert callable(hatch_wizer.instrument) and callable(hatch_wizer.snapshot)


def test_type_error_names_the_offset() -> None:
    # (func (result i32)) with an empty body: fails validation, not parsing.
    wasm = bytes.fromhex("0061736d010000000105016000017f030201000a040102000b")
    with pytest.raises(InvalidModule, match=r"type mismatch.*\(at offset 0x[0-9a-f]+\)"):
        wizen(wasm, OPTS)


def test_relaxed_simd_runs_deterministically() -> None:
    # (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 when fused and 0 when not: the deterministic
    # profile always fuses, whatever the CPU.
    wat = """(module
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer-initialize")
        (global.set $g (i32x4.extract_lane 0 (f32x4.relaxed_madd
          (f32x4.splat (f32.const 0x1.001p+0)) (f32x4.splat (f32.const 0x1.001p+0))
          (f32x4.splat (f32.const -0x1.002p+0)))))))"""
    out = assert_same_behaviour(wat, [], OPTS)
    assert observe(out, []).globals["g"] == 0x33800000


def test_python_scan_and_wasm_scan_give_the_same_bytes() -> None:
    # A state without the Wasm scanner and encoder: Python scans and encodes.
    wat = """(module (memory (export "m") 4) (memory (export "n") i64 1)
      (func (export "wizer-initialize") (local $i i32)
        (loop $l
          (i32.store8 (i32.mul (local.get $i) (i32.const 37)) (local.get $i))
          (i64.store 1 (i64.extend_i32_u (i32.mul (local.get $i) (i32.const 11))) (i64.const -1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 5000))))))"""
    from hatch_wizer import instrument, snapshot
    from hatch_wizer.engine.runtime import Runtime
    from tests.test_snapshot_memory import PlainState  # a runtime other than ours would offer

    context, instrumented = instrument(wasm_of(wat), OPTS)
    runtime = Runtime(OPTS)
    state = runtime.initialize(context, runtime.compile(instrumented))
    assert snapshot(context, PlainState(state)) == wizen(wasm_of(wat), OPTS)
