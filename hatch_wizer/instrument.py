"""Check a parsed module and instrument it so a runtime can reach all of its state.

Instrumentation only adds: exports of every mutable global, memory and table under reserved
`__wizer_` names, an export of the start function (whose section is removed, so that tables can
be read before it runs), and one probe function per passive segment that traps iff the segment
was dropped. No index of the original module moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from .assemble import Payload, assemble, extend_vector
from .binary import name, sleb, uleb
from .code import check_gc_mutations
from .errors import InitError, UnsupportedModule
from .options import DEFAULT_INIT_FUNC, LEGACY_INIT_FUNC, WizenOptions
from .parse import (
    EXTERNREF,
    FUNCREF,
    ExternKind,
    FuncType,
    Module,
    SectionId,
    parse_module,
)
from .scanner import (
    DUMPABLE,
    ENCODE_TYPE,
    SCAN_TYPE,
    dump_globals_body,
    encode_body,
    scan_body,
)

__all__ = ["RESERVED_PREFIX", "ModuleContext", "instrument", "instrument_module"]

RESERVED_PREFIX = "__wizer_"
INITIALIZE = "_initialize"


@dataclass(frozen=True)
class ModuleContext:
    """What the snapshot needs to know about an instrumented module."""

    module: Module
    options: WizenOptions
    init_func: str
    call_initialize: bool  # a reactor's `_initialize` runs before the init func
    globals: tuple[tuple[int, str, str], ...]  # (global index, valtype, export name)
    memories: tuple[str, ...]  # export names by defined-memory ordinal
    tables: tuple[str, ...]  # export names by defined-table ordinal
    start: str | None
    data_probes: tuple[tuple[int, str], ...]  # (segment index, probe export)
    elem_probes: tuple[tuple[int, str], ...]
    funcs: tuple[tuple[int, str], ...]  # exports of functions a table or global may refer to
    # Per defined table: (slot, function) as instantiation leaves them (see `_initial_slots`).
    initial_slots: tuple[tuple[tuple[int, int], ...], ...] = ()
    notes: tuple[str, ...] = ()
    # A module inside a component: no init export of its own, start left in place, exports kept.
    embedded: bool = False
    # `scanner.py` functions per defined memory, if added: find runs, encode data segments.
    scanners: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    globals_dump: str | None = None  # writes the numeric mutable globals to scratch
    scratch: str | None = None  # the memory the scanners write to


def instrument(wasm: bytes, options: WizenOptions | None = None) -> tuple[ModuleContext, bytes]:
    """Parse, check and instrument `wasm`; run the returned bytes, then call `snapshot()`."""
    return instrument_module(parse_module(wasm), options or WizenOptions())


def instrument_module(
    module: Module, options: WizenOptions, *, embedded: bool = False
) -> tuple[ModuleContext, bytes]:
    """Instrument `module`; `embedded` for a core module of a component, whose init is the
    component's: imported state belongs to the instance that defines it, the start function
    runs at instantiation in the component's order, and no function references are resolved
    (a component's host cannot compare them)."""
    _check_reserved_names(module)
    if not embedded:
        _check_imports(module)
    _check_memories(module)
    _check_globals(module)
    check_gc_mutations(module)
    init_func, notes = ("", ()) if embedded else _resolve_init_func(module, options.init_func)
    if not embedded:
        _check_renames(module, options, init_func)
    call_initialize = not embedded and _exports_func(module, INITIALIZE) and init_func != INITIALIZE

    globals_ = tuple(
        (g.index, g.valtype, f"{RESERVED_PREFIX}global_{g.index}")
        for g in module.globals
        if g.mutable
    )
    memories = tuple(f"{RESERVED_PREFIX}memory_{i}" for i in range(len(module.memories)))
    tables = tuple(f"{RESERVED_PREFIX}table_{i}" for i in range(len(module.tables)))
    start = f"{RESERVED_PREFIX}start" if module.start is not None and not embedded else None
    initial_slots, unplaced = _initial_slots(module)
    exported = {e.index: e.name for e in module.exports if e.kind == ExternKind.FUNC}
    to_export = [] if embedded else [f for f in unplaced if f not in exported]
    funcs = tuple((f, f"{RESERVED_PREFIX}func_{f}") for f in to_export)
    probes = _Probes(module)

    exports = [_export(n, ExternKind.GLOBAL, i) for i, _, n in globals_]
    exports += [
        _export(n, ExternKind.MEMORY, module.imported(ExternKind.MEMORY) + i)
        for i, n in enumerate(memories)
    ]
    exports += [_export(n, ExternKind.TABLE, t.index) for t, n in zip(module.tables, tables)]
    if start is not None and module.start is not None:
        exports.append(_export(start, ExternKind.FUNC, module.start))
    exports += [_export(n, ExternKind.FUNC, f) for f, n in funcs]
    if not embedded and _holds_references(module):
        funcs += tuple(sorted(exported.items()))  # found through their own exports
    exports += probes.exports

    new: dict[SectionId, Payload | None] = {}
    if not embedded:
        new[SectionId.START] = None
    types: list[bytes] = []
    functions: list[bytes] = []
    bodies: list[bytes] = []
    if probes.bodies:
        functions += [uleb(len(module.types) + len(types))] * len(probes.bodies)
        types.append(b"\x60\x00\x00")
        bodies += probes.bodies
    scanners: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    scratch = globals_dump = None
    dumped = [(index, valtype) for index, valtype, _ in globals_ if valtype in DUMPABLE]
    # A scratch memory for the added helpers; besides a module's own memories it takes the
    # multi-memory proposal.
    if (
        not embedded
        and (module.memories or dumped)
        and (not module.memories or options.features.multi_memory)
    ):
        scratch = f"{RESERVED_PREFIX}scratch"
        scratch_index = module.imported(ExternKind.MEMORY) + len(module.memories)
        scanners = tuple(f"{RESERVED_PREFIX}scan_{i}" for i in range(len(module.memories)))
        encoders = tuple(f"{RESERVED_PREFIX}encode_{i}" for i in range(len(module.memories)))
        for make, names, signature in ((scan_body, scanners, SCAN_TYPE),
                                       (encode_body, encoders, ENCODE_TYPE)):  # fmt: skip
            first = len(module.func_types) + len(bodies)
            for i, (limits, export) in enumerate(zip(module.memories, names)):
                memory = module.imported(ExternKind.MEMORY) + i
                bodies.append(make(memory, limits.is64, scratch_index))
                exports.append(_export(export, ExternKind.FUNC, first + i))
            functions += [uleb(len(module.types) + len(types))] * len(names)
            types.append(signature)
        if dumped:
            globals_dump = f"{RESERVED_PREFIX}dump_globals"
            exports.append(
                _export(globals_dump, ExternKind.FUNC, len(module.func_types) + len(bodies))
            )
            bodies.append(dump_globals_body(dumped, scratch_index))
            functions.append(uleb(len(module.types) + len(types)))
            types.append(b"\x60\x00\x00")
        exports.append(_export(scratch, ExternKind.MEMORY, scratch_index))
        new[SectionId.MEMORY] = extend_vector(module, SectionId.MEMORY, [b"\x00\x00"])
    new[SectionId.EXPORT] = extend_vector(module, SectionId.EXPORT, exports)
    if bodies:
        new[SectionId.TYPE] = extend_vector(module, SectionId.TYPE, types)
        new[SectionId.FUNCTION] = extend_vector(module, SectionId.FUNCTION, functions)
        new[SectionId.CODE] = extend_vector(module, SectionId.CODE, bodies)
    context = ModuleContext(
        module=module,
        options=options,
        init_func=init_func,
        call_initialize=call_initialize,
        globals=globals_,
        memories=memories,
        tables=tables,
        start=start,
        data_probes=tuple(probes.data),
        elem_probes=tuple(probes.elem),
        funcs=funcs,
        initial_slots=() if embedded else initial_slots,
        notes=notes,
        embedded=embedded,
        scanners=scanners,
        encoders=encoders,
        globals_dump=globals_dump,
        scratch=scratch,
    )
    return context, assemble(module, new)


def _export(export_name: str, kind: ExternKind, index: int) -> bytes:
    return name(export_name) + bytes([kind]) + uleb(index)


def _exports_func(module: Module, export_name: str) -> bool:
    export = module.export(export_name)
    return export is not None and export.kind == ExternKind.FUNC


def _check_reserved_names(module: Module) -> None:
    for imp in module.imports:
        if imp.name.startswith(RESERVED_PREFIX) or imp.module.startswith(RESERVED_PREFIX):
            raise UnsupportedModule(
                f"the module imports `{imp.module}::{imp.name}`, "
                f"but names starting with `{RESERVED_PREFIX}` are reserved for hatch-wizer"
            )
    for export in module.exports:
        if export.name.startswith(RESERVED_PREFIX):
            raise UnsupportedModule(
                f"the module exports `{export.name}`, "
                f"but names starting with `{RESERVED_PREFIX}` are reserved for hatch-wizer"
            )


def _check_imports(module: Module) -> None:
    what = {ExternKind.MEMORY: "memory", ExternKind.TABLE: "table", ExternKind.GLOBAL: "global"}
    for imp in module.imports:
        if imp.kind in what:
            raise UnsupportedModule(
                f"imported {what[imp.kind]} `{imp.module}::{imp.name}` is not supported: "
                "a snapshot can only hold state the module defines itself"
            )


def _check_memories(module: Module) -> None:
    for i, memory in enumerate(module.memories):
        if memory.shared:
            raise UnsupportedModule(f"memory {i} is shared; shared memories are not supported")


def _check_globals(module: Module) -> None:
    for g in module.globals:
        if g.mutable and g.valtype not in (FUNCREF, EXTERNREF, "i32", "i64", "f32", "f64", "v128"):
            shown = "`anyref`" if g.type_raw == b"\x6e" else "(a typed or GC reference)"
            raise UnsupportedModule(
                f"mutable global {g.index} has reference type {shown}; only funcref and "
                "externref globals can be snapshotted"
            )


def _resolve_init_func(module: Module, requested: str) -> tuple[str, tuple[str, ...]]:
    export = module.export(requested)
    notes: tuple[str, ...] = ()
    if export is None and requested == DEFAULT_INIT_FUNC and module.export(LEGACY_INIT_FUNC):
        export = module.export(LEGACY_INIT_FUNC)
        notes = (f"no `{DEFAULT_INIT_FUNC}` export; using the older default `{LEGACY_INIT_FUNC}`",)
    if export is None:
        raise InitError(f"the module has no `{requested}` export (choose one with --init-func)")
    if export.kind != ExternKind.FUNC:
        raise InitError(f"the module's `{export.name}` export is not a function")
    if module.func_type(export.index) != FuncType((), ()):
        raise InitError(
            f"the module's `{export.name}` function must take no arguments and return nothing"
        )
    return export.name, notes


def _check_renames(module: Module, options: WizenOptions, init_func: str) -> None:
    sources: set[str] = set()
    targets: set[str] = set()
    for dst, src in options.renames:
        if module.export(src) is None:
            raise InitError(f"rename source `{src}` is not an export of the module")
        if src == init_func and not options.keep_init_func:
            raise InitError(
                f"cannot rename `{src}`: it is the init function, which the output drops "
                "(add --keep-init-func)"
            )
        if dst in targets:
            raise InitError(f"more than one export is renamed to `{dst}`")
        if src in sources:
            raise InitError(f"`{src}` is renamed more than once")
        sources.add(src)
        targets.add(dst)


def _holds_references(module: Module) -> bool:
    return bool(module.tables) or any(g.mutable and g.valtype == FUNCREF for g in module.globals)


def _initial_slots(module: Module) -> tuple[tuple[tuple[tuple[int, int], ...], ...], list[int]]:
    """Which function each table slot holds right after instantiation, as far as constant
    element segments tell, and the referenceable functions found in no such slot.

    Wasm only lets code take a reference to functions named in element segments, global
    initializers or exports; the runtime identifies a table entry by comparing it with the
    initial slots and with exports, so only the functions in neither need a new export.
    """
    if not _holds_references(module):
        return (), []
    slots: list[dict[int, int | None]] = [{} for _ in module.tables]
    first_table = module.imported(ExternKind.TABLE)
    unplaced = set(module.global_refs)
    for seg in module.elements:
        if seg.offset is None or seg.items is None or seg.table < first_table:
            unplaced.update(seg.funcs)
            continue
        table = slots[seg.table - first_table]
        for slot, func in enumerate(seg.items, seg.offset):
            table[slot] = func  # later segments overwrite earlier ones, as at instantiation
    placed = {f for table in slots for f in table.values()}
    unplaced.update(f for seg in module.elements for f in seg.funcs if f not in placed)
    initial = tuple(
        tuple(sorted((slot, f) for slot, f in table.items() if f is not None)) for table in slots
    )
    return initial, sorted(unplaced)


class _Probes:
    """One `[] -> []` function per passive segment; `memory.init`/`table.init` of zero bytes
    from the segment's end traps exactly when the segment was dropped."""

    def __init__(self, module: Module) -> None:
        self.exports: list[bytes] = []
        self.bodies: list[bytes] = []
        self.data: list[tuple[int, str]] = []
        self.elem: list[tuple[int, str]] = []
        first_func = len(module.func_types)
        if module.data_count is not None and module.memories:
            at = b"\x42\x00" if module.memories[0].is64 else b"\x41\x00"
            memory = module.imported(ExternKind.MEMORY)
            for i, data in enumerate(module.data):
                if data.mode == "passive" and data.length:
                    code = at + _i32(data.length) + _i32(0) + b"\xfc\x08" + uleb(i) + uleb(memory)
                    self._add(self.data, i, f"{RESERVED_PREFIX}probe_data_{i}", code, first_func)
        for i, seg in enumerate(module.elements):
            table = _table_for(module, seg.elem_type)
            if seg.mode == "passive" and seg.length and table is not None:
                at = b"\x42\x00" if module.tables[table].limits.is64 else b"\x41\x00"
                index = module.tables[table].index
                code = at + _i32(seg.length) + _i32(0) + b"\xfc\x0c" + uleb(i) + uleb(index)
                self._add(self.elem, i, f"{RESERVED_PREFIX}probe_elem_{i}", code, first_func)

    def _add(
        self, kind: list[tuple[int, str]], i: int, export: str, code: bytes, first: int
    ) -> None:
        body = b"\x00" + code + b"\x0b"  # no locals
        kind.append((i, export))
        self.exports.append(_export(export, ExternKind.FUNC, first + len(self.bodies)))
        self.bodies.append(uleb(len(body)) + body)


def _i32(value: int) -> bytes:
    return b"\x41" + sleb(value if value < 1 << 31 else value - (1 << 32))


def _table_for(module: Module, elem_type: str) -> int | None:
    return next((i for i, t in enumerate(module.tables) if t.elem_type == elem_type), None)
