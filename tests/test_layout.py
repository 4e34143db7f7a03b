"""The non-zero scan and the segment layout, checked against a plain reference on random data."""

from __future__ import annotations

import ctypes
import itertools
import random
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatch_wizer.module.layout import (
    DENSE_IMAGE_SIZE,
    Runs,
    _scan,
    _split_runs,
    data_segment_overhead,
    find_runs,
    lay_out,
    segment_header,
    segments_size,
)

# Mostly zeros, with runs of non-zero bytes, runs of mixed bytes (as in arrays of small
# numbers), and gaps of every length around the split cost.
memories = st.lists(
    st.one_of(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\0", b"\1")),
              st.lists(st.sampled_from([b"\0", b"\1", b"\0" * 3, b"\0" * 7]), max_size=30)
              .map(b"".join),
              st.integers(0, 70_000).map(bytes)),
    max_size=40,
).map(b"".join)  # fmt: skip


def _covers(data: bytes, runs: Runs) -> bool:
    rebuilt = bytearray(len(data))
    for start, end in runs:
        rebuilt[start:end] = data[start:end]
    return bytes(rebuilt) == data


@settings(max_examples=150, deadline=None)
@given(memories)
def test_runs_cover_every_non_zero_byte_and_split_only_at_costly_gaps(data: bytes) -> None:
    runs = find_runs(memoryview(bytearray(data)))
    assert _covers(data, runs)
    split = max(5, data_segment_overhead(0, len(data), 1, False))
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start - end >= split
        assert data[end - 1] and data[start]


@settings(max_examples=150, deadline=None)
@given(memories, st.integers(5, 12))
def test_split_path_equals_find_path(data: bytes, split: int) -> None:
    buf = ctypes.create_string_buffer(data, len(data))
    by_find = _scan(ctypes.addressof(buf), 0, len(data), split, by_find=True)
    assert _split_runs(data, 0, split) == by_find


def test_runs_merge_at_chosen_gaps_and_cross_to_wasm_as_int64s() -> None:
    runs = Runs([0, 2, 5, 7, 9, 10, 20, 30, 40, 41])
    assert list(runs) == [(0, 2), (5, 7), (9, 10), (20, 30), (40, 41)]
    assert runs.gaps() == [3, 2, 10, 10] and runs.data_bytes() == 16 and runs.extent() == 41
    assert list(runs.merged([0, 1, 3])) == [(0, 10), (20, 41)]  # 0 and 1: a chain
    assert list(runs.merged([])) == list(runs) and list(runs.batch(1, 3)) == [(5, 7), (9, 10)]
    raw = runs.as_bytes()
    assert raw[:16] == (0).to_bytes(8, "little") + (2).to_bytes(8, "little")
    assert Runs.from_bytes(raw) == runs


@settings(max_examples=100, deadline=None)
@given(memories, st.integers(1, 20))
def test_segment_limit_merges_smallest_gaps(data: bytes, limit: int) -> None:
    runs = find_runs(memoryview(bytearray(data)))
    [segments] = lay_out([runs], limit)
    assert len(segments) <= max(limit, 1 if runs else 0)
    assert _covers(data, segments)


def _merged_by_definition(memories: list[list[tuple[int, int]]], limit: int) -> list[list[tuple[int, int]]]:
    """The `excess` smallest (gap, memory, index) triples, merged one by one."""
    excess = sum(map(len, memories)) - limit
    gaps = sorted(
        (runs[i + 1][0] - runs[i][1], k, i) for k, runs in enumerate(memories) for i in range(len(runs) - 1)
    )
    out = [list(runs) for runs in memories]
    for _, k, i in sorted(gaps[: max(excess, 0)], key=lambda g: (g[1], -g[2])):
        out[k][i : i + 2] = [(out[k][i][0], out[k][i + 1][1])]  # from the right: indices hold
    return out


# Runs apart by few distinct gap lengths: many ties for the merge to break.
tied_memories = st.lists(st.sampled_from([b"\1" + bytes(8), b"\2" + bytes(9), b"\3" + bytes(30)]),
                         max_size=40).map(b"".join)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(memories | tied_memories, min_size=1, max_size=3), st.integers(1, 60))
def test_segment_limit_merges_exactly_the_smallest_gaps(data: list[bytes], limit: int) -> None:
    runs = [find_runs(memoryview(bytearray(d))) for d in data]  # small: nothing to densify
    merged = _merged_by_definition([list(r) for r in runs], limit)
    assert [list(r) for r in lay_out(runs, limit)] == merged


# Offsets and lengths on either side of every LEB byte boundary, including i32 offsets from
# 2 GiB up (encoded as negative numbers).
_edges = [1 << bits for bits in range(6, 35, 7)] + [(1 << 32) - (1 << bits) for bits in range(6, 32, 7)]
_points = st.one_of(
    st.integers(0, 1 << 33), st.sampled_from(_edges).flatmap(lambda e: st.integers(e - 2, e + 2))
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_points, max_size=40), st.sampled_from([0, 1, 300]), st.booleans())
def test_segments_size_is_the_encoded_size(points: list[int], memory: int, is64: bool) -> None:
    bounds = sorted({p for p in points if is64 or p <= 1 << 32})
    runs = Runs(bounds[: len(bounds) // 2 * 2])
    encoded = sum(len(segment_header(memory, s, e - s, is64)) + e - s for s, e in runs)
    assert segments_size(memory, runs, is64) == encoded


@settings(max_examples=100, deadline=None)
@given(memories, st.integers(1, 300))
def test_runs_found_chunk_by_chunk_are_the_runs_of_the_whole(data: bytes, chunk: int) -> None:
    whole = find_runs(memoryview(bytearray(data)))
    with mock.patch("hatch_wizer.module.layout.SCAN_CHUNK", chunk):
        assert find_runs(memoryview(bytearray(data))) == whole


def test_budget_estimate_keeps_about_the_budget() -> None:
    data = bytearray(8 << 20)
    rng = random.Random(1)
    i = 0
    while i < len(data):  # gaps of 8 to 40 bytes: ~350,000 runs at the exact cost
        data[i] = 7
        i += rng.randrange(9, 41)
    runs = find_runs(memoryview(data), budget=10_000)
    assert 1_000 < len(runs) <= 10_000 * 1.2
    assert _covers(bytes(data), runs)


def test_sparse_memory_stays_as_small_segments() -> None:
    data = bytearray(64 << 20)
    for i in range(0, len(data), 1 << 20):
        data[i] = 1
    [segments] = lay_out([find_runs(memoryview(data))], 100_000)
    assert len(segments) == 64 and sum(end - start for start, end in segments) == 64


def test_mostly_dense_memory_is_made_copy_on_write_friendly() -> None:
    data = bytearray(DENSE_IMAGE_SIZE * 2)
    for i in range(0, len(data), 64 << 10):
        data[i : i + 20_000] = b"\xff" * 20_000  # 30% data, spread over the whole memory
    [segments] = lay_out([find_runs(memoryview(data))], 100_000)
    covered = sum(end - start for start, end in segments)
    assert 2 * covered >= segments.extent()


@settings(max_examples=80, deadline=None)
@given(memories, st.integers(5, 40), st.booleans(), st.booleans())
def test_wasm_scanner_finds_the_same_runs_as_python(
    data: bytes, split: int, is64: bool, simd: bool
) -> None:
    wasm, python = _wasm_and_python_scans(data, split, is64, simd)
    assert wasm == python


@pytest.mark.parametrize("split", [5, 6, 7, 8])
def test_wasm_scanner_splits_gaps_inside_a_word_by_their_length(split: int) -> None:
    # Gaps of 3-9 zeros at every position of the 8 bytes the scanner reads at once.
    data = b"".join(
        b"\1" * lead + bytes(gap) + b"\1" + bytes(64) for lead in range(1, 17) for gap in range(3, 10)
    )
    wasm, python = _wasm_and_python_scans(data, split, is64=False, simd=False)
    assert wasm == python


@pytest.mark.parametrize("end_of_memory", [False, True])
def test_wasm_scanner_stops_long_non_zero_runs_at_a_zero_or_the_end(end_of_memory: bool) -> None:
    # Runs of 1-150 non-zero bytes, so that one ends at every position of the scanner's 16- and
    # 64-byte reads, each followed by 1-9 zeros (and, where asked, a last run up to the end).
    data = b"".join(b"\1" * n + bytes(1 + n % 9) for n in range(1, 151))
    if end_of_memory:
        data = bytes(65536 - len(data) - 100) + data + b"\2" * 100
    for split in (5, 8):
        wasm, python = _wasm_and_python_scans(data, split, is64=False, simd=True)
        assert wasm == python
        if end_of_memory:
            assert wasm.bounds[-1] == len(data)


def _wasm_and_python_scans(data: bytes, split: int, is64: bool, simd: bool) -> tuple[Runs, Runs]:
    """The runs the instrumented module's scanner finds, and those the Python scan finds."""
    import wasmtime

    from hatch_wizer import instrument
    from hatch_wizer.engine.runtime import Runtime
    from hatch_wizer.options import Features, WizenOptions

    pages = max(1, -(-len(data) // 65536))
    wat = f'(module (memory (export "m") {"i64 " if is64 else ""}{pages}) (func (export "wizer-initialize")))'
    options = WizenOptions(cache=False, features=Features(simd=simd))
    context, instrumented = instrument(bytes(wasmtime.wat2wasm(wat)), options)
    runtime = Runtime(options)
    state = runtime.initialize(context, runtime.compile(instrumented))
    state.export("m").write(state.store, data, 0)
    memory = bytes(state.memory(context.memories[0]))
    buf = ctypes.create_string_buffer(memory, len(memory))
    python = _scan(ctypes.addressof(buf), 0, len(memory), split, by_find=True)
    return state.scan_runs(context.scanners[0], 0, len(memory), split), python
