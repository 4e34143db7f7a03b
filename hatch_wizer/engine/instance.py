"""The `InstanceState` of a live wasmtime instance: globals, memories and tables read back
through the instrumentation's exports (exact values and identities through `wasmtime_api`)."""

from __future__ import annotations

import ctypes
import mmap
import platform
from typing import TYPE_CHECKING, Any

import wasmtime

from ..errors import InitError
from ..module.instrumentation import ModuleContext
from ..module.layout import Runs
from ..module.scanner import GLOBAL_SLOT
from ..module.state import Ref, TableState
from .wasmtime_api import EXTERNREF, FUNCREF, export, func_identity, read_global, read_table

if TYPE_CHECKING:
    from .wasi import WasiHost  # imported only when init links WASI

__all__ = ["WasmtimeState"]


# Linux frees a private mapping's pages at once on MADV_DONTNEED (later reads give zeros).
# Elsewhere pages are not released (and `CDLL(None)`, the C library, may not even load).
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None) if platform.system() == "Linux" else None
if _MADV_DONTNEED is not None:
    _madvise = ctypes.CDLL(None).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int


def _address(store: wasmtime.Store, memory: wasmtime.Memory) -> int:
    """Where the memory's bytes start now (growing it may move them)."""
    return ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value or 0


class WasmtimeState:
    """The InstanceState of a live wasmtime instance."""

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance, context: ModuleContext):
        self.store = store
        self.instance = instance
        self.context = context
        self.wasi: WasiHost | None = None  # the clock and random calls init made
        self._func_indices: dict[int, int] | None = None
        # Tables as instantiation left them, before start or init could change them.
        self.initial_tables = {name: self._table_raw(name) for name in context.tables}

    def export(self, name: str) -> Any:
        """One export by name; `Instance.exports()` would cost time quadratic in their count."""
        item = export(self.store, self.instance, name)
        if item is None:
            raise InitError(f"the instance has no export `{name}`")
        return item

    def call(self, name: str) -> None:
        self.export(name)(self.store)

    def global_value(self, name: str, valtype: str) -> int | None:
        kind, value = read_global(self.store, self.export(name))
        if valtype in ("i32", "f32", "i64", "f64", "v128"):
            return value
        index = name.rsplit("_", 1)[1]
        return self._resolve((kind, value), f"global {index}")

    def memory(self, name: str) -> memoryview:
        memory = self.export(name)
        size = memory.data_len(self.store)
        address = _address(self.store, memory)
        return memoryview((ctypes.c_ubyte * size).from_address(address)).cast("B")

    def table(self, name: str) -> TableState:
        before = self.initial_tables[name]
        after = self._table_raw(name)
        ordinal = name.rsplit("_", 1)[1]
        changed = {}
        for slot, entry in enumerate(after):
            # Entries without a comparable identity (value -1) always count as changed.
            if slot >= len(before) or before[slot] != entry or entry[1] < 0:
                changed[slot] = self._resolve(entry, f"table {ordinal} slot {slot}")
        return TableState(len(after), changed)

    def dumped_globals(self, dump: str, globals_: list[tuple[int, str]]) -> dict[int, int]:
        """Raw bits of numeric globals, stored to the scratch memory by one added function."""
        self.call(dump)
        scratch = self.export(self.context.scratch or "")
        address = _address(self.store, scratch)
        raw = ctypes.string_at(address, GLOBAL_SLOT * len(globals_))
        size = {"i32": 4, "f32": 4, "i64": 8, "f64": 8, "v128": 16}
        return {
            index: int.from_bytes(raw[GLOBAL_SLOT * k : GLOBAL_SLOT * k + size[valtype]], "little")
            for k, (index, valtype) in enumerate(globals_)
        }

    def scan_runs(self, scanner: str, start: int, end: int, split: int) -> Runs:
        """Non-zero runs of `[start, end)`, found by the module's added scanner function (it
        stores their bounds in the scratch memory as int64s: start, end, start, end, ...)."""
        count = self.export(scanner)(self.store, start, end, split)
        scratch = self.export(self.context.scratch or "")
        address = _address(self.store, scratch)
        return Runs.from_bytes(memoryview((ctypes.c_char * (16 * count)).from_address(address)))

    def encode_into(self, encoder: str, runs: Runs, out: memoryview) -> int:
        """Write the active data segments for `runs` to the start of `out`, encoded by the
        module's added encoder in the scratch memory; their size."""
        scratch = self.export(self.context.scratch or "")
        pairs = runs.as_bytes()
        # The runs' extent bounds their data (and costs no pass over them); scratch pages past
        # the data are never touched. 20: the most a segment header takes.
        needed = len(pairs) + runs.extent() + 20 * len(runs)
        have = scratch.data_len(self.store)
        if needed > have:
            scratch.grow(self.store, -(-(needed - have) // 65536))
        scratch.write(self.store, pairs, 0)
        end = self.export(encoder)(self.store, len(runs), len(pairs))
        address = _address(self.store, scratch)
        size: int = end - len(pairs)
        encoded = (ctypes.c_ubyte * size).from_address(address + len(pairs))
        out[:size] = memoryview(encoded).cast("B")
        return size

    def release(self, name: str, start: int, end: int) -> None:
        """Give the whole pages of memory `name` within `[start, end)` back to the system:
        the snapshot has copied them. The instance reads zeros (or its initial image) there
        afterwards."""
        memory = self.export(name)
        base = _address(self.store, memory)
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = min(end, memory.data_len(self.store)) // mmap.PAGESIZE * mmap.PAGESIZE
        if _MADV_DONTNEED is not None and base % mmap.PAGESIZE == 0 and stop > first:
            _madvise(base + first, stop - first, _MADV_DONTNEED)

    def segment_dropped(self, probe: str) -> bool:
        try:
            self.call(probe)
        except wasmtime.Trap:
            return True
        return False

    def _table_raw(self, name: str) -> list[tuple[int, int]]:
        """Each entry as (kind, identity); identity 0 is null."""
        return read_table(self.store, self.export(name))

    def _resolve(self, identity: tuple[int, int], where: str) -> Ref:
        kind, value = identity
        if value == 0:
            return None
        if kind == FUNCREF:
            index = self._funcs().get(value)
            if index is None:
                raise InitError(
                    f"{where} holds a function that the module does not define or import "
                    "(a host function), which a snapshot cannot reproduce"
                )
            return index
        if kind == EXTERNREF:
            raise InitError(
                f"{where} holds a non-null externref (a host value), "
                "which a snapshot cannot reproduce"
            )
        raise InitError(f"{where} holds a GC reference, which a snapshot cannot reproduce")

    def _funcs(self) -> dict[int, int]:
        if self._func_indices is None:
            self._func_indices = {}
            # Tables as instantiated, then exports: the lowest index wins when several
            # functions are one (an import re-exported, say).
            for slots, name in zip(self.context.initial_slots, self.context.tables):
                initial = self.initial_tables[name]
                for slot, index in reversed(slots):
                    self._func_indices[initial[slot][1]] = index
            for index, name in reversed(self.context.funcs):
                self._func_indices[func_identity(self.store, self.export(name))] = index
        return self._func_indices
