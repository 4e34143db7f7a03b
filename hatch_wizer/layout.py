"""Find a memory's non-zero regions and lay them out as data segments of least encoded size.

The scan runs at memory speed on a zero-copy view: libc `memcmp` skips all-zero pages, and only
runs of non-zero pages are copied out and split with `bytes.find`. Splits are chosen by their
real encoded cost (flag, offset expression, length), then the smallest gaps are merged while
the module holds more segments than engines accept, and while a memory is too sparse for
wasmtime to map it copy-on-write but could cheaply be made dense enough.
"""

from __future__ import annotations

import ctypes
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["Segment", "data_segment_overhead", "find_runs", "lay_out"]

SCAN_PAGE: Final = 64 * 1024
# Below this many zero bytes a split never pays: a segment costs at least 5 bytes
# (flag, const opcode, 1-byte offset, end, 1-byte length).
MIN_SPLIT_GAP: Final = 5
# wasmtime maps a memory image copy-on-write when its data covers at least half of its extent
# or the extent is at most this size (`memory_guaranteed_dense_image_size`).
DENSE_IMAGE_SIZE: Final = 16 * 1024 * 1024

_ZERO_PAGE: Final = bytes(SCAN_PAGE)
_Z4K: Final = bytes(4096)
_Z256: Final = bytes(256)
_Z16: Final = bytes(16)
_ZSPLIT: Final = bytes(MIN_SPLIT_GAP)

_libc = ctypes.CDLL(None)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_ZERO_PAGE_ADDR: Final = ctypes.cast(ctypes.c_char_p(_ZERO_PAGE), ctypes.c_void_p).value


@dataclass(frozen=True)
class Segment:
    """A byte range `[start, end)` of one memory that becomes an active data segment."""

    memory: int
    start: int
    end: int


def _sleb_len(value: int) -> int:
    n = 1
    while not -64 <= value < 64:
        value >>= 7
        n += 1
    return n


def _uleb_len(value: int) -> int:
    n = 1
    while value >= 0x80:
        value >>= 7
        n += 1
    return n


def data_segment_overhead(memory: int, start: int, length: int, is64: bool) -> int:
    """Bytes an active data segment takes besides its data."""
    # An i32.const offset is a signed 32-bit immediate, so offsets of 2 GiB and up are negative.
    offset = start if is64 or start < 1 << 31 else start - (1 << 32)
    flag_and_index = 1 if memory == 0 else 1 + _uleb_len(memory)
    return flag_and_index + 1 + _sleb_len(offset) + 1 + _uleb_len(length)


def _address(view: memoryview) -> tuple[int, object]:
    """A raw address for the view's bytes, and the object that keeps it alive."""
    if view.readonly:
        view = memoryview(bytearray(view))  # only for foreign runtimes handing us read-only data
    holder = (ctypes.c_char * view.nbytes).from_buffer(view)
    return ctypes.addressof(holder), holder


def _nonzero_page_runs(address: int, size: int) -> Iterator[tuple[int, int]]:
    """Maximal runs `[start, end)` of 64 KiB pages that hold a non-zero byte."""
    run_start = -1
    for offset in range(0, size, SCAN_PAGE):
        length = min(SCAN_PAGE, size - offset)
        if _memcmp(address + offset, _ZERO_PAGE_ADDR, length) != 0:
            if run_start < 0:
                run_start = offset
        elif run_start >= 0:
            yield run_start, offset
            run_start = -1
    if run_start >= 0:
        yield run_start, size


def _next_nonzero(chunk: bytes, pos: int) -> int:
    """The first non-zero byte at or after `pos` (or len(chunk)), at memcmp speed."""
    n = len(chunk)
    while chunk.startswith(_Z4K, pos):
        pos += 4096
    while chunk.startswith(_Z256, pos):
        pos += 256
    while chunk.startswith(_Z16, pos):
        pos += 16
    tail = chunk[pos : pos + 16]
    return min(n, pos + len(tail) - len(tail.lstrip(b"\0")))


def find_runs(view: memoryview) -> list[tuple[int, int]]:
    """Non-zero runs of the memory, split only at gaps of at least MIN_SPLIT_GAP zero bytes."""
    address, _keep = _address(view)
    runs = []
    for page_start, page_end in _nonzero_page_runs(address, view.nbytes):
        chunk = ctypes.string_at(address + page_start, page_end - page_start)
        pos = _next_nonzero(chunk, 0)
        while pos < len(chunk):
            end = chunk.find(_ZSPLIT, pos)
            if end < 0:
                end = len(chunk)
            runs.append((page_start + pos, page_start + end))
            pos = _next_nonzero(chunk, end)
    return runs


@dataclass
class _Memory:
    index: int
    is64: bool
    runs: list[tuple[int, int]]


def _merge_cheap_gaps(memory: int, runs: list[tuple[int, int]], is64: bool) -> list[list[int]]:
    """Greedily join neighbours whenever one segment encodes smaller than two."""
    merged: list[list[int]] = []
    for start, end in runs:
        if merged:
            last = merged[-1]
            split = (
                data_segment_overhead(memory, last[0], last[1] - last[0], is64)
                + data_segment_overhead(memory, start, end - start, is64)
                + (last[1] - last[0])
                + (end - start)
            )
            joined = data_segment_overhead(memory, last[0], end - last[0], is64) + end - last[0]
            if joined <= split:
                last[1] = end
                continue
        merged.append([start, end])
    return merged


def _merge_smallest_gaps(segments: list[list[int]], count: int, memories: list[int]) -> None:
    """Merge the `count` smallest gaps between same-memory neighbours (ties: lowest offset)."""
    gaps = [
        (segments[i + 1][0] - segments[i][1], memories[i], i)
        for i in range(len(segments) - 1)
        if memories[i] == memories[i + 1]
    ]
    chosen = sorted(i for _, _, i in heapq.nsmallest(count, gaps))
    for i in reversed(chosen):
        segments[i][1] = segments[i + 1][1]
        del segments[i + 1]
        del memories[i + 1]


def _dense_enough(segments: list[list[int]]) -> bool:
    if not segments:
        return True
    extent = segments[-1][1] - segments[0][0]
    data = sum(end - start for start, end in segments)
    return extent <= DENSE_IMAGE_SIZE or 2 * data >= extent


def _densify(segments: list[list[int]]) -> list[list[int]]:
    """Merge smallest gaps until wasmtime can map the memory copy-on-write, if that at most
    doubles the data; a sparse memory is cheaper as separate segments."""
    if _dense_enough(segments):
        return segments
    data = sum(end - start for start, end in segments)
    extent = segments[-1][1] - segments[0][0]
    needed_zeros = (extent + 1) // 2 - data
    if needed_zeros > data:
        return segments
    gaps = sorted((segments[i + 1][0] - segments[i][1], i) for i in range(len(segments) - 1))
    merge: set[int] = set()
    for gap, i in gaps:
        if needed_zeros <= 0:
            break
        merge.add(i)
        needed_zeros -= gap
    out = [list(segments[0])]
    for i in range(1, len(segments)):
        if i - 1 in merge:
            out[-1][1] = segments[i][1]
        else:
            out.append(list(segments[i]))
    return out


def lay_out(memories: list[tuple[int, bool, list[tuple[int, int]]]], limit: int) -> list[Segment]:
    """Segments for every memory's runs, `(memory, is64, runs)`, at most `limit` in all."""
    segments: list[list[int]] = []
    owners: list[int] = []
    for memory, is64, runs in memories:
        merged = _densify(_merge_cheap_gaps(memory, runs, is64))
        segments.extend(merged)
        owners.extend([memory] * len(merged))
    excess = len(segments) - max(limit, 0)
    if excess > 0:
        _merge_smallest_gaps(segments, excess, owners)
    return [Segment(m, s, e) for m, (s, e) in zip(owners, segments)]
