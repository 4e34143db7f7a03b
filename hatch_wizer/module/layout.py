"""Find a memory's non-zero regions and lay them out as data segments of least encoded size.

The scan runs at memory speed on a zero-copy view: libc `memcmp` skips all-zero pages, and only
runs of non-zero pages are copied out and split with `bytes.find`, one Python step per
segment. Splits are chosen by their real encoded cost (flag, offset expression, length); then
the smallest gaps are merged while a memory is too sparse for wasmtime to map it copy-on-write
but could cheaply be made dense enough, and while the module holds more segments than engines
accept.
"""

from __future__ import annotations

import bisect
import ctypes
import heapq
import itertools
import operator
from collections.abc import Callable, Iterator
from functools import partial
from typing import Final

from ..wasm.binary import offset_expr, uleb

__all__ = [
    "Run",
    "data_bytes",
    "data_segment_overhead",
    "find_runs",
    "lay_out",
    "segment_header",
    "segments_size",
    "write_segments",
]

SCAN_PAGE: Final = 64 * 1024
SMALL_PAGE: Final = 4096
# Below this many zero bytes a split never pays: a segment costs at least 5 bytes
# (flag, const opcode, 1-byte offset, end, 1-byte length).
MIN_SPLIT_GAP: Final = 5
# wasmtime maps a memory image copy-on-write when its data covers at least half of its extent
# or the extent is at most this size (`memory_guaranteed_dense_image_size`).
DENSE_IMAGE_SIZE: Final = 16 * 1024 * 1024

# Chunks with fewer zero bytes than this fraction are split in C (see `_split_runs`).
DENSE_ZEROS: Final = 0.75
# Pages sampled to estimate how long a gap must be to fit a segment budget.
SAMPLE_PAGES: Final = 32
# The Python scan copies the bytes it scans, this many at a time: not a dense memory whole.
SCAN_CHUNK: Final = 16 << 20

_ZERO_PAGE: Final = bytes(SCAN_PAGE)
_ZERO_BLOCKS: Final = tuple(bytes(1 << k) for k in range(15, 3, -1))

_libc = ctypes.CDLL(None)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_ZERO_PAGE_ADDR: Final = ctypes.cast(ctypes.c_char_p(_ZERO_PAGE), ctypes.c_void_p).value


# A byte range `[start, end)` of a memory: one run of non-zero data, one data segment.
Run = tuple[int, int]
# Finds the runs of memory `[start, end)` split at gaps of at least `split` zero bytes.
Scan = Callable[[int, int, int], list[Run]]


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


def _nonzero_page_runs(address: int, size: int, fine: bool = True) -> Iterator[tuple[int, int]]:
    """Maximal runs `[start, end)` of 4 KiB pages (64 KiB unless `fine`) that hold a non-zero
    byte; all-zero 64 KiB pages are skipped with one comparison."""
    run_start = -1
    for big in range(0, size, SCAN_PAGE):
        if _memcmp(address + big, _ZERO_PAGE_ADDR, min(SCAN_PAGE, size - big)) == 0:
            if run_start >= 0:
                yield run_start, big
                run_start = -1
            continue
        if not fine:
            run_start = big if run_start < 0 else run_start
            continue
        for offset in range(big, min(big + SCAN_PAGE, size), SMALL_PAGE):
            if _memcmp(address + offset, _ZERO_PAGE_ADDR, min(SMALL_PAGE, size - offset)) != 0:
                if run_start < 0:
                    run_start = offset
            elif run_start >= 0:
                yield run_start, offset
                run_start = -1
    if run_start >= 0:
        yield run_start, size


def _next_nonzero(chunk: bytes, pos: int) -> int:
    """The first non-zero byte at or after `pos` (or len(chunk)), at memcmp speed."""
    piece = chunk[pos : pos + 32]
    rest = piece.lstrip(b"\0")
    if rest:  # the common case: a short gap
        return pos + len(piece) - len(rest)
    pos += len(piece)
    while chunk.startswith(_ZERO_PAGE, pos):
        pos += SCAN_PAGE
    # Halving blocks: after a block size fails, at most one block of each smaller size fits.
    for block in _ZERO_BLOCKS:
        if chunk.startswith(block, pos):
            pos += len(block)
    tail = chunk[pos : pos + 16]
    return min(len(chunk), pos + len(tail) - len(tail.lstrip(b"\0")))


def _scan(
    address: int, start: int, end: int, split: int, *, by_find: bool = False
) -> list[Run]:
    """Runs in memory `[start, end)` separated by at least `split` zero bytes."""
    chunk = ctypes.string_at(address + start, end - start)
    if not by_find and chunk.count(0) < len(chunk) * DENSE_ZEROS:
        return _split_runs(chunk, start, split)
    zeros = bytes(split)
    runs = []
    pos = _next_nonzero(chunk, 0)
    while pos < len(chunk):
        stop = chunk.find(zeros, pos)
        if stop < 0:  # the last run; drop the (fewer than `split`) zeros after it
            tail = chunk[-split:]
            stop = len(chunk) - len(tail) + len(tail.rstrip(b"\0"))
        runs.append((start + pos, start + stop))
        pos = _next_nonzero(chunk, stop + split)
    return runs


def _split_runs(chunk: bytes, start: int, split: int) -> list[Run]:
    """`_scan` for data with many runs: `bytes.split` finds the gaps in C, and the Python loop
    does one step per piece instead of several per run."""
    pieces = chunk.split(bytes(split))
    runs = []
    pos = start
    for piece in pieces:
        # A piece ends in a non-zero byte (the last may not), and starts with the zeros of a
        # gap that were no multiple of `split`.
        body = piece.lstrip(b"\0")
        if body:
            end = pos + len(piece)
            runs.append((end - len(body), end))
        pos += len(piece) + split
    if runs and runs[-1][1] == start + len(chunk):
        last_start, last_end = runs[-1]
        runs[-1] = (last_start, last_end - (len(chunk) - len(chunk.rstrip(b"\0"))))
    return runs


def _threshold_for(scan: Scan, pages: list[int], size: int, split: int, budget: int) -> int:
    """The least gap worth splitting that leaves about `budget` runs, estimated on a sample of
    pages: finding a million runs only to merge most of them back costs seconds."""
    step = max(1, len(pages) // SAMPLE_PAGES)
    gaps: list[int] = []
    for page in pages[::step]:
        runs = scan(page, min(page + SCAN_PAGE, size), split)
        gaps += _gaps(runs)
    allowed = int(0.9 * budget / step)
    if len(gaps) <= allowed:
        return split
    gaps.sort(reverse=True)
    edge = gaps[allowed]
    # Splitting at the edge length too overshoots the budget by the gaps tied with it; when
    # that stays moderate, let the exact smallest-gap merge in `lay_out` pick among them.
    with_ties = sum(1 for gap in gaps if gap >= edge)
    if with_ties * step <= 4 * budget:
        return max(split, edge)
    return max(split, edge + 1)


def find_runs(
    view: memoryview,
    memory: int = 0,
    is64: bool = False,
    budget: int | None = None,
    scanner: Scan | None = None,
) -> list[Run]:
    """Non-zero runs of the memory, joined across every gap too short to pay for a segment.

    A gap is split when it is at least as long as the header of the segment that would follow
    it (priced at the memory's end, so at most 2 bytes off the exact cost at lower offsets).
    With a `budget` of segments, gaps are split only from a length that keeps about that many.
    A `scanner(start, end, split)` that finds runs in compiled code (`scanner.py`) does the
    scanning where Python would step through many runs.
    """
    address, _keep = _address(view)
    # Finer pages save Python work on sparse data, but a scanner skips zeros faster than that.
    page_runs = list(_nonzero_page_runs(address, view.nbytes, fine=scanner is None))
    scan = scanner or partial(_scan, address)
    split = max(MIN_SPLIT_GAP, data_segment_overhead(memory, view.nbytes, 1, is64))
    if budget is not None:
        pages = [p for start, end in page_runs for p in range(start, end, SCAN_PAGE)]
        split = _threshold_for(scan, pages, view.nbytes, split, budget)
    if scanner is not None and page_runs:
        # One call over the whole extent: each call into wasm costs more than skipping zeros.
        return scanner(page_runs[0][0], page_runs[-1][1], split)
    runs: list[Run] = []
    for start, end in page_runs:
        for chunk in range(start, end, SCAN_CHUNK):
            more = _scan(address, chunk, min(chunk + SCAN_CHUNK, end), split)
            if runs and more and more[0][0] - runs[-1][1] < split:  # a run the chunks cut
                runs[-1] = (runs[-1][0], more.pop(0)[1])
            runs += more
    return runs


def _merge_gaps(segments: list[Run], chosen: list[int]) -> list[Run]:
    """Join segment i with segment i + 1 for every i in `chosen` (ascending): slices copy the
    segments in between, so the Python steps are one per merge."""
    out: list[Run] = []
    taken = 0  # segments[:taken] are in `out`
    for i in chosen:
        if i < taken:  # a chain: segment i is already the end of out[-1]
            out[-1] = (out[-1][0], segments[i + 1][1])
        else:
            out += segments[taken:i]
            out.append((segments[i][0], segments[i + 1][1]))
        taken = i + 2
    out += segments[taken:]
    return out


def _gaps(segments: list[Run]) -> list[int]:
    """Zero bytes between each segment and the next (map over itemgetters: no Python step)."""
    starts = map(operator.itemgetter(0), segments[1:])
    return list(map(operator.sub, starts, map(operator.itemgetter(1), segments)))


def data_bytes(runs: list[Run]) -> int:
    """The bytes the runs cover (map over itemgetters: no Python step per run)."""
    ends, starts = map(operator.itemgetter(1), runs), map(operator.itemgetter(0), runs)
    return sum(map(operator.sub, ends, starts))


def _dense_enough(segments: list[Run]) -> bool:
    if not segments:
        return True
    extent = segments[-1][1] - segments[0][0]
    return extent <= DENSE_IMAGE_SIZE or 2 * data_bytes(segments) >= extent


def _densify(segments: list[Run]) -> list[Run]:
    """Merge smallest gaps until wasmtime can map the memory copy-on-write, if that at most
    doubles the data; a sparse memory is cheaper as separate segments."""
    if _dense_enough(segments):
        return segments
    data = data_bytes(segments)
    needed_zeros = (segments[-1][1] - segments[0][0] + 1) // 2 - data
    if needed_zeros > data:
        return segments
    chosen = []
    for gap, i in sorted(zip(_gaps(segments), itertools.count())):
        if needed_zeros <= 0:
            break
        chosen.append(i)
        needed_zeros -= gap
    return _merge_gaps(segments, sorted(chosen))


def lay_out(memories: list[list[Run]], limit: int) -> list[list[Run]]:
    """The data segments of every memory, from its runs; at most `limit` in all."""
    per_memory = [_densify(runs) for runs in memories]
    excess = sum(map(len, per_memory)) - max(limit, 0)
    # Merge the `excess` smallest gaps of all memories (ties: lowest memory, then offset):
    # every gap below the edge length, and the first gaps of the edge length.
    gaps = [_gaps(runs) for runs in per_memory] if excess > 0 else []
    smallest = heapq.nsmallest(max(excess, 0), itertools.chain.from_iterable(gaps))
    if not smallest:
        return per_memory  # within the limit, or nothing left to merge
    edge, ties = smallest[-1], smallest.count(smallest[-1])
    merged = []
    for runs, mine in zip(per_memory, gaps):
        indices = range(len(mine))
        tied = list(itertools.islice(itertools.compress(indices, map(edge.__eq__, mine)), ties))
        ties -= len(tied)
        below = itertools.compress(indices, map(edge.__gt__, mine))
        merged.append(_merge_gaps(runs, sorted([*below, *tied])))
    return merged


def segment_header(memory: int, start: int, length: int, is64: bool) -> bytes:
    """An active data segment of `memory` up to its data: flag, offset expression, length."""
    head = b"\x00" if memory == 0 else b"\x02" + uleb(memory)
    return head + offset_expr(start, is64) + uleb(length)


def write_segments(
    memory: int, runs: list[Run], view: memoryview, is64: bool, out: memoryview
) -> int:
    """Write the active data segments of `memory` (whose bytes `view` shows) for `runs` to the
    start of `out`; their size."""
    pos = 0
    for start, end in runs:
        header = segment_header(memory, start, end - start, is64)
        out[pos : pos + len(header)] = header
        pos += len(header)
        out[pos : pos + end - start] = view[start:end]
        pos += end - start
    return pos


def segments_size(memory: int, runs: list[Run], is64: bool) -> int:
    """The bytes `write_segments` writes for `runs` (in order), without encoding them: C-level
    passes count the LEB bytes of the lengths, bisection those of the offsets."""
    lengths: list[int] = list(map(operator.sub, map(_end, runs), map(_start, runs)))
    length_bytes = bytes(map(int.bit_length, lengths)).translate(_ULEB_BYTES)
    fixed = (1 if memory == 0 else 1 + _uleb_len(memory)) + 2  # flag (and index), const, end
    total = len(runs) * fixed + sum(lengths) + _sleb_offsets_size(runs, is64)
    return total + sum(n * length_bytes.count(n) for n in range(1, 11))


_start, _end = operator.itemgetter(0), operator.itemgetter(1)
# An unsigned LEB's bytes, by the bit length of its value.
_ULEB_BYTES: Final = bytes(max(1, -(-bits // 7)) for bits in range(256))


def _sleb_offsets_size(runs: list[Run], is64: bool) -> int:
    """The bytes of the signed LEBs of the runs' offsets (see `offset_expr`)."""
    count = len(runs)
    # A signed LEB takes one byte, plus one for each of 2^6, 2^13, ... it is at or above (for
    # a negative value: each of -2^6, -2^13, ... it is below). i32 offsets from 2 GiB up are
    # negative numbers. Runs are in order, so bisection finds how many pass each bound.
    negative = count if is64 else bisect.bisect_left(runs, 1 << 31, key=_start)
    total = count
    for bits in range(6, 63, 7):
        total += negative - bisect.bisect_left(runs, 1 << bits, 0, negative, key=_start)
        below = bisect.bisect_left(runs, (1 << 32) - (1 << bits), negative, count, key=_start)
        total += below - negative
    return total
