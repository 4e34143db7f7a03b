"""Read an initialized instance's state through a small runtime-neutral interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol

from ..errors import InitError, UnsupportedModule
from .instrumentation import ModuleContext
from .layout import data_bytes, encode_segments, find_runs, lay_out
from .scanner import DUMPABLE

__all__ = [
    "MAX_DATA_BYTES",
    "InstanceState",
    "Ref",
    "Snapshot",
    "TableState",
    "read_globals",
    "take_snapshot",
]

# Web engines refuse modules over 1 GiB (V8's limit, shared by others); a bigger snapshot also
# could not be built without holding several copies of it in memory.
MAX_DATA_BYTES: Final = 1 << 30

# A reference value: a function index, or None for null.
Ref = int | None


@dataclass(frozen=True)
class TableState:
    """A table after init: its size and the slots whose entry differs from instantiation."""

    size: int
    changed: dict[int, Ref] = field(default_factory=dict)


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


@dataclass(frozen=True)
class Snapshot:
    globals: dict[int, int | None]  # global index -> raw bits or Ref
    memory_pages: tuple[int, ...]
    data: tuple[bytes, ...]  # the new active data segments, encoded, as pieces to join
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


def take_snapshot(context: ModuleContext, state: InstanceState) -> Snapshot:
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
    data = sum(map(data_bytes, segments))
    if data > MAX_DATA_BYTES:
        raise UnsupportedModule(
            f"the snapshot would hold {data / 2**30:.2f} GiB of memory data, more than the "
            f"{MAX_DATA_BYTES // 2**30} GiB engines accept in a module"
        )
    encoded: list[bytes] = []
    for i, (name, limits, mine) in enumerate(zip(context.memories, module.memories, segments)):
        if mine and context.encoders and hasattr(state, "encode_segments"):
            encoded.append(state.encode_segments(context.encoders[i], mine))
        elif mine:
            encoded += encode_segments(first + i, mine, state.memory(name), limits.is64)

    dropped_data = frozenset(i for i, probe in context.data_probes if state.segment_dropped(probe))
    dropped_elems = frozenset(i for i, probe in context.elem_probes if state.segment_dropped(probe))
    return Snapshot(
        globals_, tuple(pages), tuple(encoded), count, tables, dropped_data, dropped_elems
    )
