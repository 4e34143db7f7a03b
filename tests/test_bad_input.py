"""Bad and hostile input: a one-line error and exit 1 in bounded time and memory, never a
traceback, a hang or a partial output; valid-but-huge modules wizen without whole-memory copies.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatch_wizer import WizenOptions, WizerError, wizen
from hatch_wizer.engine import runtime
from hatch_wizer.errors import InitError, InvalidModule
from hatch_wizer.wasm.binary import name, section
from tests.harness import assert_same_behaviour, wasm_of

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = [
    line.split("\t")
    for line in (CORPUS / "MANIFEST").read_text().splitlines()
    if line and not line.startswith("#")
]
# Generous bounds for a loaded 2-core CI machine; a hang or a runaway allocation blows past them.
SECONDS = 60
PEAK_RSS_MIB = 600


@dataclass
class Run:
    returncode: int
    stderr: str
    seconds: float
    peak_rss_mib: float


def run_cli(args: Sequence[str], timeout: float = SECONDS) -> Run:
    """Run `hatch-wizer` and measure its wall time and peak resident memory (of it alone)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatch_wizer", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    err = b""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        err += proc.stderr.read() or b""
        if pid:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            proc.wait()
            pytest.fail(f"hatch-wizer {' '.join(args)} ran longer than {timeout} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err += proc.stderr.read() or b""
    proc.stderr.close()
    return Run(
        proc.returncode,
        err.decode(errors="replace"),
        time.monotonic() - start,
        usage.ru_maxrss / 1024,
    )


def assert_one_line_failure(run: Run, message: str, out: Path) -> None:
    lines = run.stderr.splitlines()
    assert run.returncode == 1, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("hatch-wizer: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in run.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert run.seconds < SECONDS
    assert run.peak_rss_mib < PEAK_RSS_MIB, f"{run.peak_rss_mib:.0f} MiB"


@pytest.mark.parametrize(("name", "message"), MANIFEST, ids=[m[0] for m in MANIFEST])
def test_corpus_file_fails_with_one_line(name: str, message: str, tmp_path: Path) -> None:
    source = CORPUS / name
    before = source.read_bytes()
    out = tmp_path / "out.wasm"
    assert_one_line_failure(run_cli([str(source), "-o", str(out)]), message, out)
    assert source.read_bytes() == before


def test_every_corpus_file_is_listed() -> None:
    listed = {name for name, _ in MANIFEST}
    present = {p.name for p in CORPUS.iterdir() if p.name not in ("MANIFEST", "README.md")}
    assert listed == present


# --- hostile but valid modules -----------------------------------------------------------------------

HOSTILE = {
    "loops-forever": (
        '(module (func (export "wizer-initialize") (loop $l (br $l))))',
        ["--init-timeout", "1"],
        r"`wizer-initialize` did not finish within 1 s \(--init-timeout\)",
    ),
    "traps": (
        '(module (func (export "wizer-initialize") (drop (i32.div_u (i32.const 1) (i32.const 0)))))',
        [],
        r"`wizer-initialize` trapped: wasm trap: integer divide by zero",
    ),
    "overflows-the-stack": (
        '(module (func $f (export "wizer-initialize") (call $f)))',
        [],
        r"`wizer-initialize` trapped: wasm trap: call stack exhausted",
    ),
    "start-traps": (
        '(module (func $s unreachable) (start $s) (func (export "wizer-initialize")))',
        [],
        r"the start function trapped",
    ),
    "calls-an-import": (
        '(module (import "env" "f" (func $f)) (func (export "wizer-initialize") (call $f)))',
        [],
        r"used the import `env::f`",
    ),
    "exits": (
        """(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "wizer-initialize") (call $exit (i32.const 3))))""",
        ["--allow-wasi"],
        r"exited \(WASI proc_exit with code 3\)",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_init_fails_with_one_line(case: str, tmp_path: Path) -> None:
    wat, flags, message = HOSTILE[case]
    source = tmp_path / "in.wat"
    source.write_text(wat)
    out = tmp_path / "out.wasm"
    assert_one_line_failure(run_cli([str(source), "-o", str(out), "-q", *flags]), message, out)


def test_default_timeout_fits_a_build() -> None:
    # Long enough for a big runtime's init (CPython takes ~0.1 s, QuickJS less), short enough
    # that a hung build fails within the usual CI step limits.
    assert WizenOptions().init_timeout == 600.0


def test_ten_thousand_nested_blocks_wizen(tmp_path: Path) -> None:
    depth = 10_000
    wat = (
        '(module (global $g (export "g") (mut i32) (i32.const 0))'
        '(func (export "wizer-initialize")'
        + "(block" * depth
        + "(global.set $g (i32.const 5))"
        + ")" * depth
        + ")"
        + '(func (export "get") (result i32) (global.get $g)))'
    )
    assert_same_behaviour(wat, [("get", ())], WizenOptions(cache=False))


def test_four_gib_memory_wizens_without_copying_it(tmp_path: Path) -> None:
    # Init grows memory from 1 page to 65,536 (4 GiB, the memory32 limit) and writes both ends.
    source = tmp_path / "in.wat"
    source.write_text(
        """(module (memory (export "memory") 1)
          (global $r (export "r") (mut i32) (i32.const 0))
          (func (export "wizer-initialize")
            (global.set $r (memory.grow (i32.const 65535)))
            (i32.store8 (i32.const 0) (i32.const 1))
            (i32.store8 (i32.const 2147483648) (i32.const 2))
            (i32.store8 (i32.const -1) (i32.const 3)))
          (func (export "grow") (result i32) (memory.grow (i32.const 1))))"""
    )
    out = tmp_path / "out.wasm"
    run = run_cli([str(source), "-o", str(out), "-q"])
    assert run.returncode == 0, run.stderr
    assert run.peak_rss_mib < PEAK_RSS_MIB, f"{run.peak_rss_mib:.0f} MiB"
    wasm = out.read_bytes()
    assert len(wasm) < 500
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    exports = wasmtime.Instance(store, wasmtime.Module(engine, wasm), []).exports(store)
    memory = exports["memory"]
    assert memory.size(store) == 65536
    assert exports["r"].value(store) == 1
    assert memory.read(store, 0, 1) == b"\x01"
    assert memory.read(store, 1 << 31, (1 << 31) + 1) == b"\x02"
    assert memory.read(store, (1 << 32) - 1, 1 << 32) == b"\x03"
    assert exports["grow"](store) == -1


def test_minimum_of_65536_pages_wizens(tmp_path: Path) -> None:
    source = tmp_path / "in.wat"
    source.write_text(
        """(module (memory (export "memory") 65536)
          (func (export "wizer-initialize") (i32.store (i32.const 4096) (i32.const 7))))"""
    )
    out = tmp_path / "out.wasm"
    run = run_cli([str(source), "-o", str(out), "-q"])
    assert run.returncode == 0, run.stderr
    assert run.peak_rss_mib < PEAK_RSS_MIB, f"{run.peak_rss_mib:.0f} MiB"
    assert len(out.read_bytes()) < 200


def test_growth_past_four_gib_fails_inside_the_module() -> None:
    # memory.grow returns -1 (the module sees the failure); wizening goes on.
    assert_same_behaviour(
        """(module (memory (export "memory") 1)
          (global $r (export "r") (mut i32) (i32.const 0))
          (func (export "wizer-initialize") (global.set $r (memory.grow (i32.const 65536)))))""",
        [],
        WizenOptions(cache=False),
    )


# --- mutations of valid fixtures ------------------------------------------------------------------

FIXTURES = [
    wasm_of(wat)
    for wat in (
        """(module (memory (export "memory") 1 4) (data (i32.const 16) "hello")
          (global $g (export "g") (mut i32) (i32.const 0)) (global $h (mut f64) (f64.const 1))
          (table 2 funcref) (elem (i32.const 0) $get)
          (func (export "wizer-initialize") (local i32)
            (global.set $g (i32.const 42))
            (loop $l (i32.store8 (local.get 0) (local.get 0))
              (local.set 0 (i32.add (local.get 0) (i32.const 3)))
              (br_if $l (i32.lt_u (local.get 0) (i32.const 300))))
            (drop (memory.grow (i32.const 1))))
          (func $get (export "get") (result i32) (global.get $g)))""",
        """(module (type $t (func (param i32) (result i32)))
          (memory 1) (data "\\01\\02") (data (i32.const 8) "abc")
          (global $v (mut v128) (v128.const i64x2 1 2))
          (func $f (type $t) (i32.mul (local.get 0) (i32.const 3)))
          (func (export "wizer-initialize")
            (memory.init 0 (i32.const 100) (i32.const 0) (i32.const 2))
            (global.set $v (i32x4.splat (call $f (i32.const 5))))
            (data.drop 1)))""",
    )
]
MUTATION_OPTIONS = WizenOptions(cache=False, init_timeout=0.5, max_data_segments=1000)


def flip(data: bytes, position: int, bit: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= 1 << bit
    return bytes(out)


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just(0)),
)


def mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    for kind, position, value in steps:
        if not data:
            break
        at = position % len(data)
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data = flip(data, at, value)
        elif kind == "byte":
            data = data[:at] + bytes([value]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + bytes([value]) + data[at:]
        else:
            data = data[:at] + data[at + 1 :]
    return data


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(fixture=st.sampled_from(FIXTURES), steps=st.lists(mutations, min_size=1, max_size=3))
def test_mutated_fixtures_wizen_or_fail_cleanly(
    fixture: bytes, steps: list[tuple[str, int, int]]
) -> None:
    data = mutate(fixture, steps)
    try:
        out = wizen(data, MUTATION_OPTIONS)
    except WizerError as e:
        assert "\n" not in str(e) and str(e)
        return
    wasmtime.Module.validate(wasmtime.Engine(), out)


def pad_lebs(data: bytes) -> bytes:
    """Re-encode every section size as a 5-byte LEB: valid, but not minimal."""
    out = bytearray(data[:8])
    pos = 8
    while pos < len(data):
        out.append(data[pos])
        size, shift, pos = 0, 0, pos + 1
        while True:
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out += bytes((((size >> (7 * i)) & 0x7F) | (0x80 if i < 4 else 0)) for i in range(5))
        out += data[pos : pos + size]
        pos += size
    return bytes(out)


@pytest.mark.parametrize("fixture", range(len(FIXTURES)))
def test_padded_lebs_are_valid_and_wizen_alike(fixture: int) -> None:
    padded = pad_lebs(FIXTURES[fixture])
    assert padded != FIXTURES[fixture]
    wasmtime.Module.validate(wasmtime.Engine(), padded)
    options = WizenOptions(cache=False)
    assert_same_behaviour(padded, [], options)


def with_custom_section(wasm: bytes, size: int) -> bytes:
    """`wasm` with a custom section of `size` zero bytes at its end (it changes no offset)."""
    return wasm + section(0, name("pad") + bytes(size))


INVALID = [
    ('(func (export "wizer-initialize") (drop (i32.add (i32.const 1) (f32.const 1))))',
     r"invalid module: type mismatch: expected i32, found f32 \(at offset 0x34\)"),
    ('(func) (export "wizer-initialize" (func 5))',
     r"invalid module: unknown function 5: .* \(at offset 0x15\)"),
    ('(memory 1) (func (export "wizer-initialize")) (data (memory 3) (i32.const 0) "x")',
     r"invalid module: unknown memory 3: .* \(at offset 0x36\)"),
]  # fmt: skip


@pytest.mark.parametrize("size", ["small", "big", "big-busy"])
@pytest.mark.parametrize(("wat", "message"), INVALID, ids=["body", "export", "data"])
def test_invalid_input_gets_the_validators_error(
    wat: str, message: str, size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A big input is validated beside its parse and compile (`Runtime.validating`): its error
    # still comes from the validator, not from what meets the invalid input first, also when
    # the idle-priority thread gets no turn (a busy machine).
    never = threading.Event()
    if size == "big-busy":
        monkeypatch.setattr(runtime._IdleValidation, "_run", lambda self: never.wait())
    padding = 0 if size == "small" else runtime.VALIDATE_BESIDE_BYTES
    wasm = with_custom_section(wasm_of(f"(module {wat})"), padding)
    try:
        with pytest.raises(InvalidModule, match=f"^{message}$"):
            wizen(wasm, WizenOptions(cache=False))
    finally:
        never.set()


def test_init_error_is_an_init_error_in_the_library() -> None:
    with pytest.raises(InitError, match=r"did not finish within 0\.2 s"):
        wizen(wasm_of('(module (func (export "wizer-initialize") (loop $l (br $l))))'),
              WizenOptions(cache=False, init_timeout=0.2))  # fmt: skip


def test_snapshot_over_one_gib_fails_with_one_line_and_no_extra_copy(tmp_path: Path) -> None:
    # 1.25 GiB of non-zero memory cannot become a module engines load; the scan must find that
    # out without copying the memory (the guest's own 1.25 GiB is resident anyway).
    pages = 20_480
    source = tmp_path / "in.wat"
    source.write_text(
        f"""(module (memory 1)
          (func (export "wizer-initialize")
            (drop (memory.grow (i32.const {pages - 1})))
            (memory.fill (i32.const 0) (i32.const 7) (i32.const {pages * 65536}))))"""
    )
    out = tmp_path / "out.wasm"
    run = run_cli([str(source), "-o", str(out), "-q"], timeout=120)
    guest_mib = pages * 64 / 1024
    assert run.peak_rss_mib < guest_mib + 400, f"{run.peak_rss_mib:.0f} MiB"
    run.peak_rss_mib = 0  # checked against the guest's size above
    assert_one_line_failure(
        run, r"the snapshot would hold 1\.25 GiB of memory data, more than the 1 GiB", out
    )


def test_huge_table_growth_fails_inside_the_module(tmp_path: Path) -> None:
    # Found by fuzzing: init grew an externref table by 4 billion entries (17 GB resident).
    # Growth past the 10,000,000 elements a module may declare now fails, as the spec allows.
    source = tmp_path / "in.wat"
    source.write_text(
        """(module (table $t (export "t") 1 externref)
          (global $huge (export "huge") (mut i32) (i32.const 0))
          (global $small (export "small") (mut i32) (i32.const 0))
          (func (export "wizer-initialize")
            (global.set $huge (table.grow $t (ref.null extern) (i32.const -4097)))
            (global.set $small (table.grow $t (ref.null extern) (i32.const 1000)))))"""
    )
    out = tmp_path / "out.wasm"
    run = run_cli([str(source), "-o", str(out), "-q"])
    assert run.returncode == 0, run.stderr
    assert run.peak_rss_mib < PEAK_RSS_MIB, f"{run.peak_rss_mib:.0f} MiB"
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    exports = wasmtime.Instance(store, wasmtime.Module(engine, out.read_bytes()), []).exports(store)
    assert exports["huge"].value(store) == -1
    assert exports["small"].value(store) == 1
    assert exports["t"].size(store) == 1001
