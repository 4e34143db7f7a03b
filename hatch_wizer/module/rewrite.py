"""Write a snapshot back into the original module: the pre-initialized output.

Only memories, tables, globals, exports, start, elements and data are re-encoded; all other
sections are copied byte for byte, so code offsets, names and DWARF stay valid.
"""

from __future__ import annotations

from itertools import groupby

from ..wasm.assemble import Payload, Piece, assemble
from ..wasm.binary import offset_expr, sleb, uleb, vector
from ..wasm.parse import EXTERNREF, FUNCREF, Limits, SectionId
from .instrumentation import INITIALIZE, ModuleContext
from .state import Ref, Snapshot

__all__ = ["rewrite"]

EMPTY_PASSIVE_DATA = b"\x01\x00"


def rewrite(context: ModuleContext, snap: Snapshot) -> bytes:
    module = context.module
    # Start is dropped: its effects are in the snapshot. A component's module keeps its exports:
    # the component may alias any of them, `_initialize` included.
    new: dict[SectionId, Payload | None] = {SectionId.START: None}
    if not context.embedded:
        new[SectionId.EXPORT] = vector(_exports(context))
    if module.memories:
        new[SectionId.MEMORY] = vector(
            [_limits(m, pages) for m, pages in zip(module.memories, snap.memory_pages)]
        )
    if module.globals:
        new[SectionId.GLOBAL] = vector(
            [
                _global(g.type_raw, g.valtype, snap.globals[g.index]) if g.mutable else g.raw
                for g in module.globals
            ]
        )
    if any(t.size != table.limits.minimum for t, table in zip(snap.tables, module.tables)):
        new[SectionId.TABLE] = vector(
            [_table(t, s.size) for t, s in zip(module.tables, snap.tables)]
        )
    if snap.dropped_elems or any(t.changed for t in snap.tables):
        new[SectionId.ELEMENT] = vector(_elements(context, snap))
    if snap.data_count or module.data:
        count = len(context.module.data) + snap.data_count
        new[SectionId.DATA] = [uleb(count), *_data(context, snap)]
    if module.data_count is not None:
        new[SectionId.DATA_COUNT] = uleb(len(module.data) + snap.data_count)
    return assemble(module, new)


def _exports(context: ModuleContext) -> list[bytes]:
    options = context.options
    dst_of = {src: dst for dst, src in options.renames}
    replaced = {dst for dst, _ in options.renames}
    out = []
    for export in context.module.exports:
        if export.name == context.init_func and not options.keep_init_func:
            continue
        if export.name == INITIALIZE:
            continue
        if export.name in replaced and export.name not in dst_of:
            continue
        name = dst_of.get(export.name, export.name).encode()
        out.append(uleb(len(name)) + name + bytes([export.kind]) + uleb(export.index))
    return out


def _limits(limits: Limits, minimum: int) -> bytes:
    out = bytes([limits.flags]) + uleb(minimum)
    if limits.maximum is not None:
        out += uleb(limits.maximum)
    if limits.page_size_log2 is not None:
        out += uleb(limits.page_size_log2)
    return out


def _table(table: object, size: int) -> bytes:
    from ..wasm.parse import Table

    assert isinstance(table, Table)
    body = table.type_raw + _limits(table.limits, size)
    return body if table.init_raw is None else b"\x40\x00" + body + table.init_raw


def _const(valtype: str, value: int | None) -> bytes:
    if valtype in (FUNCREF, EXTERNREF):
        return _ref(valtype, value)
    assert value is not None
    if valtype == "i32":
        return b"\x41" + sleb(value - (1 << 32) if value >= 1 << 31 else value)
    if valtype == "i64":
        return b"\x42" + sleb(value - (1 << 64) if value >= 1 << 63 else value)
    if valtype == "f32":
        return b"\x43" + value.to_bytes(4, "little")
    if valtype == "f64":
        return b"\x44" + value.to_bytes(8, "little")
    return b"\xfd\x0c" + value.to_bytes(16, "little")  # v128


def _ref(valtype: str, value: Ref) -> bytes:
    if value is None:
        return b"\xd0" + (b"\x70" if valtype == FUNCREF else b"\x6f")
    return b"\xd2" + uleb(value)


def _global(type_raw: bytes, valtype: str, value: int | None) -> bytes:
    return type_raw + b"\x01" + _const(valtype, value) + b"\x0b"


def _data(context: ModuleContext, snap: Snapshot) -> list[Piece]:
    """The data section's entries, as pieces to join once."""
    # Original segments keep their indices for run-time memory.init: active ones (already
    # applied, so dropped) and segments init dropped become empty passive segments.
    items: list[Piece] = [
        seg.raw if seg.mode == "passive" and i not in snap.dropped_data else EMPTY_PASSIVE_DATA
        for i, seg in enumerate(context.module.data)
    ]
    return items + list(snap.data)


def _elements(context: ModuleContext, snap: Snapshot) -> list[bytes]:
    items = []
    for i, seg in enumerate(context.module.elements):
        if i in snap.dropped_elems:
            # An empty passive segment behaves exactly like a dropped one.
            items.append(
                b"\x01\x00\x00" if seg.type_raw == b"\x70" else b"\x05" + seg.type_raw + b"\x00"
            )
        else:
            items.append(seg.raw)
    for table, state in zip(context.module.tables, snap.tables):
        slots = sorted(state.changed)
        # One active segment per run of consecutive changed slots rewrites exactly those.
        for _, run in groupby(enumerate(slots), key=lambda pair: pair[1] - pair[0]):
            run_slots = [slot for _, slot in run]
            exprs = [_ref(table.elem_type, state.changed[s]) + b"\x0b" for s in run_slots]
            items.append(
                b"\x06"
                + uleb(table.index)
                + offset_expr(run_slots[0], table.limits.is64)
                + table.type_raw
                + vector(exprs)
            )
    return items
