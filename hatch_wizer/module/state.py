"""Read an initialized instance's state through a small runtime-neutral interface."""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

import bisect
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Final, NamedTuple, Protocol, runtime_checkable

from ..errors import InitError, UnsupportedModule
from ..wasm.assemble import Piece, build
from .instrumentation import ModuleContext
from .layout import Runs, find_runs, lay_out, segment_header, segments_size, write_segments
from .scanner import DUMPABLE

__all__ = [
    "MAX_DATA_BYTES",
    "InstanceState",
    "Ref",
    "SegmentWriter",
    "Snapshot",
    "TableState",
    "read_globals",
    "take_snapshot",
]

# Web engines refuse modules over 1 GiB (V8's limit, shared by others).
MAX_DATA_BYTES: Final = 1 << 30

# Segments are encoded into the scratch memory and copied into the output in batches of about
# this much data, so that the scratch stays small; a longer run is copied straight from its
# memory, this much at a time.
BATCH_BYTES: Final = 16 << 20

# A reference value: a function index, or None for null.
Ref = int | None


# TableState and Snapshot are NamedTuples, not frozen dataclasses: each of those costs ~0.3 ms
# to create at import (a NamedTuple under 0.1 ms), and every cold CLI run imports this module.
class TableState(NamedTuple):
    """A table after init: its size and the slots whose entry differs from instantiation."""

    size: int
    changed: Mapping[int, Ref] = MappingProxyType({})


class InstanceState(Protocol):
    """What a runtime must answer about the instrumented instance after init ran.

    Names are the export names recorded in the ModuleContext. Function references are
    reported as function indices, found through the context's `funcs` exports.
    """

    def global_value(self, name: str, valtype: str) -> int | None:
        """Raw bits of a numeric global (v128 as a 128-bit int), or a Ref for a ref global."""
        ...

    def memory(self, name: str) -> memoryview:
        """The memory's current bytes, ideally without copying (valid until the next call)."""
        ...

    def table(self, name: str) -> TableState: ...

    def segment_dropped(self, probe: str) -> bool:
        """Call a probe export; True when it trapped, i.e. its segment was dropped."""
        ...


@runtime_checkable
class EncodingState(Protocol):
    """A state that runs the encoder instrumentation adds (`scanner.py`) and can give memory
    back: its snapshot's data is written into the output only when that is assembled."""

    def memory(self, name: str) -> memoryview: ...

    def encode_into(self, encoder: str, runs: Runs, out: memoryview) -> int:
        """Write the active data segments of `runs` to the start of `out`; their size."""
        ...

    def release(self, name: str, start: int, end: int) -> None:
        """Give the memory's pages within `[start, end)` back to the system (they read zero
        after)."""
        ...


class SegmentWriter:
    """One memory's new active data segments, encoded straight into the output: the data is
    copied once (memory to output, in batches through the encoder's small scratch when there
    is one), not into a whole-memory scratch, out of it, and into a joined output.

    With `release`, the memory's pages go back to the system as soon as they are copied, so
    that a dense memory and its output are never both held in full; the instance then reads
    zeros there. It writes once."""

    def __init__(
        self, state: InstanceState, name: str, memory: int, is64: bool, runs: Runs,
        encoder: str | None = None, release: bool = False,
    ) -> None:  # fmt: skip
        self.state, self.name, self.memory, self.is64, self.runs = state, name, memory, is64, runs
        self.engine = state if isinstance(state, EncodingState) else None
        self.encoder = encoder if self.engine else None
        self.release = release and self.engine is not None
        self.nbytes = segments_size(memory, runs, is64)

    def write_into(self, out: memoryview) -> None:
        runs, view = self.runs, self.state.memory(self.name)
        starts, ends = runs.starts, runs.ends
        pos = i = 0
        while i < len(runs):
            # A batch: the runs that end within BATCH_BYTES of the first one's start.
            j = bisect.bisect_right(ends, starts[i] + BATCH_BYTES, i)
            if j > i:
                written = self._encode(runs.batch(i, j), view, out[pos:])
                pos += written
                # Only where it frees much: releasing costs per page mapped, zero or not.
                if 4 * written >= BATCH_BYTES:
                    self._copied(starts[i], ends[j - 1])
                i = j
                continue
            start, end = starts[i], ends[i]  # longer than a batch
            header = segment_header(self.memory, start, end - start, self.is64)
            out[pos : pos + len(header)] = header
            pos += len(header)
            for chunk in range(start, end, BATCH_BYTES):
                stop = min(chunk + BATCH_BYTES, end)
                out[pos : pos + stop - chunk] = view[chunk:stop]
                pos += stop - chunk
                self._copied(chunk, stop)
            i += 1
        if pos != self.nbytes:
            raise RuntimeError(
                f"memory {self.memory}'s data segments took {pos} bytes, not {self.nbytes} (a bug)"
            )

    def _encode(self, runs: Runs, view: memoryview, out: memoryview) -> int:
        if self.engine and self.encoder:
            return self.engine.encode_into(self.encoder, runs, out)
        return write_segments(self.memory, runs, view, self.is64, out)

    def _copied(self, start: int, end: int) -> None:
        if self.engine and self.release:
            self.engine.release(self.name, start, end)


class Snapshot(NamedTuple):
    globals: dict[int, int | None]  # global index -> raw bits or Ref
    memory_pages: tuple[int, ...]
    # The new active data segments, as pieces of the data section: encoded bytes, or writers
    # that encode them into the output in place.
    data: tuple[Piece, ...]
    data_count: int
    tables: tuple[TableState, ...]
    dropped_data: frozenset[int]
    dropped_elems: frozenset[int]


def read_globals(context: ModuleContext, state: InstanceState) -> dict[int, int | None]:
    """Every mutable global's raw bits (or Ref): the numeric ones in one call of the added
    dump where the runtime offers it, the rest through their exports."""
    globals_: dict[int, int | None] = {}
    if context.globals_dump and hasattr(state, "dumped_globals"):
        dumpable = [
            (index, valtype) for index, valtype, _ in context.globals if valtype in DUMPABLE
        ]
        globals_.update(state.dumped_globals(context.globals_dump, dumpable))
    for index, valtype, name in context.globals:
        if index not in globals_:
            globals_[index] = state.global_value(name, valtype)
    return globals_


def take_snapshot(
    context: ModuleContext, state: InstanceState, *, release_memory: bool = False
) -> Snapshot:
    """The instance's state after init. The data refers to the live instance until the output
    is assembled; `release_memory` lets that free the memory's pages as they are copied."""
    module = context.module
    globals_ = read_globals(context, state)
    tables = tuple(state.table(name) for name in context.tables)

    limit = context.options.max_data_segments - len(module.data)
    first = module.imported_memories
    pages = []
    runs = []
    for i, (name, limits) in enumerate(zip(context.memories, module.memories)):
        view = state.memory(name)
        pages.append(view.nbytes // limits.page_size)
        scanner = None
        if context.scanners and hasattr(state, "scan_runs"):
            scanner = partial(state.scan_runs, context.scanners[i])
        runs.append(find_runs(view, first + i, limits.is64, limit, scanner))
    segments = lay_out(runs, limit)
    count = sum(map(len, segments))
    if count > limit:
        raise InitError(
            f"the memory needs {count} data segments but at most {max(limit, 0)} fit "
            f"(the module already has {len(module.data)})"
        )
    data = sum(runs.data_bytes() for runs in segments)
    if data > MAX_DATA_BYTES:
        raise UnsupportedModule(
            f"the snapshot would hold {data / 2**30:.2f} GiB of memory data, more than the "
            f"{MAX_DATA_BYTES // 2**30} GiB engines accept in a module"
        )
    encoded: list[Piece] = []
    for i, (name, limits, mine) in enumerate(zip(context.memories, module.memories, segments)):
        if not mine:
            continue
        encoder = context.encoders[i] if context.encoders else None
        release = release_memory and not limits.shared
        writer = SegmentWriter(state, name, first + i, limits.is64, mine, encoder, release)
        # Other runtimes' memory views last until their next call, and snapshots of the
        # instances of a component's module are compared: theirs are encoded at once.
        encoded.append(writer if writer.engine else build([writer]))

    dropped_data = frozenset(i for i, probe in context.data_probes if state.segment_dropped(probe))
    dropped_elems = frozenset(i for i, probe in context.elem_probes if state.segment_dropped(probe))
    return Snapshot(
        globals_, tuple(pages), tuple(encoded), count, tables, dropped_data, dropped_elems
    )
