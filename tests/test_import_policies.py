"""What init sees of imports nothing provides, under each policy, and the WASI stream options
`wasmtime wizer` adds (-S inherit-stdout=n ...), run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.errors import ConfigError, InitError
from hatch_wizer.options import Preload
from tests.harness import assert_same_behaviour, trap_unknown_imports, wasm_of

IMPORTS = """(module
  (import "foo" "bar" (func $bar (result i32)))
  (import "baz" "qux" (func $qux (param i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set $g (i32.const 7)))
  (func (export "calls-bar") (global.set $g (call $bar)))
  (func (export "get") (result i32) (global.get $g)))"""


def options(**kwargs: object) -> WizenOptions:
    return WizenOptions(cache=False, **kwargs)  # type: ignore[arg-type]


def test_trap_policy_runs_init_while_unprovided_imports_go_uncalled() -> None:
    # Wizer 11's policy, hatch-wizer's default: the imports stay in the output.
    out = assert_same_behaviour(IMPORTS, [("get", ())], options())
    assert [(i.module, i.name) for i in wasmtime.Module(wasmtime.Engine(), out).imports] == [
        ("foo", "bar"), ("baz", "qux"), ("wasi_snapshot_preview1", "proc_exit"),
    ]  # fmt: skip
    with pytest.raises(InitError, match="`calls-bar` used the import `foo::bar`"):
        wizen(wasm_of(IMPORTS), options(init_func="calls-bar"))


def test_reject_policy_names_every_unprovided_import_before_init() -> None:
    with pytest.raises(InitError) as error:
        wizen(wasm_of(IMPORTS), options(unknown_imports="reject"))
    message = str(error.value)
    assert "the module imports `foo::bar`, `baz::qux`, `wasi_snapshot_preview1::proc_exit`," in message
    assert "-W unknown-imports-trap" in message and "\n" not in message


def test_reject_policy_counts_what_wasi_and_preloads_provide(tmp_path: Path) -> None:
    stub = tmp_path / "foo.wat"
    stub.write_text('(module (func (export "bar") (result i32) (i32.const 5)))')
    strict = options(unknown_imports="reject", preloads=(Preload("foo", stub),))
    with pytest.raises(InitError, match=r"imports `baz::qux`, `wasi_snapshot_preview1::proc_exit`,"):
        wizen(wasm_of(IMPORTS), strict)
    with pytest.raises(InitError, match=r"imports `baz::qux`, which nothing provides"):
        wizen(wasm_of(IMPORTS), options(unknown_imports="reject", preloads=strict.preloads, allow_wasi=True))


def test_reject_policy_passes_a_module_whose_imports_are_all_provided() -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
      (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "wizer-initialize") (global.set $g (i32.const 3))))"""
    assert_same_behaviour(wat, [], options(unknown_imports="reject", allow_wasi=True))


def test_default_policy_gives_init_zeros_from_unprovided_functions() -> None:
    out = wizen(wasm_of(IMPORTS.replace("(global.set $g (i32.const 7))", "(global.set $g (i32.add (call $bar) (i32.const 9)))")), options(unknown_imports="default"))
    store = wasmtime.Store()
    linker = wasmtime.Linker(store.engine)
    module = wasmtime.Module(store.engine, out)
    trap_unknown_imports(linker, module)
    assert linker.instantiate(store, module).exports(store)["get"](store) == 9


COMPONENT = """(component
  (import "host-log" (func $log (param "v" u32)))
  (core func $lowered (canon lower (func $log)))
  (core module $m
    (import "host" "log" (func $log (param i32)))
    (global $g (mut i32) (i32.const 0))
    (func (export "init") (global.set $g (i32.const 3)))
    (func (export "get") (result i32) (global.get $g)))
  (core instance $host (export "log" (func $lowered)))
  (core instance $x (instantiate $m (with "host" (instance $host))))
  (func (export "wizer-initialize") (canon lift (core func $x "init")))
  (func (export "get") (result u32) (canon lift (core func $x "get"))))"""


def test_components_follow_the_policy_too() -> None:
    wasm = wasm_of(COMPONENT)
    assert wizen(wasm, options())  # trap: the import is never called
    for wasi in (False, True):
        with pytest.raises(InitError, match="the component imports `host-log`, which nothing"):
            wizen(wasm, options(unknown_imports="reject", allow_wasi=wasi))
    with pytest.raises(ConfigError, match="core modules only"):
        wizen(wasm, options(unknown_imports="default"))
    with pytest.raises(ConfigError, match=r"-S cwd"):
        wizen(wasm, options(wasi_cwd="/app"))


WRITES = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "to stdout\\n")
  (data (i32.const 32) "to stderr\\n")
  (func (export "wizer-initialize")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 10))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 32))
    (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


@pytest.mark.parametrize(
    ("streams", "seen"),
    [
        ([], b"to stdout\nto stderr\n"),
        (["-S", "inherit-stdout=n"], b"to stderr\n"),
        (["-Sinherit-stderr=n"], b"to stdout\n"),
        (["-S", "inherit-stdout=n,inherit-stderr=n"], b""),
        (["--inherit-stdio=false", "-S", "inherit-stdout"], b""),  # both must allow a stream
    ],
)
def test_each_standard_stream_is_given_to_init_on_its_own(
    streams: list[str], seen: bytes, tmp_path: Path
) -> None:
    module = tmp_path / "in.wat"
    module.write_text(WRITES)
    out = tmp_path / "out.wasm"
    argv = [str(module), "-o", str(out), "-q", "-S", "cli", "-C", "cache=n", *streams]
    result = subprocess.run(
        [sys.executable, "-m", "hatch_wizer", *argv], capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # With -o, guest stdout is this process's stdout; both end up in one order here.
    assert result.stdout + result.stderr == seen
    assert out.read_bytes()[:4] == b"\0asm"


def test_speed_options_leave_the_output_alone() -> None:
    wasm = wasm_of(IMPORTS)
    plain = wizen(wasm, options())
    for tuned in (
        options(opt_level="0", parallel_compilation=False, compiler="cranelift"),
        options(opt_level="s"),
    ):
        assert wizen(wasm, tuned) == plain
