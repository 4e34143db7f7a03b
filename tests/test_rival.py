"""`--compiler auto`: init starts under Winch while Cranelift compiles, and a long init runs
again on Cranelift's code, unnoticed: one copy of its output, the same module."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer.core import wizen
from hatch_wizer.engine import host, rival
from hatch_wizer.options import Preopen, WizenOptions
from tests.harness import instantiate_wasi, wasm_of

# ~0.5 s under Cranelift, twice that under Winch: long enough that the rival compile (tens of
# ms) is ready before Winch's run ends even on a loaded machine (200M spins were not, at times).
SPINS = 800_000_000

# Says "start", counts to `spins` in a loop, says "end".
SPIN_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "start\\n")
  (data (i32.const 200) "end\\n")
  (global $count (export "count") (mut i32) (i32.const 0))
  (func $say (param $at i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $at)) (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "wizer-initialize") (local $i i32)
    (call $say (i32.const 100) (i32.const 6))
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const {spins}))))
    (global.set $count (local.get $i))
    (call $say (i32.const 200) (i32.const 4))))"""

RAN_AGAIN = "init ran again on cranelift's code"


def spin_module(tmp_path: Path, spins: int) -> Path:
    path = tmp_path / "spin.wasm"
    path.write_bytes(wasm_of(SPIN_WAT.format(spins=spins)))
    return path


def wizen_cli(
    module: Path, out: Path, *flags: str, stdin: int = subprocess.DEVNULL, status: int = 0
) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "hatch_wizer", "-v", "--no-cache", "--allow-wasi", *flags]
    run = subprocess.run(
        [*cmd, str(module), "-o", str(out)], stdin=stdin, capture_output=True, timeout=120
    )
    assert run.returncode == status, run.stderr.decode()
    return run


def test_long_init_runs_again_on_cranelift_with_one_copy_of_its_output(tmp_path: Path) -> None:
    module = spin_module(tmp_path, SPINS)
    raced = wizen_cli(module, tmp_path / "auto.wasm")
    assert "compiled with winch" in raced.stderr.decode()
    assert RAN_AGAIN in raced.stderr.decode()
    assert raced.stdout == b"start\nend\n"
    wizen_cli(module, tmp_path / "cranelift.wasm", "--compiler", "cranelift")
    assert (tmp_path / "auto.wasm").read_bytes() == (tmp_path / "cranelift.wasm").read_bytes()
    assert count_after_init((tmp_path / "auto.wasm").read_bytes()) == SPINS


def count_after_init(wizened: bytes) -> int:
    store, exports = instantiate_wasi(wizened)
    count = exports["count"]
    assert isinstance(count, wasmtime.Global)
    return int(count.value(store))


@pytest.mark.parametrize("held_in_memory", [host.HELD_IN_MEMORY, 3])  # 3: "start" spills
def test_a_kept_trial_shows_its_output_once(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], held_in_memory: int
) -> None:
    # A rival that never finishes: the Winch run is the one that counts.
    monkeypatch.setattr(rival.Rival, "_compile", lambda self, wasm: None)
    monkeypatch.setattr(host, "HELD_IN_MEMORY", held_in_memory)
    monkeypatch.setattr(rival, "init_may_read_stdin", lambda options: False)  # whatever pytest's stdin is
    lines: list[str] = []
    options = WizenOptions(allow_wasi=True, cache=False)
    wizen(wasm_of(SPIN_WAT.format(spins=1000)), options, report=lines.append)
    assert "compiled with winch" in lines
    assert not any(line.startswith(RAN_AGAIN) for line in lines)
    assert capfd.readouterr().out == "start\nend\n"


def test_a_failing_trial_still_shows_its_output(tmp_path: Path) -> None:
    module = tmp_path / "fails.wasm"
    says_start_then_traps = SPIN_WAT.format(spins=1).replace("(global.set", "unreachable (global.set")
    module.write_bytes(wasm_of(says_start_then_traps))
    run = wizen_cli(module, tmp_path / "out.wasm", status=1)
    assert "trapped" in run.stderr.decode()
    assert run.stdout == b"start\n"


def test_a_terminal_stdin_allows_a_second_run(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        run = wizen_cli(spin_module(tmp_path, SPINS), tmp_path / "out.wasm", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert RAN_AGAIN in run.stderr.decode()
    assert run.stdout == b"start\nend\n"


def test_no_second_run_when_init_could_consume_stdin(tmp_path: Path) -> None:
    run = wizen_cli(spin_module(tmp_path, SPINS), tmp_path / "out.wasm", stdin=subprocess.PIPE)
    assert RAN_AGAIN not in run.stderr.decode()
    assert run.stdout == b"start\nend\n"


@pytest.mark.parametrize("writable", [False, True])
def test_no_second_run_when_init_may_write_files(tmp_path: Path, writable: bool) -> None:
    lines: list[str] = []
    options = WizenOptions(
        allow_wasi=True,
        inherit_stdio=False,
        cache=False,
        preopens=(Preopen("/data", tmp_path, writable=writable),),
    )
    wizen(wasm_of(SPIN_WAT.format(spins=SPINS)), options, report=lines.append)
    assert any(line.startswith(RAN_AGAIN) for line in lines) is not writable
