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
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Final

from ..wasm.binary import offset_expr, uleb

__all__ = [
    "Runs",
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


class Runs:
    """Byte ranges `[start, end)` of a memory, ascending and apart: runs of non-zero data, one
    data segment each.

    They are held flat, `start, end, start, end, ...`, in one array of int64 (`bounds`): a
    snapshot has some 100,000 runs, and this is the form the wasm scanner writes and the wasm
    encoder reads (`as_bytes`), so that no Python object is made per run on that path.
    Runs are not changed once made (operations make new ones).
    """

    __slots__ = ("_data_bytes", "bounds")

    def __init__(self, bounds: Iterable[int] = ()) -> None:
        self.bounds = bounds if isinstance(bounds, array) else array("q", bounds)
        self._data_bytes: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> Runs:
        """Runs from the bounds as little-endian int64s (as wasm stores them)."""
        bounds = array("q")
        bounds.frombytes(raw)
        if sys.byteorder == "big":
            bounds.byteswap()
        return cls(bounds)

    def as_bytes(self) -> bytes:
        """The bounds as little-endian int64s (as wasm loads them)."""
        if sys.byteorder == "big":
            swapped = array("q", self.bounds)
            swapped.byteswap()
            return swapped.tobytes()
        return self.bounds.tobytes()

    def __len__(self) -> int:
        return len(self.bounds) // 2

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Each run as `(start, end)` (a Python step per run: not for the scanner's path)."""
        bounds = iter(self.bounds)
        return zip(bounds, bounds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Runs) and self.bounds == other.bounds

    def __repr__(self) -> str:
        return f"Runs({list(self)})"

    @property
    def starts(self) -> array[int]:
        return self.bounds[0::2]

    @property
    def ends(self) -> array[int]:
        return self.bounds[1::2]

    def extent(self) -> int:
        """Bytes from the first run's start to the last one's end."""
        return self.bounds[-1] - self.bounds[0] if self.bounds else 0

    def batch(self, first: int, stop: int) -> Runs:
        """Runs `first` up to (not including) `stop`."""
        return Runs(self.bounds[2 * first : 2 * stop])

    def gaps(self) -> list[int]:
        """Zero bytes between each run and the next."""
        return list(map(operator.sub, self.bounds[2::2], self.bounds[1:-1:2]))

    def data_bytes(self) -> int:
        """The bytes the runs cover (a pass over every run: done once, layout and snapshot
        both ask)."""
        if self._data_bytes is None:
            self._data_bytes = sum(self.bounds[1::2]) - sum(self.bounds[0::2])
        return self._data_bytes

    def merged(self, chosen: Iterable[int]) -> Runs:
        """Run i joined with run i + 1 for every gap i in `chosen` (ascending): joining drops
        bounds 2i + 1 and 2i + 2 (the end before the gap, the start after it), and slices copy
        the bounds in between, so the Python steps are one per merge."""
        out = array("q")
        taken = 0  # bounds[:taken] are in `out`, or dropped
        for i in chosen:
            out += self.bounds[taken : 2 * i + 1]
            taken = 2 * i + 3
        out += self.bounds[taken:]
        return Runs(out)


# Finds the runs of memory `[start, end)` split at gaps of at least `split` zero bytes.
Scan = Callable[[int, int, int], Runs]


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


def _scan(address: int, start: int, end: int, split: int, *, by_find: bool = False) -> Runs:
    """Runs in memory `[start, end)` separated by at least `split` zero bytes."""
    chunk = ctypes.string_at(address + start, end - start)
    if not by_find and chunk.count(0) < len(chunk) * DENSE_ZEROS:
        return _split_runs(chunk, start, split)
    zeros = bytes(split)
    bounds = array("q")
    pos = _next_nonzero(chunk, 0)
    while pos < len(chunk):
        stop = chunk.find(zeros, pos)
        if stop < 0:  # the last run; drop the (fewer than `split`) zeros after it
            tail = chunk[-split:]
            stop = len(chunk) - len(tail) + len(tail.rstrip(b"\0"))
        bounds.append(start + pos)
        bounds.append(start + stop)
        pos = _next_nonzero(chunk, stop + split)
    return Runs(bounds)


def _split_runs(chunk: bytes, start: int, split: int) -> Runs:
    """`_scan` for data with many runs: `bytes.split` finds the gaps in C, and the Python loop
    does one step per piece instead of several per run."""
    pieces = chunk.split(bytes(split))
    bounds = array("q")
    pos = start
    for piece in pieces:
        # A piece ends in a non-zero byte (the last may not), and starts with the zeros of a
        # gap that were no multiple of `split`.
        body = piece.lstrip(b"\0")
        if body:
            end = pos + len(piece)
            bounds.append(end - len(body))
            bounds.append(end)
        pos += len(piece) + split
    if bounds and bounds[-1] == start + len(chunk):  # drop the zeros after the last run
        bounds[-1] -= len(chunk) - len(chunk.rstrip(b"\0"))
    return Runs(bounds)


def _threshold_for(scan: Scan, pages: list[int], size: int, split: int, budget: int) -> int:
    """The least gap worth splitting that leaves about `budget` runs, estimated on a sample of
    pages: finding a million runs only to merge most of them back costs seconds."""
    step = max(1, len(pages) // SAMPLE_PAGES)
    gaps: list[int] = []
    for page in pages[::step]:
        gaps += scan(page, min(page + SCAN_PAGE, size), split).gaps()
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
) -> Runs:
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
    bounds = array("q")
    for start, end in page_runs:
        for chunk in range(start, end, SCAN_CHUNK):
            more = _scan(address, chunk, min(chunk + SCAN_CHUNK, end), split).bounds
            if bounds and more and more[0] - bounds[-1] < split:  # a run the chunks cut:
                del bounds[-1]  # join its halves (drop the end before the cut, the start after)
                more = more[1:]
            bounds += more
    return Runs(bounds)


def _dense_enough(segments: Runs) -> bool:
    extent = segments.extent()
    return extent <= DENSE_IMAGE_SIZE or 2 * segments.data_bytes() >= extent


def _densify(segments: Runs) -> Runs:
    """Merge smallest gaps until wasmtime can map the memory copy-on-write, if that at most
    doubles the data; a sparse memory is cheaper as separate segments."""
    if _dense_enough(segments):
        return segments
    data = segments.data_bytes()
    needed_zeros = (segments.extent() + 1) // 2 - data
    if needed_zeros > data:
        return segments
    chosen = []
    for gap, i in sorted(zip(segments.gaps(), itertools.count())):
        if needed_zeros <= 0:
            break
        chosen.append(i)
        needed_zeros -= gap
    return segments.merged(sorted(chosen))


def lay_out(memories: list[Runs], limit: int) -> list[Runs]:
    """The data segments of every memory, from its runs; at most `limit` in all."""
    per_memory = [_densify(runs) for runs in memories]
    excess = sum(map(len, per_memory)) - max(limit, 0)
    # Merge the `excess` smallest gaps of all memories (ties: lowest memory, then offset):
    # every gap below the edge length, and the first gaps of the edge length.
    gaps = [runs.gaps() for runs in per_memory] if excess > 0 else []
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
        merged.append(runs.merged(sorted([*below, *tied])))
    return merged


def segment_header(memory: int, start: int, length: int, is64: bool) -> bytes:
    """An active data segment of `memory` up to its data: flag, offset expression, length."""
    head = b"\x00" if memory == 0 else b"\x02" + uleb(memory)
    return head + offset_expr(start, is64) + uleb(length)


def write_segments(memory: int, runs: Runs, view: memoryview, is64: bool, out: memoryview) -> int:
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


def segments_size(memory: int, runs: Runs, is64: bool) -> int:
    """The bytes `write_segments` writes for `runs` (in order), without encoding them: C-level
    passes count the LEB bytes of the lengths, bisection those of the offsets."""
    starts = runs.starts
    lengths: list[int] = list(map(operator.sub, runs.ends, starts))
    length_bytes = bytes(map(int.bit_length, lengths)).translate(_ULEB_BYTES)
    fixed = (1 if memory == 0 else 1 + _uleb_len(memory)) + 2  # flag (and index), const, end
    total = len(runs) * fixed + sum(lengths) + _sleb_offsets_size(starts, is64)
    return total + sum(n * length_bytes.count(n) for n in range(1, 11))


# An unsigned LEB's bytes, by the bit length of its value.
_ULEB_BYTES: Final = bytes(max(1, -(-bits // 7)) for bits in range(256))


def _sleb_offsets_size(starts: array[int], is64: bool) -> int:
    """The bytes of the signed LEBs of the runs' offsets (see `offset_expr`)."""
    count = len(starts)
    # A signed LEB takes one byte, plus one for each of 2^6, 2^13, ... it is at or above (for
    # a negative value: each of -2^6, -2^13, ... it is below). i32 offsets from 2 GiB up are
    # negative numbers. Runs are in order, so bisection finds how many pass each bound.
    negative = count if is64 else bisect.bisect_left(starts, 1 << 31)
    total = count
    for bits in range(6, 63, 7):
        total += negative - bisect.bisect_left(starts, 1 << bits, 0, negative)
        below = bisect.bisect_left(starts, (1 << 32) - (1 << bits), negative, count)
        total += below - negative
    return total
