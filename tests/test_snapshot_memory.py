"""A large memory's data is copied into the output once, through a small scratch, and its
pages are given back as they are copied: the snapshot never holds the memory twice.

Sizes here stay small (tens of MiB); `benches/peak_rss.py` measures the real peak."""

from __future__ import annotations

import ctypes
import mmap
import platform
import tracemalloc
from typing import Any

import pytest

from hatch_wizer import WizenOptions, instrument, snapshot, wizen
from hatch_wizer.engine.instance import WasmtimeState
from hatch_wizer.engine.runtime import Runtime
from hatch_wizer.module.state import BATCH_BYTES
from hatch_wizer.options import Features
from tests.harness import wasm_of

OPTS = WizenOptions(cache=False)
# Without multi-memory there is no scratch memory, so no encoder: Python encodes the segments.
NO_ENCODER = WizenOptions(cache=False, features=Features(multi_memory=False))
MIB = 1 << 20

# Memory 1 (so segments carry a memory index): runs of every length from 1 byte to 4 KiB
# with gaps of 16 to 80 bytes, one run longer than a batch, one ending at the memory's end.
# Memory 2 is 64-bit.
MIXED = f"""(module
  (memory $a (export "a") 1)
  (memory $b (export "b") 1)
  (memory $c (export "c") i64 1)
  (func (export "wizer-initialize")
    (local $p i32) (local $x i32) (local $n i32)
    (drop (memory.grow $b (i32.const {48 * 16 - 1})))
    (drop (memory.grow $c (i64.const 40)))
    (i32.store $a (i32.const 8) (i32.const 1))
    (local.set $x (i32.const 7))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (local.set $n (i32.add (i32.shr_u (local.get $x) (i32.const 20)) (i32.const 1)))
      (memory.fill $b (local.get $p) (i32.or (local.get $x) (i32.const 1)) (local.get $n))
      (local.set $p (i32.add (local.get $p) (i32.add (local.get $n)
        (i32.add (i32.const 16) (i32.and (i32.shr_u (local.get $x) (i32.const 8)) (i32.const 63))))))
      (br_if $next (i32.lt_u (local.get $p) (i32.const {24 * MIB}))))
    (memory.fill $b (i32.const {25 * MIB + 3}) (i32.const 9) (i32.const {BATCH_BYTES + 12345}))
    (memory.fill $b (i32.const {48 * MIB - 5000}) (i32.const 4) (i32.const 5000))
    (memory.fill $c (i64.const 0x10) (i32.const 5) (i64.const 0x200000))
    (memory.fill $c (i64.const 0x280000) (i32.const 6) (i64.const 0x10))))"""


# One memory: runs of 1 to 4 KiB, then a run longer than a batch.
DENSE = f"""(module (memory (export "m") 1)
  (func (export "wizer-initialize")
    (local $p i32) (local $x i32) (local $n i32)
    (drop (memory.grow (i32.const {40 * 16 - 1})))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (local.set $n (i32.add (i32.shr_u (local.get $x) (i32.const 20)) (i32.const 1)))
      (memory.fill (local.get $p) (i32.or (local.get $x) (i32.const 1)) (local.get $n))
      (local.set $p (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 40))))
      (br_if $next (i32.lt_u (local.get $p) (i32.const {8 * MIB}))))
    (memory.fill (i32.const {9 * MIB}) (i32.const 7) (i32.const {BATCH_BYTES + 4 * MIB}))))"""


class PlainState:
    """Only the InstanceState protocol: the snapshot scans and encodes in Python."""

    def __init__(self, inner: Any) -> None:
        self.global_value = inner.global_value
        self.memory = inner.memory
        self.table = inner.table
        self.segment_dropped = inner.segment_dropped


def _initialized(wat: str, options: WizenOptions = OPTS) -> tuple[Any, WasmtimeState]:
    context, instrumented = instrument(wasm_of(wat), options)
    runtime = Runtime(options)
    return context, runtime.initialize(context, runtime.compile(instrumented))


def _resident_pages(view: memoryview, start: int, end: int) -> int:
    """How many pages of `view[start:end]` (rounded to pages) are in RAM (mincore)."""
    base = ctypes.addressof(ctypes.c_char.from_buffer(view))
    first, last = (base + start) // mmap.PAGESIZE, -(-(base + end) // mmap.PAGESIZE)
    flags = (ctypes.c_ubyte * (last - first))()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    assert libc.mincore(first * mmap.PAGESIZE, len(flags) * mmap.PAGESIZE, flags) == 0
    return sum(flag & 1 for flag in flags)


def test_batched_segments_are_the_plain_encoding() -> None:
    context, state = _initialized(MIXED)
    plain = snapshot(context, PlainState(state))
    assert wizen(wasm_of(MIXED), OPTS) == plain


@pytest.mark.skipif(platform.system() != "Linux", reason="pages are given back on Linux only")
@pytest.mark.parametrize(
    ("wat", "options", "ordinal", "written"),
    [
        (MIXED, OPTS, 1, [(0, 24 * MIB), (25 * MIB, 41 * MIB)]),
        (DENSE, NO_ENCODER, 0, [(0, 8 * MIB), (9 * MIB, 9 * MIB + BATCH_BYTES + 4 * MIB)]),
    ],
    ids=["encoder", "python"],
)
def test_copied_pages_are_given_back_and_the_scratch_stays_small(
    wat: str, options: WizenOptions, ordinal: int, written: list[tuple[int, int]]
) -> None:
    context, state = _initialized(wat, options)
    memory = state.memory(context.memories[ordinal])
    # Where init wrote; the scan maps the zero page into the rest, which costs no RAM.
    pages = sum(end - start for start, end in written) // mmap.PAGESIZE
    assert sum(_resident_pages(memory, start, end) for start, end in written) >= pages
    out = snapshot(context, state, release_memory=True)
    assert sum(_resident_pages(memory, start, end) for start, end in written) < pages // 100
    if context.scratch:
        scratch = state.export(context.scratch).data_len(state.store)
        assert scratch <= BATCH_BYTES + MIB < len(out) // 2


@pytest.mark.parametrize("options", [OPTS, NO_ENCODER], ids=["encoder", "python"])
def test_the_output_is_the_only_copy_of_a_dense_memory(options: WizenOptions) -> None:
    context, state = _initialized(DENSE, options)
    assert bool(context.encoders) == (options is OPTS)
    plain = snapshot(context, PlainState(state))
    tracemalloc.start()
    try:
        out = wizen(wasm_of(DENSE), options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == plain
    assert peak < len(out) + 4 * MIB  # the output, not a copy of the memory too
