"""Big modules are wizened in a child process: the same output, errors, stage lines and guest
output as in the process, and an endless init that ends with the child, leaving nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.engine import child
from hatch_wizer.engine.compile import winch_available
from hatch_wizer.errors import InitError, InvalidModule
from tests.harness import assert_same_behaviour, wasm_of
from tests.test_safety import BIG_LOOP_WAT

ROOT = Path(__file__).parent.parent
# Over child.STOPPABLE_MAX_BYTES: 1.2 MB of data, a counter that init sets, and a greeting it
# writes to stdout and stderr through WASI.
BIG_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 40)
  (global $count (export "count") (mut i32) (i32.const 0))
  (data (i32.const 16) "hello from init\\n")
  (data (i32.const 64) "{filler}")
  (func (export "wizer-initialize")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store8 (i32.const 2000000) (i32.const 42))
    (global.set $count (i32.const 7)))
  (func (export "count_plus") (param i32) (result i32)
    (i32.add (global.get $count) (local.get 0))))""".replace("{filler}", "y" * 1_200_000)
BIG = wasm_of(BIG_WAT)
OPTIONS = WizenOptions(cache=False, allow_wasi=True, compiler="cranelift")


def _in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "in_child", lambda wasm, options: False)


def test_a_big_module_goes_to_a_child_and_a_small_one_does_not() -> None:
    assert child.in_child(BIG, OPTIONS)
    assert not child.in_child(wasm_of('(module (func (export "wizer-initialize")))'), OPTIONS)
    # Winch's code checks the epoch: a big module it compiles stays in the process.
    assert not child.in_child(BIG, OPTIONS._replace(compiler="auto")) or not winch_available()


def test_big_bytes_that_are_not_wasm_fail_in_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = b"PK\x03\x04" + bytes(child.STOPPABLE_MAX_BYTES)
    assert not child.in_child(garbage, OPTIONS)
    monkeypatch.setattr(child, "wizen_in_child", None)  # calling it would fail
    with pytest.raises(InvalidModule, match=r"^not a WebAssembly module"):
        wizen(garbage, OPTIONS)


def test_the_output_is_the_same_as_in_the_process(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    out = wizen(BIG, OPTIONS, report=lines.append)
    assert capfd.readouterr() == ("hello from init\n", "hello from init\n")  # the guest's
    assert [line.split(":")[0] for line in lines] == [
        "validate", "compile", "compiled with cranelift", "init", "snapshot", "check"
    ]  # fmt: skip
    assert assert_same_behaviour(BIG, [("count_plus", (1,))], OPTIONS, _wasi) == out
    _in_process(monkeypatch)
    assert wizen(BIG, OPTIONS) == out


def _wasi(store: wasmtime.Store, linker: wasmtime.Linker) -> None:
    store.set_wasi(wasmtime.WasiConfig())
    linker.define_wasi()


def test_a_failing_init_gives_the_same_error(monkeypatch: pytest.MonkeyPatch) -> None:
    trapping = wasm_of(BIG_WAT.replace("(global.set $count (i32.const 7))", "(unreachable)"))
    with pytest.raises(InitError) as in_child:
        wizen(trapping, OPTIONS)
    _in_process(monkeypatch)
    with pytest.raises(InitError) as here:
        wizen(trapping, OPTIONS)
    assert str(in_child.value) == str(here.value)
    assert "`wizer-initialize` trapped: wasm trap: wasm `unreachable`" in str(here.value)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # ended, waiting for whoever adopted it to reap it


# A program that calls `wizen()` on an endless big init and prints its stage lines and error.
_LIBRARY_RUN = """
import sys
from hatch_wizer import wizen, WizenOptions
from tests.harness import wasm_of
from tests.test_safety import BIG_LOOP_WAT
options = WizenOptions(init_timeout={timeout}, compiler="cranelift", cache=False)
try:
    wizen(wasm_of(BIG_LOOP_WAT), options, report=lambda line: print(line, file=sys.stderr))
except Exception as e:
    print(e, file=sys.stderr)
"""


def _in_init(cmd: list[str]) -> subprocess.Popen[bytes]:
    """`cmd` started, once its stage lines say that init has begun (it follows the compile)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    line = b""
    while b"compiled with" not in line:
        line = proc.stderr.readline()
        assert line, "the run ended before init"
    return proc


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL, None],
                         ids=["SIGINT", "SIGTERM", "SIGKILL", "init-timeout"])  # fmt: skip
def test_an_endless_big_init_is_stopped_with_its_child(tmp_path: Path, sig: int | None) -> None:
    timeout = "None" if sig is not None else "1"
    proc = _in_init([sys.executable, "-c", _LIBRARY_RUN.format(timeout=timeout)])
    [worker] = _children(proc.pid)
    started = time.monotonic()
    if sig is not None:
        proc.send_signal(sig)
    rest = proc.communicate(timeout=20)[1].decode()
    assert time.monotonic() - started < (3 if sig is None else 2)
    if sig is None:
        assert rest.endswith("did not finish within 1 s (--init-timeout)\n"), rest
    while not _gone(worker) and time.monotonic() - started < 3:
        time.sleep(0.05)
    assert _gone(worker)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_cli_stops_an_endless_big_init_by_exiting_without_a_child(tmp_path: Path) -> None:
    source = tmp_path / "in.wat"
    source.write_text(BIG_LOOP_WAT)
    proc = _in_init(
        [sys.executable, "-m", "hatch_wizer", str(source), "-o", str(tmp_path / "out.wasm"),
         "--compiler", "cranelift", "--init-timeout", "1"]
    )  # fmt: skip
    assert _children(proc.pid) == []  # the CLI ends with its run: no child is needed
    started = time.monotonic()
    rest = proc.communicate(timeout=20)[1].decode()
    assert time.monotonic() - started < 3
    assert proc.returncode == 1
    assert rest.endswith("did not finish within 1 s (--init-timeout)\n"), rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wat"]


def test_a_library_caller_keeps_no_busy_thread_after_the_time_limit() -> None:
    code = """
import os, time
from hatch_wizer import wizen, WizenOptions
from hatch_wizer.engine.compile import winch_available
from hatch_wizer.errors import InitError
from tests.harness import wasm_of
from tests.test_safety import BIG_LOOP_WAT
start = time.monotonic()
try:
    wizen(wasm_of(BIG_LOOP_WAT), WizenOptions(init_timeout=1, compiler="cranelift", cache=False))
except InitError as e:
    print(e)
print(round(time.monotonic() - start))
cpu = time.process_time()
time.sleep(0.5)
print(round(time.process_time() - cpu, 2))
try:
    os.waitpid(-1, os.WNOHANG)
    print("a child is left")
except ChildProcessError:
    print("no child")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()
    message, seconds, cpu, children = result.stdout.decode().splitlines()
    assert message == "`wizer-initialize` did not finish within 1 s (--init-timeout)"
    assert int(seconds) <= 3
    assert float(cpu) < 0.1  # no init spinning on a thread of this process
    assert children == "no child"


def _die(*, say: child.Say) -> bytes:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def test_a_child_that_dies_is_a_one_line_error() -> None:
    with pytest.raises(InitError, match=r"^the process that ran init was killed by SIGKILL"):
        child.wizen_in_child(_die, (), print)


def _die_of_a_real_time_signal(*, say: child.Say) -> bytes:
    signal.signal(signal.SIGRTMIN + 6, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGRTMIN + 6)
    raise AssertionError("not reached")


def test_a_child_killed_by_a_signal_without_a_name_is_a_one_line_error() -> None:
    number = signal.SIGRTMIN + 6
    with pytest.raises(InitError, match=rf"^the process that ran init was killed by signal {number}$"):
        child.wizen_in_child(_die_of_a_real_time_signal, (), print)


def test_a_cached_result_starts_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    cached = WizenOptions(allow_wasi=True, compiler="cranelift", reproducible=True)
    out = wizen(BIG, cached)
    monkeypatch.setattr(child, "wizen_in_child", None)  # calling it would fail
    lines: list[str] = []
    assert wizen(BIG, cached, report=lines.append) == out
    assert lines[0].startswith("reused the result of an earlier run")
