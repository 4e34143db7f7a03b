"""Wizening components: each output must validate and answer like the original after init."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import component as wc

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.engine.wasmtime_api import installed_version
from hatch_wizer.errors import (
    ConfigError,
    InitError,
    InvalidModule,
    UnsupportedModule,
    WizerError,
)
from hatch_wizer.wasm.parse import is_component

DATA = Path(__file__).parent / "data" / "components"
OPTS = WizenOptions(cache=False)
Call = tuple[str, tuple[Any, ...]]


def component_of(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def _wasm_tools() -> str | None:
    beside = Path(sys.executable).parent / "wasm-tools"
    return str(beside) if beside.exists() else shutil.which("wasm-tools")


def validate(wasm: bytes, tmp_path: Path) -> None:
    tool = _wasm_tools()
    if tool is None:
        return
    path = tmp_path / "out.wasm"
    path.write_bytes(wasm)
    subprocess.run([tool, "validate", str(path)], check=True, capture_output=True)


def export_names(wasm: bytes) -> list[str]:
    engine = wasmtime.Engine()
    return list(wc.Component(engine, wasm).type.exports(engine))


def run(wasm: bytes, init: list[Call], calls: list[Call], *, wasi: bool = False) -> list[Any]:
    """Instantiate, make the `init` calls, then the `calls`; return the calls' results."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wc.Linker(engine)
    if wasi:
        store.set_wasi(wasmtime.WasiConfig())
        linker.add_wasip2()
    component = wc.Component(engine, wasm)
    instance = linker.instantiate(store, component)
    results = []
    for i, (name, args) in enumerate([*init, *calls]):
        func = instance.get_func(store, name)
        assert func is not None, name
        result = func(store, *args)
        func.post_return(store)
        if i >= len(init):
            results.append(result)
    return results


def assert_same_behaviour(
    text_or_wasm: str | bytes,
    calls: list[Call],
    tmp_path: Path,
    options: WizenOptions = OPTS,
    init: list[Call] | None = None,
    *,
    wasi: bool = False,
) -> bytes:
    wasm = component_of(text_or_wasm) if isinstance(text_or_wasm, str) else text_or_wasm
    out = wizen(wasm, options)
    assert is_component(out)
    validate(out, tmp_path)
    init = init if init is not None else [(options.init_func, ())]
    assert run(out, [], calls, wasi=wasi) == run(wasm, init, calls, wasi=wasi)
    return out


GLOBALS = """(component
  (core module $m
    (global $i (mut i32) (i32.const 0))
    (global $l (mut i64) (i64.const 0))
    (global $f (mut f32) (f32.const 0))
    (global $d (mut f64) (f64.const 0))
    (global $v (mut v128) (v128.const i64x2 0 0))
    (global $r (mut funcref) (ref.null func))
    (func (export "init")
      (global.set $i (i32.const -5))
      (global.set $l (i64.const 0x8000000000000001))
      (global.set $f (f32.reinterpret_i32 (i32.const 0x7fa00001)))
      (global.set $d (f64.reinterpret_i64 (i64.const 0x7ff0000000000001)))
      (global.set $v (v128.const i32x4 1 2 3 0xffffffff)))
    (func (export "i") (result i32) (global.get $i))
    (func (export "l") (result i64) (global.get $l))
    (func (export "f") (result i32) (i32.reinterpret_f32 (global.get $f)))
    (func (export "d") (result i64) (i64.reinterpret_f64 (global.get $d)))
    (func (export "v") (result i32) (i32x4.extract_lane 3 (global.get $v)))
    (func (export "v0") (result i32) (i32x4.extract_lane 0 (global.get $v)))
    (func (export "r") (result i32) (ref.is_null (global.get $r))))
  (core instance $x (instantiate $m))
  (func (export "wizer-initialize") (canon lift (core func $x "init")))
  (func (export "i") (result s32) (canon lift (core func $x "i")))
  (func (export "l") (result u64) (canon lift (core func $x "l")))
  (func (export "f") (result u32) (canon lift (core func $x "f")))
  (func (export "d") (result u64) (canon lift (core func $x "d")))
  (func (export "v") (result u32) (canon lift (core func $x "v")))
  (func (export "v0") (result u32) (canon lift (core func $x "v0")))
  (func (export "r") (result u32) (canon lift (core func $x "r"))))"""


def test_globals_of_every_type_keep_exact_bits(tmp_path: Path) -> None:
    calls: list[Call] = [(n, ()) for n in ("i", "l", "f", "d", "v", "v0", "r")]
    out = assert_same_behaviour(GLOBALS, calls, tmp_path)
    assert run(out, [], calls[2:4]) == [0x7FA00001, 0x7FF0000000000001]  # NaN payloads
    assert "wizer-initialize" not in export_names(out)


def test_non_null_reference_global_is_a_clear_error() -> None:
    wat = GLOBALS.replace(
        "(global.set $v (v128.const i32x4 1 2 3 0xffffffff)))",
        "(global.set $r (ref.func $g)))\n(func $g) (elem declare func $g)",
    )
    with pytest.raises(UnsupportedModule, match="non-null funcref"):
        wizen(component_of(wat), OPTS)


MEMORY = """(component
  (core module $m
    (memory (export "memory") 1 3)
    (data (i32.const 8) "hello")
    (func (export "init")
      (drop (memory.grow (i32.const 2)))
      (i32.store offset=1337 (i32.const 0) (i32.const 42))
      (i32.store8 (i32.const 8) (i32.const 0))                 ;; zero an original byte
      (i32.store8 offset=196607 (i32.const 0) (i32.const 9)))  ;; the last byte of the memory
    (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
    (func (export "size") (result i32) (memory.size))
    (func (export "grow") (result i32) (memory.grow (i32.const 1))))
  (core instance $x (instantiate $m))
  (func (export "wizer-initialize") (canon lift (core func $x "init")))
  (func (export "load") (param "at" u32) (result u8) (canon lift (core func $x "load")))
  (func (export "size") (result u32) (canon lift (core func $x "size")))
  (func (export "grow") (result s32) (canon lift (core func $x "grow"))))"""


def test_memory_contents_and_size_even_at_its_maximum(tmp_path: Path) -> None:
    # The memory ends init at its maximum (3 pages): reading it must not need to grow it.
    calls: list[Call] = [("load", (a,)) for a in (8, 9, 1337, 196607, 5000)]
    calls += [("size", ()), ("grow", ())]
    assert_same_behaviour(MEMORY, calls, tmp_path)


def test_large_sparse_memory_round_trips(tmp_path: Path) -> None:
    wat = """(component
      (core module $m
        (memory (export "memory") 700)
        (func (export "init")
          (local $i i32)
          (loop $l   ;; 5 MiB of dense bytes, then sparse ones
            (i32.store8 (local.get $i) (i32.add (i32.const 1) (i32.rem_u (local.get $i) (i32.const 251))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 5242880))))
          (i32.store (i32.const 30000000) (i32.const 7))
          (i32.store (i32.const 45871100) (i32.const 8)))
        (func (export "sum") (param i32 i32) (result i32)
          (local $s i32)
          (loop $l
            (local.set $s (i32.add (local.get $s) (i32.load8_u (local.get 0))))
            (local.set 0 (i32.add (local.get 0) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get 0) (local.get 1))))
          (local.get $s)))
      (core instance $x (instantiate $m))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "sum") (param "from" u32) (param "to" u32) (result u32)
        (canon lift (core func $x "sum"))))"""
    calls: list[Call] = [("sum", (0, 5242880)), ("sum", (29999990, 30000010))]
    calls.append(("sum", (45871090, 45875200)))
    assert_same_behaviour(wat, calls, tmp_path)


GIB_PAGES = 16384
DENSE_PAGES = 2048  # 128 MiB


@pytest.mark.parametrize(
    ("pages", "init", "reads", "peak_mib"),
    [
        # Only the pages written may cost memory: it was the whole GiB when the copy read out
        # through the accessors was a bytearray, or a shared mapping that the zero scan reads.
        (
            GIB_PAGES,
            f"(i32.store (i32.const 30000000) (i32.const 7)) "
            f"(i32.store (i32.const {GIB_PAGES * 65536 - 4}) (i32.const 8))",
            {30000000: 7, GIB_PAGES * 65536 - 4: 8, 1 << 29: 0},
            400,
        ),
        # The live instance, its copy and the snapshot's data, then the output: 3-4 times the
        # memory at the peak (6 times, ~800 MiB here, while each stage kept what it read).
        (
            DENSE_PAGES,
            f"(memory.fill (i32.const 0) (i32.const 7) (i32.const {DENSE_PAGES * 65536}))",
            {0: 0x07070707, DENSE_PAGES * 65536 - 4: 0x07070707},
            128 * 4 + 100,
        ),
    ],
    ids=["sparse-1gib", "dense-128mib"],
)
def test_a_big_memory_is_held_a_few_times_at_most(
    pages: int, init: str, reads: dict[int, int], peak_mib: int, tmp_path: Path
) -> None:
    source = tmp_path / "in.wat"
    source.write_text(f"""(component
      (core module $m
        (memory (export "memory") {pages})
        (func (export "init") {init})
        (func (export "get") (param i32) (result i32) (i32.load (local.get 0))))
      (core instance $x (instantiate $m))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "get") (param "at" u32) (result u32) (canon lift (core func $x "get"))))""")
    out = tmp_path / "out.wasm"
    cli = [sys.executable, "-m", "hatch_wizer", "-q", "--no-cache", str(source), "-o", str(out)]
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stderr is not None
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    proc.stderr.close()
    assert usage.ru_maxrss / 1024 < peak_mib, f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB"
    calls: list[Call] = [("get", (at,)) for at in reads]
    assert run(out.read_bytes(), [], calls) == list(reads.values())


SHARED = """(component
  (core module $a
    (memory (export "memory") 1)
    (global (export "g") (mut i32) (i32.const 0))
    (func (export "init")
      (i32.store (i32.const 100) (i32.const 100))
      (global.set 0 (i32.add (global.get 0) (i32.const 7))))
    (func (export "run") (result i32)
      (i32.add (global.get 0)
        (i32.add (i32.add (i32.load (i32.const 100)) (i32.load (i32.const 200)))
                 (i32.add (i32.load (i32.const 300)) (memory.size))))))
  (core instance $ia (instantiate $a))
  (core module $b
    (import "a" "memory" (memory 1))
    (import "a" "g" (global $g (mut i32)))
    (global $own (mut i32) (i32.const 0))
    (data (i32.const 200) "\\c8")    ;; 200, applied when $b is instantiated
    (func $start
      (global.set $own (i32.const 1))
      (global.set $g (i32.add (global.get $g) (i32.const 100))))
    (start $start)
    (func (export "init")
      (i32.store (i32.const 300) (i32.const 201))
      (drop (memory.grow (i32.const 1)))
      (global.set $g (i32.add (global.get $g) (global.get $own))))
    (func (export "own") (result i32) (global.get $own)))
  (core instance $ib (instantiate $b (with "a" (instance $ia))))
  (core module $c
    (import "a" "memory" (memory 1))
    (func (export "poke") (param i32 i32) (i32.store (local.get 0) (local.get 1))))
  (core instance $ic (instantiate $c (with "a" (instance $ia))))
  (core module $unused (func (export "f")))
  (func $init (canon lift (core func $ib "init")))
  (func (export "wizer-initialize") (canon lift (core func $ia "init")))
  (func (export "run") (result s32) (canon lift (core func $ia "run")))
  (func (export "own") (result s32) (canon lift (core func $ib "own")))
  (func (export "init-b") (canon lift (core func $ib "init")))
  (func (export "poke") (param "at" u32) (param "v" u32) (canon lift (core func $ic "poke"))))"""


def test_modules_sharing_a_memory_and_a_global(tmp_path: Path) -> None:
    # $b's start ran once at instantiation (its data segment re-applied would clobber state);
    # its init grows the memory that $a defines; the output must not run either again.
    init: list[Call] = [("wizer-initialize", ()), ("init-b", ())]
    options = WizenOptions(cache=False, init_func="wizer-initialize")
    wasm = component_of(SHARED)
    out = wizen(wasm, options)
    staged = wizen(out, WizenOptions(cache=False, init_func="init-b"))
    validate(staged, tmp_path)
    calls: list[Call] = [("run", ()), ("own", ()), ("poke", (200, 5)), ("run", ())]
    assert run(staged, [], calls) == run(wasm, init, calls)
    assert run(staged, [], [("run", ())]) == [7 + 100 + 1 + 100 + 200 + 201 + 2]


def test_export_removal_keeps_exports_before_and_after(tmp_path: Path) -> None:
    wat = """(component
      (core module $m
        (global $g (mut i32) (i32.const 0))
        (func (export "init") (global.set $g (i32.const 5)))
        (func (export "get") (result i32) (global.get $g)))
      (core instance $x (instantiate $m))
      (func $get (result s32) (canon lift (core func $x "get")))
      (export "before" (func $get))
      (func $init (canon lift (core func $x "init")))
      (export $e "wizer-initialize" (func $init))
      (export $after "after" (func $get))
      (instance $bundle (export "get" (func $after)) (export "init" (func $e)))
      (export "bundle" (instance $bundle))
      (export "last" (func $after)))"""
    out = assert_same_behaviour(wat, [("before", ()), ("after", ()), ("last", ())], tmp_path)
    assert export_names(out) == ["before", "after", "bundle", "last"]
    # The instance that exported the init function keeps it, now through the lifted function.
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    instance = wc.Linker(engine).instantiate(store, wc.Component(engine, out))
    bundle = instance.get_export_index(store, "bundle")
    get = instance.get_func(store, instance.get_export_index(store, "get", instance=bundle))
    assert get is not None and get(store) == 5


def test_keep_init_func_and_wave_arguments_for_staged_init(tmp_path: Path) -> None:
    wat = """(component
      (core module $m
        (global $g (mut i64) (i64.const 0))
        (func (export "add") (param i64 i32) (result i64)
          (global.set $g (i64.add (global.get $g) (i64.mul (local.get 0) (i64.extend_i32_u (local.get 1)))))
          (global.get $g))
        (func (export "get") (result i64) (global.get $g)))
      (core instance $x (instantiate $m))
      (func (export "add") (param "n" s64) (param "times" bool) (result s64)
        (canon lift (core func $x "add")))
      (func (export "get") (result s64) (canon lift (core func $x "get"))))"""
    lines: list[str] = []
    first = wizen(
        component_of(wat),
        WizenOptions(cache=False, init_func="add(40, true)", keep_init_func=True),
        report=lines.append,
    )
    assert "init returned 40" in lines
    second = wizen(first, WizenOptions(cache=False, init_func=" add( 2 , true ) "))
    validate(second, tmp_path)
    assert export_names(second) == ["get"]
    assert run(second, [], [("get", ())]) == [42]


def test_wave_argument_errors_name_the_problem() -> None:
    wat = """(component
      (core module $m (func (export "f") (param i32)))
      (core instance $x (instantiate $m))
      (func (export "f") (param "s" u32) (canon lift (core func $x "f"))))"""
    with pytest.raises(ConfigError, match="takes parameters"):
        wizen(component_of(wat), WizenOptions(cache=False, init_func="f"))
    with pytest.raises(ConfigError, match="expected an integer"):
        wizen(component_of(wat), WizenOptions(cache=False, init_func='f("x")'))


def test_interface_function_as_init_needs_keep(tmp_path: Path) -> None:
    wat = """(component
      (core module $m
        (global $g (mut i32) (i32.const 0))
        (func (export "set") (param i32) (global.set $g (local.get 0)))
        (func (export "get") (result i32) (global.get $g)))
      (core instance $x (instantiate $m))
      (func $set (param "v" u32) (canon lift (core func $x "set")))
      (instance $i (export "set" (func $set)))
      (export "local:app/init@0.1.0" (instance $i))
      (func (export "get") (result u32) (canon lift (core func $x "get"))))"""
    wasm = component_of(wat)
    with pytest.raises(UnsupportedModule, match="--keep-init-func"):
        wizen(wasm, WizenOptions(cache=False, init_func="local:app/init.set@0.1.0(9)"))
    options = WizenOptions(
        cache=False, init_func="local:app/init.set@0.1.0(9)", keep_init_func=True
    )
    out = wizen(wasm, options)
    validate(out, tmp_path)
    assert run(out, [], [("get", ())]) == [9]


def test_unknown_import_is_stubbed_unless_init_calls_it(tmp_path: Path) -> None:
    wat = """(component
      (import "host-log" (func $log (param "v" u32)))
      (core func $lowered (canon lower (func $log)))
      (core module $m
        (import "host" "log" (func $log (param i32)))
        (global $g (mut i32) (i32.const 0))
        (func (export "init") (global.set $g (i32.const 3)))
        (func (export "loud") (call $log (i32.const 1)))
        (func (export "get") (result i32) (global.get $g)))
      (core instance $host (export "log" (func $lowered)))
      (core instance $x (instantiate $m (with "host" (instance $host))))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "loud") (canon lift (core func $x "loud")))
      (func (export "get") (result u32) (canon lift (core func $x "get"))))"""
    wasm = component_of(wat)
    out = wizen(wasm, OPTS)
    validate(out, tmp_path)
    assert "host-log" in wc.Component(wasmtime.Engine(), out).type.imports(wasmtime.Engine())
    with pytest.raises(InitError, match="host-log"):
        wizen(wasm, WizenOptions(cache=False, init_func="loud"))
    with pytest.raises(InitError, match="host-log"):
        wizen(wasm, WizenOptions(cache=False, init_func="loud", allow_wasi=True))


def test_wasi_preview2_during_init(tmp_path: Path) -> None:
    wat = """(component
      (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
        (export "now" (func (result u64)))))
      (alias export $clock "now" (func $now))
      (core func $now-lowered (canon lower (func $now)))
      (core module $m
        (import "clock" "now" (func $now (result i64)))
        (global $t (mut i64) (i64.const 0))
        (func (export "init") (global.set $t (call $now)))
        (func (export "get") (result i64) (global.get $t)))
      (core instance $clock-core (export "now" (func $now-lowered)))
      (core instance $x (instantiate $m (with "clock" (instance $clock-core))))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "get") (result u64) (canon lift (core func $x "get"))))"""
    wasm = component_of(wat)
    with pytest.raises(InitError, match="monotonic-clock"):
        wizen(wasm, OPTS)
    out = wizen(wasm, WizenOptions(cache=False, allow_wasi=True))
    validate(out, tmp_path)
    frozen = run(out, [], [("get", ()), ("get", ())], wasi=True)
    assert frozen[0] == frozen[1] > 0
    assert run(out, [], [("get", ())], wasi=True) == frozen[:1]  # the snapshot, not a new clock


# Init reads wasi:random (u64, bytes), wasi:random/insecure-seed and the wall clock, and keeps
# what it got: the u64 in a global, the rest in memory (the clock's seconds at 16, the seed at
# 32, the bytes' pointer at 64).
CLOCK_AND_RANDOM = (DATA / "wasi_p2_clock_random.wat").read_text()


def _clock_and_random(out: bytes) -> list[Any]:
    calls: list[Call] = [("g", ()), ("load", (16,)), ("load", (32,)), ("load", (64,))]
    g, seconds, seed, where = run(out, [], calls, wasi=True)
    [random_bytes] = run(out, [], [("load", (where & 0xFFFFFFFF,))], wasi=True)
    return [g, seconds, seed, random_bytes]


def test_reproducible_init_of_a_component_sees_fixed_random_and_clocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hatch_wizer.engine.wasi import WasiHost

    # Preview 2's interfaces are shadowed as preview 1's calls are: a seeded stream, a wall
    # clock at SOURCE_DATE_EPOCH, so two builds give the same bytes (componentize-py's
    # runtime seeds its hash maps from wasi:random during init).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    options = WizenOptions(allow_wasi=True, reproducible=True, cache=False)
    wasm = component_of(CLOCK_AND_RANDOM)
    lines: list[str] = []
    out = wizen(wasm, options, report=lines.append)
    assert wizen(wasm, options) == out
    assert not [line for line in lines if "warning" in line]
    stream = WasiHost(True).random(32)
    g, seconds, seed, random_bytes = _clock_and_random(out)
    assert g == int.from_bytes(stream[:8], "little")
    assert random_bytes == int.from_bytes(stream[8:16], "little")
    assert seed == int.from_bytes(stream[16:24], "little")
    assert seconds == 1700000000


def test_a_component_init_that_reads_the_build_machine_is_reported() -> None:
    options = WizenOptions(allow_wasi=True, cache=False)
    lines: list[str] = []
    first = _clock_and_random(wizen(component_of(CLOCK_AND_RANDOM), options, report=lines.append))
    second = _clock_and_random(wizen(component_of(CLOCK_AND_RANDOM), options))
    assert first[0] != second[0]  # real random bytes
    assert abs(first[1] - time.time()) < 3600  # the real clock
    [warning] = [line for line in lines if "warning" in line]
    assert "read the clock once and asked for random bytes 3 times" in warning


def test_check_determinism_runs_a_components_init_twice() -> None:
    wasm = component_of(CLOCK_AND_RANDOM)
    with pytest.raises(InitError, match=r"not deterministic: two runs differ in .*global 0 of "):
        wizen(wasm, WizenOptions(allow_wasi=True, cache=False, check_determinism=True))
    options = WizenOptions(allow_wasi=True, cache=False, reproducible=True)
    lines: list[str] = []
    out = wizen(wasm, options._replace(check_determinism=True), report=lines.append)
    assert any(line.startswith("determinism check:") for line in lines)
    assert out == wizen(wasm, options)


def test_winch_asked_for_a_component_is_a_clear_error() -> None:
    wasm = component_of(CLOCK_AND_RANDOM)
    with pytest.raises(ConfigError, match=r"Winch cannot compile components: set --compiler to auto or cranelift"):
        wizen(wasm, WizenOptions(allow_wasi=True, cache=False, compiler="winch"))
    for compiler in ("auto", "cranelift"):
        assert wizen(wasm, WizenOptions(allow_wasi=True, cache=False, compiler=compiler))


@pytest.mark.parametrize(
    ("wat", "message"),
    [
        (
            """(component
              (core module $m
                (global $g (mut i32) (i32.const 0))
                (func (export "f") (global.set $g (i32.const 1))))
              (core instance $a (instantiate $m))
              (core instance $b (instantiate $m))
              (func (export "wizer-initialize") (canon lift (core func $a "f"))))""",
            r"core module 0 is instantiated more than once \(core instance 0; core instance "
            r"1\) and the instances end init in different states \(globals\)",
        ),
        (
            """(component
              (component $inner
                (core module $m (memory 1) (func (export "f")))
                (core instance $a (instantiate $m)))
              (component $mid
                (alias outer 1 $inner (component $c))
                (instance (instantiate $c)))
              (instance (instantiate $mid))
              (core module $m (func (export "f")))
              (core instance $a (instantiate $m))
              (func (export "wizer-initialize") (canon lift (core func $a "f"))))""",
            "component instance 0 instantiates component 0, an outer alias",
        ),
        (
            """(component
              (import "c" (component $c))
              (instance (instantiate $c))
              (core module $m (func (export "f")))
              (core instance $a (instantiate $m))
              (func (export "wizer-initialize") (canon lift (core func $a "f"))))""",
            "instantiates component 0, which is an import",
        ),
        (
            """(component
              (core module $m (func (export "f")))
              (component $inner
                (alias outer 1 $m (core module $om))
                (core instance $a (instantiate $om)))
              (instance (instantiate $inner))
              (core instance $a (instantiate $m))
              (func (export "wizer-initialize") (canon lift (core func $a "f"))))""",
            "core module 0, which is an outer alias",
        ),
        (
            """(component
              (core module $m (func (export "f")))
              (core instance $a (instantiate $m))
              (func (export "other") (canon lift (core func $a "f"))))""",
            "no `wizer-initialize` export",
        ),
        (
            """(component
              (import "m" (core module $m (export "f" (func))))
              (core instance $a (instantiate $m))
              (func (export "wizer-initialize") (canon lift (core func $a "f"))))""",
            "core module 0, which is an import",
        ),
    ],
)
def test_unsupported_structures_have_clear_errors(wat: str, message: str) -> None:
    with pytest.raises(WizerError, match=message):
        wizen(component_of(wat), OPTS)


TABLES = """(component
  (core module $m
    (table $t (export "t") 3 10 funcref)
    (table $own 2 funcref)
    (elem (table $own) (i32.const 1) func $f)
    (func $f (result i32) (i32.const 7))
    (elem declare func $f)
    (global $g (mut i32) (i32.const 0))
    (func (export "init") (global.set $g (i32.const 1)))
    (func (export "set") (table.set $t (i32.const 0) (ref.func $f)))
    (func (export "clear") (table.set $own (i32.const 1) (ref.null func)))
    (func (export "grow") (drop (table.grow $t (ref.null func) (i32.const 1))))
    (func (export "call") (param i32) (result i32) (call_indirect $t (result i32) (local.get 0))))
  (core instance $x (instantiate $m))
  ;; A second module fills the first one's exported table when it is instantiated, as the
  ;; shim and fixup modules of wit-component do.
  (core module $fixup
    (import "m" "t" (table 3 funcref))
    (func $g (result i32) (i32.const 9))
    (elem (i32.const 2) func $g))
  (core instance (instantiate $fixup (with "m" (instance $x))))
  (func (export "wizer-initialize") (canon lift (core func $x "init")))
  (func (export "set") (canon lift (core func $x "set")))
  (func (export "clear") (canon lift (core func $x "clear")))
  (func (export "grow") (canon lift (core func $x "grow")))
  (func (export "call") (param "slot" u32) (result s32) (canon lift (core func $x "call"))))"""


def test_tables_filled_at_instantiation_and_unchanged_by_init_are_kept(tmp_path: Path) -> None:
    # The module contains table writes; init does not run them, so the output is exact.
    assert_same_behaviour(TABLES, [("call", (2,))], tmp_path)


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ("set", r"function 2 of core instance 0 ran `table\.set` on table 0 \(offset 0x"),
        ("clear", r"function 3 of core instance 0 ran `table\.set` on table 1"),
        ("grow", "table 0 of core instance 0 grew from 3 to 4 entries during init"),
    ],
)
def test_table_changes_during_init_are_clear_errors(init: str, message: str) -> None:
    with pytest.raises(UnsupportedModule, match=message):
        wizen(component_of(TABLES), WizenOptions(cache=False, init_func=init))


def test_table_write_of_the_same_size_and_kind_is_found(tmp_path: Path) -> None:
    # One function replaced by another in a slot: nothing about the table shows it, the
    # recorded write does, also in a nested component and through table.copy.
    wat = """(component
      (component $inner
        (core module $m
          (table $t 2 funcref)
          (elem (i32.const 0) func $a $b)
          (func $a (result i32) (i32.const 1))
          (func $b (result i32) (i32.const 2))
          (func (export "swap") (table.copy (i32.const 0) (i32.const 1) (i32.const 1)))
          (func (export "call") (result i32) (call_indirect (result i32) (i32.const 0))))
        (core instance $x (instantiate $m))
        (func (export "swap") (canon lift (core func $x "swap")))
        (func (export "call") (result u32) (canon lift (core func $x "call"))))
      (instance $i (instantiate $inner))
      (export "swap" (func $i "swap"))
      (export "call" (func $i "call")))"""
    message = r"function 2 of core instance 0 in component instance 0 ran `table\.copy` on table 0"
    with pytest.raises(UnsupportedModule, match=message):
        wizen(component_of(wat), WizenOptions(cache=False, init_func="swap"))
    # Init that does not write leaves the output exact (and the code it ran unchanged).
    out = wizen(component_of(wat), WizenOptions(cache=False, init_func="call", keep_init_func=True))
    validate(out, tmp_path)
    assert run(out, [], [("swap", ()), ("call", ())]) == [None, 2]


def test_write_sites_are_found_by_decoding_not_by_bytes() -> None:
    from hatch_wizer.component.barrier import write_sites
    from hatch_wizer.wasm.parse import parse_module

    wasm = bytes(
        wasmtime.wat2wasm(
            """(module
              (table $a 1 funcref) (table $b 1 funcref)
              (elem $e func $f)
              (func $f (drop (i32.const 38)) (drop (i32.const 0x11fc)))  ;; 0x26 and fc 11 bytes
              (func $w
                (table.set $b (i32.const 0) (ref.null func))
                (table.init $b $e (i32.const 0) (i32.const 0) (i32.const 1))
                (table.copy $a $b (i32.const 0) (i32.const 0) (i32.const 1))
                (table.fill $b (i32.const 0) (ref.null func) (i32.const 1))))"""
        )
    )
    sites = write_sites(parse_module(wasm))
    assert [(s.func, s.instruction, s.table) for s in sites] == [
        (1, "table.set", 1),
        (1, "table.init", 1),
        (1, "table.copy", 0),
        (1, "table.fill", 1),
    ]


def test_table_write_by_a_start_function_is_found() -> None:
    # Start runs at instantiation and is dropped from the output: its write would be lost.
    wat = TABLES.replace("(elem declare func $f)", "(elem declare func $f) (start $s)")
    wat = wat.replace(
        "(global $g", "(func $s (table.set $own (i32.const 0) (ref.func $f)))\n(global $g"
    )
    with pytest.raises(
        UnsupportedModule, match=r"function 1 \(`s`\) .* ran `table\.set` on table 1"
    ):
        wizen(component_of(wat), OPTS)


def test_nested_components_without_modules_are_kept(tmp_path: Path) -> None:
    wat = """(component
      (component $types
        (type $t (record (field "a" u32)))
        (export "t" (type $t)))
      (instance $ti (instantiate $types))
      (core module $m
        (global $g (mut i32) (i32.const 0))
        (func (export "init") (global.set $g (i32.const 11)))
        (func (export "get") (result i32) (global.get $g)))
      (core instance $x (instantiate $m))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "get") (result u32) (canon lift (core func $x "get"))))"""
    assert_same_behaviour(wat, [("get", ())], tmp_path)


INNER = """(component $inner
    (import "base" (func $base (result u32)))
    (core func $base-lowered (canon lower (func $base)))
    (core module $m
      (import "host" "base" (func $base (result i32)))
      (memory (export "memory") 1 4)
      (global $g (mut i32) (i32.const 0))
      (global $h (mut i64) (i64.const 0))
      (data (i32.const 16) "kept")
      (func (export "init") (param i32)
        (global.set $g (i32.add (global.get $g) (local.get 0)))
        (global.set $h (i64.const 0x123456789))
        (i32.store (i32.const 64) (i32.const 0xdeadbeef))
        (drop (memory.grow (i32.const 1))))
      (func (export "get") (result i32) (i32.add (global.get $g) (i32.load (i32.const 64))))
      (func (export "pages") (result i32) (memory.size))
      (func (export "h") (result i64) (global.get $h))
      (func (export "word") (result i32) (i32.load (i32.const 16)))
      (func (export "base") (result i32) (call $base)))
    (core instance $hi (export "base" (func $base-lowered)))
    (core instance $x (instantiate $m (with "host" (instance $hi))))
    (func (export "init") (param "v" u32) (canon lift (core func $x "init")))
    (func (export "get") (result u32) (canon lift (core func $x "get")))
    (func (export "pages") (result u32) (canon lift (core func $x "pages")))
    (func (export "h") (result u64) (canon lift (core func $x "h")))
    (func (export "word") (result u32) (canon lift (core func $x "word")))
    (func (export "base") (result u32) (canon lift (core func $x "base"))))"""

OUTER_MODULE = """(core module $outer
    (global $n (mut i32) (i32.const 0))
    (func (export "base") (result i32) (global.get $n))
    (func (export "bump") (global.set $n (i32.add (global.get $n) (i32.const 100)))))
  (core instance $o (instantiate $outer))
  (func $base (result u32) (canon lift (core func $o "base")))"""

NESTED_CALLS: list[Call] = [(n, ()) for n in ("get", "pages", "h", "word", "base")]
# A core instance calling a function that its own component lifted from a nested one: wasmtime
# before 49 refuses the call ("cannot enter component instance"), for the original too, and
# hatch-wizer's init fails with that one line.
reentrant = pytest.mark.skipif(
    int(installed_version().split(".")[0]) < 49,
    reason="wasmtime-py before 49 cannot run components that re-enter their own instance",
)


@reentrant
def test_nested_component_state_is_written_into_its_module(tmp_path: Path) -> None:
    wat = f"""(component
      {INNER}
      {OUTER_MODULE}
      (instance $a (instantiate $inner (with "base" (func $base))))
      (alias export $a "init" (func $init))
      (core func $init-lowered (canon lower (func $init)))
      (core module $driver
        (import "a" "init" (func $init (param i32)))
        (import "o" "bump" (func $bump))
        (func (export "run") (call $bump) (call $init (i32.const 5))))
      (core instance $ai (export "init" (func $init-lowered)))
      (core instance $d (instantiate $driver (with "a" (instance $ai)) (with "o" (instance $o))))
      (func (export "wizer-initialize") (canon lift (core func $d "run")))
      (export "get" (func $a "get"))
      (export "pages" (func $a "pages"))
      (export "h" (func $a "h"))
      (export "word" (func $a "word"))
      (export "base" (func $a "base")))"""
    out = assert_same_behaviour(wat, NESTED_CALLS, tmp_path)
    assert run(out, [], NESTED_CALLS) == [5 + 0xDEADBEEF, 2, 0x123456789, 0x7470656B, 100]


def test_deeply_nested_state_and_init_inside_the_nested_component(tmp_path: Path) -> None:
    # Two levels down, called through an instance export; the middle component has state too.
    wat = f"""(component
      (component $mid
        (import "base" (func $base (result u32)))
        {INNER}
        (core module $own
          (global $k (mut i32) (i32.const 1))
          (func (export "init") (global.set $k (i32.const 2)))
          (func (export "k") (result i32) (global.get $k)))
        (core instance $own (instantiate $own))
        (instance $a (instantiate $inner (with "base" (func $base))))
        (func $own-init (canon lift (core func $own "init")))
        (instance $api (export "init" (func $a "init")) (export "own-init" (func $own-init)))
        (export "api" (instance $api))
        (export "get" (func $a "get"))
        (func $k (result u32) (canon lift (core func $own "k")))
        (export "k" (func $k)))
      {OUTER_MODULE}
      (instance $m (instantiate $mid (with "base" (func $base))))
      (alias export $m "api" (instance $api))
      (export "api" (instance $api))
      (export "get" (func $m "get"))
      (export "k" (func $m "k")))"""
    wasm = component_of(wat)
    options = WizenOptions(cache=False, init_func="api.init(42)", keep_init_func=True)
    out = wizen(wasm, options)
    out = wizen(out, WizenOptions(cache=False, init_func="api.own-init", keep_init_func=True))
    validate(out, tmp_path)
    assert run(out, [], [("get", ()), ("k", ())]) == [42 + 0xDEADBEEF, 2]


def _twice(init_both: bool) -> str:
    second = "(call $init-b (i32.const 5))" if init_both else ""
    return f"""(component
      {INNER}
      {OUTER_MODULE}
      (instance $a (instantiate $inner (with "base" (func $base))))
      (instance $b (instantiate $inner (with "base" (func $base))))
      (core func $init-a (canon lower (func $a "init")))
      (core func $init-b (canon lower (func $b "init")))
      (core module $driver
        (import "x" "a" (func $init-a (param i32)))
        (import "x" "b" (func $init-b (param i32)))
        (func (export "run") (call $init-a (i32.const 5)) {second}))
      (core instance $x (export "a" (func $init-a)) (export "b" (func $init-b)))
      (core instance $d (instantiate $driver (with "x" (instance $x))))
      (func (export "wizer-initialize") (canon lift (core func $d "run")))
      (export "get-a" (func $a "get"))
      (export "get-b" (func $b "get"))
      (export "pages-b" (func $b "pages")))"""


@reentrant
def test_nested_component_instantiated_twice_into_the_same_state(tmp_path: Path) -> None:
    calls: list[Call] = [("get-a", ()), ("get-b", ()), ("pages-b", ())]
    out = assert_same_behaviour(_twice(init_both=True), calls, tmp_path)
    assert run(out, [], calls) == [5 + 0xDEADBEEF] * 2 + [2]


@reentrant
def test_nested_component_instantiated_twice_into_different_states() -> None:
    message = (
        r"core module 0 is instantiated more than once \(core instance 1 in component "
        r"instance 0; core instance 1 in component instance 1\) and the instances end init "
        r"in different states \(globals, memory\)"
    )
    with pytest.raises(UnsupportedModule, match=message):
        wizen(component_of(_twice(init_both=False)), OPTS)


def test_start_function_state_is_kept_and_start_does_not_run_again(tmp_path: Path) -> None:
    wat = """(component
      (core module $m
        (global $g (mut i32) (i32.const 0))
        (func $start (global.set $g (i32.add (global.get $g) (i32.const 1))))
        (start $start)
        (func (export "init") (global.set $g (i32.mul (global.get $g) (i32.const 10))))
        (func (export "get") (result i32) (global.get $g)))
      (core instance $x (instantiate $m))
      (func (export "wizer-initialize") (canon lift (core func $x "init")))
      (func (export "get") (result u32) (canon lift (core func $x "get"))))"""
    out = assert_same_behaviour(wat, [("get", ())], tmp_path)
    assert run(out, [], [("get", ())]) == [10]


def test_check_stage_validates_the_whole_component(monkeypatch: pytest.MonkeyPatch) -> None:
    # A module that is valid on its own but lost an export the component aliases (the Rust
    # Wizer's wt#13168) must fail the check stage, not reach the output.
    from hatch_wizer.component import rewrite as component_rewrite
    from hatch_wizer.wasm.assemble import assemble
    from hatch_wizer.wasm.parse import SectionId, parse_module

    real = component_rewrite.rewrite

    def without_exports(context: Any, snap: Any) -> bytes:
        return assemble(parse_module(real(context, snap)), {SectionId.EXPORT: None})

    monkeypatch.setattr(component_rewrite, "rewrite", without_exports)
    with pytest.raises(InvalidModule, match=r"produced an invalid component \(a bug.*export"):
        wizen(component_of(GLOBALS), OPTS)


def test_stand_ins_keep_every_module_type(tmp_path: Path) -> None:
    from hatch_wizer.component.check import stand_in_component

    for wasm in (component_of(SHARED), component_of(TABLES), (DATA / "lookup.wasm").read_bytes()):
        stand_in = stand_in_component(wasm)
        assert len(stand_in) < len(wasm)
        validate(stand_in, tmp_path)


def test_real_toolchain_fixture(tmp_path: Path) -> None:
    """clang + wasm-ld + `wasm-tools component new` (see data/components/build.sh)."""
    wasm = (DATA / "lookup.wasm").read_bytes()
    calls: list[Call] = [("is-prime", (1000003,)), ("is-prime", (1000001,))]
    calls += [("count-below", (1 << 20,)), ("count-below", (12345,)), ("inits", ())]
    out = assert_same_behaviour(wasm, calls, tmp_path)
    assert run(out, [], [("count-below", (1 << 20,)), ("inits", ())]) == [82025, 1]
    assert export_names(out) == ["is-prime", "count-below", "inits"]


def _nesting(inner: bytes, instances: int, exports: list[str]) -> bytes:
    """A component that holds `inner` as a nested component, instantiates it `instances`
    times, and exports the first instance's `exports` under their own names."""
    from hatch_wizer.wasm.binary import name, section, uleb, vector

    instantiate = [b"\x00\x00\x00"] * instances  # component 0, no arguments
    aliases = [b"\x01\x00\x00" + name(n) for n in exports]  # func, export of instance 0
    out = [inner[:8], section(4, inner), section(5, vector(instantiate))]
    out.append(section(6, vector(aliases)))
    out.append(
        section(
            11,
            vector(
                [b"\x00" + name(n) + b"\x01" + uleb(i) + b"\x00" for i, n in enumerate(exports)]
            ),
        )
    )
    return b"".join(out)


def test_real_toolchain_component_nested(tmp_path: Path) -> None:
    exports = ["wizer-initialize", "is-prime", "count-below", "inits"]
    wasm = _nesting((DATA / "lookup.wasm").read_bytes(), 1, exports)
    calls: list[Call] = [("count-below", (1 << 20,)), ("is-prime", (1000003,)), ("inits", ())]
    out = assert_same_behaviour(wasm, calls, tmp_path)
    assert run(out, [], calls) == [82025, True, 1]
    assert export_names(out) == ["is-prime", "count-below", "inits"]  # init dropped
    with pytest.raises(UnsupportedModule, match="core module 0 is instantiated more than once"):
        wizen(_nesting((DATA / "lookup.wasm").read_bytes(), 2, exports), OPTS)


def test_cli_takes_a_component_and_a_wave_call(tmp_path: Path) -> None:
    from hatch_wizer.build.cli import main

    source = tmp_path / "in.wat"
    source.write_text(
        """(component
          (core module $m
            (global $g (mut i32) (i32.const 0))
            (func (export "set") (param i32) (global.set $g (local.get 0)))
            (func (export "get") (result i32) (global.get $g)))
          (core instance $x (instantiate $m))
          (func (export "set") (param "v" u32) (canon lift (core func $x "set")))
          (func (export "get") (result u32) (canon lift (core func $x "get"))))"""
    )
    out = tmp_path / "out.wasm"
    code = main([str(source), "-o", str(out), "--init-func", "set(77)", "--no-cache", "-q"])
    assert code == 0
    assert run(out.read_bytes(), [], [("get", ())]) == [77]
    assert export_names(out.read_bytes()) == ["get"]
