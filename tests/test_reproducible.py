"""Reproducible mode: init sees fixed clocks and seeded randomness; nondeterminism is reported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.build.config import load_config
from hatch_wizer.engine.wasi import DEFAULT_SEED, Clock, WasiHost, source_date_epoch
from hatch_wizer.errors import ConfigError, InitError
from hatch_wizer.options import Preopen
from tests.harness import trap_unknown_imports, wasm_of

# Init reads the wall clock, the monotonic clock and 16 random bytes into memory and globals.
CLOCK_WAT = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $wall (export "wall") (mut i64) (i64.const 0))
  (global $mono (export "mono") (mut i64) (i64.const 0))
  (global $errs (export "errs") (mut i32) (i32.const 0))
  (func $check (param i32) (global.set $errs (i32.add (global.get $errs) (local.get 0))))
  (func (export "wizer-initialize")
    (call $check (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
    (global.set $wall (i64.load (i32.const 0)))
    (call $check (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (global.set $mono (i64.load (i32.const 0)))
    (call $check (call $res (i32.const 1) (i32.const 8)))
    (call $check (call $random (i32.const 1024) (i32.const 16))))
  (func (export "bad_clock") (result i32) (call $clock (i32.const 9) (i64.const 0) (i32.const 0)))
  (func (export "bad_pointer") (result i32) (call $random (i32.const 65530) (i32.const 16))))"""

NO_CALLS_WAT = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wizer-initialize") (i32.store (i32.const 0) (i32.const 7))))"""

REPRO = WizenOptions(allow_wasi=True, reproducible=True, inherit_stdio=False, cache=False)
REAL = WizenOptions(allow_wasi=True, inherit_stdio=False, cache=False)


def instantiate(wasm: bytes) -> tuple[wasmtime.Store, Any]:
    """A store and the exports of `wasm`, with its imports (unused after init) as traps."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    module = wasmtime.Module(engine, wasm)
    trap_unknown_imports(linker, module)
    return store, linker.instantiate(store, module).exports(store)


def state_of(wasm: bytes) -> tuple[int, int, int, bytes]:
    store, exports = instantiate(wasm)
    memory = exports["memory"].read(store, 0, 1040)
    return (
        exports["wall"].value(store),
        exports["mono"].value(store),
        exports["errs"].value(store),
        bytes(memory),
    )


def test_reproducible_init_gives_identical_bytes_and_fixed_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = wizen(wasm_of(CLOCK_WAT), REPRO)
    assert wizen(wasm_of(CLOCK_WAT), REPRO) == first
    wall, mono, errs, memory = state_of(first)
    assert errs == 0
    assert wall == 0  # no SOURCE_DATE_EPOCH: the Unix epoch
    assert mono == 0
    assert int.from_bytes(memory[8:16], "little") == 1000  # clock_res_get: 1 µs
    assert memory[1024:1040] == WasiHost(reproducible=True).random(16) != bytes(16)


def test_source_date_epoch_sets_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    wall, mono, _, _ = state_of(wizen(wasm_of(CLOCK_WAT), REPRO))
    assert wall == 1_700_000_000 * 10**9
    assert mono == 0  # the monotonic clock does not follow the wall clock


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", str(2**64)])
def test_bad_source_date_epoch_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH must be a whole number"):
        wizen(wasm_of(CLOCK_WAT), REPRO)


def test_without_reproducible_init_sees_real_time_and_is_warned_about() -> None:
    lines: list[str] = []
    wall, _, errs, _ = state_of(wizen(wasm_of(CLOCK_WAT), REAL, report=lines.append))
    assert errs == 0
    assert abs(wall / 1e9 - time.time()) < 600
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: init read the clock 2 times and asked for random bytes once (WASI), so the "
        "snapshot depends on when and where it was built; --reproducible fixes the clock and seed"
    ]


def test_no_warning_when_init_makes_no_such_call_or_is_reproducible() -> None:
    lines: list[str] = []
    wizen(wasm_of(NO_CALLS_WAT), REAL, report=lines.append)
    wizen(wasm_of(CLOCK_WAT), REPRO, report=lines.append)
    assert not [line for line in lines if "warning" in line]


def test_bad_clock_id_and_bad_pointer_are_wasi_errors_not_crashes() -> None:
    host = WasiHost(reproducible=True)
    assert host.clock_time(9) is None and host.clock_resolution(9) is None
    # Through the real shims: errno 28 (inval) and 21 (fault) during init.
    wat = CLOCK_WAT.replace(
        '(func (export "wizer-initialize")',
        """(func (export "wizer-initialize")
    (if (i32.ne (call $clock (i32.const 9) (i64.const 0) (i32.const 0)) (i32.const 28)) (then unreachable))
    (if (i32.ne (call $random (i32.const 65530) (i32.const 16)) (i32.const 21)) (then unreachable))
    (if (i32.ne (call $random (i32.const -1) (i32.const 2)) (i32.const 21)) (then unreachable))
    (if (i32.ne (call $clock (i32.const 0) (i64.const 0) (i32.const 65535)) (i32.const 21)) (then unreachable))""",
    )
    wizen(wasm_of(wat), REPRO)
    wizen(wasm_of(wat), REAL)


def test_without_a_memory_export_wasi_calls_fail_cleanly() -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory 1)
      (func (export "wizer-initialize")
        (if (i32.ne (call $random (i32.const 0) (i32.const 4)) (i32.const 21)) (then unreachable))))"""
    wizen(wasm_of(wat), REPRO)


def test_random_stream_is_seeded_and_split_independent() -> None:
    one = WasiHost(reproducible=True)
    two = WasiHost(reproducible=True)
    assert one.random(5) + one.random(40) == two.random(45)
    other = WasiHost(reproducible=True, seed=DEFAULT_SEED + b"!")
    assert other.random(45) != WasiHost(reproducible=True).random(45)


def test_reproducible_clocks_start_fixed_and_tick() -> None:
    host = WasiHost(reproducible=True, epoch_ns=5)
    assert [host.clock_time(Clock.REALTIME) for _ in range(3)] == [5, 1005, 2005]
    assert host.clock_time(Clock.MONOTONIC) == 0
    assert host.clock_time(Clock.PROCESS_CPUTIME) == 0
    assert (host.calls.clock, host.calls.random) == (5, 0)


def test_source_date_epoch_parsing() -> None:
    assert source_date_epoch({}) == 0
    assert source_date_epoch({"SOURCE_DATE_EPOCH": " 42 "}) == 42


def test_env_and_args_are_empty_unless_given() -> None:
    # environ_sizes_get and args_sizes_get write counts that init stores in globals.
    wat = """(module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global (export "envc") (mut i32) (i32.const -1))
      (global (export "argc") (mut i32) (i32.const -1))
      (func (export "wizer-initialize")
        (drop (call $env (i32.const 0) (i32.const 4)))
        (global.set 0 (i32.load (i32.const 0)))
        (drop (call $args (i32.const 0) (i32.const 4)))
        (global.set 1 (i32.load (i32.const 0)))))"""

    def counts(options: WizenOptions) -> tuple[int, int]:
        out = wizen(wasm_of(wat), options)
        store, exports = instantiate(out)
        return exports["envc"].value(store), exports["argc"].value(store)

    os.environ.setdefault("HOME", "/root")
    assert counts(REPRO) == (0, 0)
    assert counts(REAL) == (0, 0)
    assert counts(WizenOptions(allow_wasi=True, env=(("A", "1"),), reproducible=True)) == (1, 0)
    assert counts(WizenOptions(allow_wasi=True, inherit_env=True, cache=False))[0] > 0


def test_inheriting_env_conflicts_with_reproducible() -> None:
    with pytest.raises(ConfigError, match="inherit-env"):
        wizen(wasm_of(CLOCK_WAT), WizenOptions(allow_wasi=True, reproducible=True, inherit_env=True))


def test_reproducible_init_gets_no_stdin(tmp_path: Path) -> None:
    # fd_read on stdin: with stdin inherited from a pipe it would read "x"; reproducible reads 0.
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global (export "n") (mut i32) (i32.const -1))
      (func (export "wizer-initialize")
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 8))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (global.set 0 (i32.load (i32.const 16)))))"""
    src = tmp_path / "in.wat"
    src.write_text(wat)
    for flag, expected in (("--reproducible", 0), ("--inherit-stdio=true", 1)):
        out = tmp_path / f"out{expected}.wasm"
        result = subprocess.run(
            [sys.executable, "-m", "hatch_wizer", str(src), "-o", str(out), "--allow-wasi", flag],
            input=b"x",
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        store, exports = instantiate(out.read_bytes())
        assert exports["n"].value(store) == expected


# --- --check-determinism ---------------------------------------------------------------------------


def test_check_determinism_names_the_globals_and_memory_ranges_that_differ() -> None:
    options = WizenOptions(allow_wasi=True, check_determinism=True, cache=False)
    with pytest.raises(InitError) as info:
        wizen(wasm_of(CLOCK_WAT), options)
    message = str(info.value)
    assert message.startswith("init is not deterministic: two runs differ in ")
    assert "global 0" in message and "global 1" in message and "global 2" not in message
    # 16 random bytes at 1024: a range starting there (unless their first bytes happen to agree).
    assert re.search(r"memory 0 \[10(2[4-9]|3[0-9]), 10(2[5-9]|3[0-9]|40)\)", message)
    assert message.endswith("(try --reproducible)")
    assert "\n" not in message


def test_check_determinism_passes_in_reproducible_mode() -> None:
    options = WizenOptions(
        allow_wasi=True, reproducible=True, check_determinism=True, cache=False
    )
    assert wizen(wasm_of(CLOCK_WAT), options) == wizen(wasm_of(CLOCK_WAT), REPRO)


def test_check_determinism_sees_memory_size_and_table_differences() -> None:
    # The random byte decides how far memory and the table grow, and which function a slot holds.
    wat = """(module
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (table $t 1 funcref) (elem declare func $a $b)
      (func $a) (func $b)
      (func (export "wizer-initialize") (local $r i32)
        (drop (call $random (i32.const 0) (i32.const 8)))
        (local.set $r (i32.and (i32.load (i32.const 0)) (i32.const 1)))
        (drop (memory.grow (local.get $r)))
        (drop (table.grow $t (ref.null func) (local.get $r)))
        (table.set $t (i32.const 0) (select (result funcref) (ref.func $a) (ref.func $b) (local.get $r)))))"""
    options = WizenOptions(allow_wasi=True, check_determinism=True, cache=False)
    seen = set()
    for _ in range(12):  # each run draws fresh randomness: some pair of runs must differ
        try:
            wizen(wasm_of(wat), options)
        except InitError as e:
            seen.add(str(e))
    assert any("memory 0 size (65536 vs 131072 bytes)" in s or "(131072 vs 65536" in s for s in seen)
    assert any("table 0 size" in s and "table 0 slot 0" in s for s in seen)


def test_cli_flags_and_config_keys(tmp_path: Path) -> None:
    src = tmp_path / "in.wat"
    src.write_text(CLOCK_WAT)
    out = tmp_path / "out.wasm"
    result = subprocess.run(
        [sys.executable, "-m", "hatch_wizer", str(src), "-o", str(out), "--allow-wasi",
         "--check-determinism", "-q"],
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and not out.exists()
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "init is not deterministic" in lines[0]
    ok = subprocess.run(
        [sys.executable, "-m", "hatch_wizer", str(src), "-o", str(out), "--allow-wasi",
         "--check-determinism", "--reproducible"],
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    pyproject = {"tool": {"wizer": {"check-determinism": True, "modules": ["m.wasm"]}}}
    config = load_config(pyproject, tmp_path)
    assert config is not None
    options = config.modules[0].options
    assert options.check_determinism and options.reproducible


def test_preopens_are_given_in_sorted_order(tmp_path: Path) -> None:
    # fd 3 is the first preopen: its name must be the smallest guest path whatever the order given.
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $name (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "wizer-initialize") (drop (call $name (i32.const 3) (i32.const 0) (i32.const 2)))))"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for order in ((("/b", "b"), ("/a", "a")), (("/a", "a"), ("/b", "b"))):
        preopens = tuple(Preopen(g, tmp_path / h) for g, h in order)
        out = wizen(wasm_of(wat), WizenOptions(allow_wasi=True, preopens=preopens, reproducible=True))
        store, exports = instantiate(out)
        assert exports["memory"].read(store, 0, 2) == b"/a"


def test_build_front_ends_show_the_nondeterminism_warning(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(wasm_of(CLOCK_WAT))
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\n'
        '[tool.wizer]\nallow-wasi = true\ninherit-stdio = false\nmodules = ["m.wasm"]\n'
    )
    build = [sys.executable, "-m", "hatch_wizer", "build", "--project", str(tmp_path), "--force"]
    quiet = subprocess.run(build, capture_output=True, timeout=120)  # reproducible by default
    assert quiet.returncode == 0, quiet.stderr
    assert b"warning" not in quiet.stderr
    with (tmp_path / "pyproject.toml").open("a") as f:
        f.write("reproducible = false\n")
    loud = subprocess.run(build, capture_output=True, timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert b"hatch-wizer build: m.wasm: warning: init read the clock 2 times" in loud.stderr
