"""Check a parsed module and instrument it so a runtime can reach all of its state.

Instrumentation only adds: exports of every mutable global, memory and table under reserved
`__wizer_` names, an export of the start function (whose section is removed, so that tables can
be read before it runs), and one probe function per passive segment that traps iff the segment
was dropped. No index of the original module moves.
"""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

from typing import NamedTuple

from ..errors import InitError, UnsupportedModule, option
from ..options import DEFAULT_INIT_FUNC, LEGACY_INIT_FUNC, WizenOptions
from ..wasm.assemble import Payload, assemble, extend_vector
from ..wasm.binary import name, read_uleb, sleb, uleb
from ..wasm.code import check_gc_mutations
from ..wasm.parse import (
    EXTERNREF,
    FUNCREF,
    ExternKind,
    FuncType,
    Module,
    SectionId,
    split_sections,
)
from .scanner import (
    DUMPABLE,
    ENCODE_TYPE,
    SCAN_TYPE,
    dump_globals_body,
    encode_body,
    scan_body,
)

__all__ = ["RESERVED_PREFIX", "ModuleContext", "instrument_module"]

RESERVED_PREFIX = "__wizer_"
NO_PARAMS_NO_RESULTS = b"\x60\x00\x00"
INITIALIZE = "_initialize"


# A NamedTuple, as the parse records it holds: a frozen dataclass costs ~0.3 ms of a run's start.
class ModuleContext(NamedTuple):
    """What the snapshot needs to know about an instrumented module."""

    module: Module
    options: WizenOptions
    init_func: str
    call_initialize: bool  # a reactor's `_initialize` runs before the init func
    # (global index, valtype, export name); the name is empty where the dump alone reads it.
    globals: tuple[tuple[int, str, str], ...]
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
    # How far the original function bodies moved: a trap's offset in the instrumented module,
    # less this, is the offset in the input that messages must name.
    code_moved: int = 0


def instrument_module(
    module: Module, options: WizenOptions, *, embedded: bool = False, export_globals: bool = True
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

    add = _Additions(module)
    # Added helpers write to a scratch memory; besides a module's own memories it takes the
    # multi-memory proposal.
    helpers = not embedded and (not module.memories or options.features.multi_memory)
    mutable = [g for g in module.globals if g.mutable]
    dumped = [(g.index, g.valtype) for g in mutable if helpers and g.valtype in DUMPABLE]
    # The dump reads these in one call; exports, one per global, are for other runtimes.
    unexported = set() if export_globals else {index for index, _ in dumped}
    globals_ = []
    for g in mutable:
        export = g.index not in unexported
        name = add.export(f"global_{g.index}", ExternKind.GLOBAL, g.index) if export else ""
        globals_.append((g.index, g.valtype, name))
    first_memory = module.imported(ExternKind.MEMORY)
    memories = tuple(
        add.export(f"memory_{i}", ExternKind.MEMORY, first_memory + i)
        for i in range(len(module.memories))
    )
    tables = tuple(
        add.export(f"table_{i}", ExternKind.TABLE, t.index) for i, t in enumerate(module.tables)
    )
    start = None
    if module.start is not None and not embedded:
        start = add.export("start", ExternKind.FUNC, module.start)
    initial_slots, unplaced = _initial_slots(module)
    exported = {e.index: e.name for e in module.exports if e.kind == ExternKind.FUNC}
    funcs = tuple(
        (f, add.export(f"func_{f}", ExternKind.FUNC, f))
        for f in ([] if embedded else unplaced)
        if f not in exported
    )
    if not embedded and _holds_references(module):
        funcs += tuple(sorted(exported.items()))  # found through their own exports
    data_probes, elem_probes = _add_probes(module, add)

    scanners: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    scratch = globals_dump = None
    if helpers and (module.memories or dumped):
        scratch_index = first_memory + len(module.memories)
        scratch = add.export("scratch", ExternKind.MEMORY, scratch_index)
        add.memory = True
        for i, limits in enumerate(module.memories):
            body = scan_body(first_memory + i, limits.is64, scratch_index, options.features.simd)
            scanners += (add.function(f"scan_{i}", SCAN_TYPE, body),)
        for i, limits in enumerate(module.memories):
            body = encode_body(first_memory + i, limits.is64, scratch_index)
            encoders += (add.function(f"encode_{i}", ENCODE_TYPE, body),)
        if dumped:
            body = dump_globals_body(dumped, scratch_index)
            globals_dump = add.function("dump_globals", NO_PARAMS_NO_RESULTS, body)

    new = add.sections()
    if not embedded:
        new[SectionId.START] = None
    instrumented = assemble(module, new)
    context = ModuleContext(
        module=module,
        options=options,
        init_func=init_func,
        call_initialize=call_initialize,
        globals=tuple(globals_),
        memories=memories,
        tables=tables,
        start=start,
        data_probes=data_probes,
        elem_probes=elem_probes,
        funcs=funcs,
        initial_slots=() if embedded else initial_slots,
        notes=notes,
        embedded=embedded,
        scanners=scanners,
        encoders=encoders,
        globals_dump=globals_dump,
        scratch=scratch,
        code_moved=_code_moved(module, instrumented),
    )
    return context, instrumented


def _code_moved(module: Module, instrumented: bytes) -> int:
    before = module.section(SectionId.CODE)
    after = next((s for s in split_sections(instrumented) if s.id == SectionId.CODE), None)
    if before is None or after is None:
        return 0
    bodies_after = read_uleb(instrumented, after.payload_start)[1]
    return bodies_after - read_uleb(module.wasm, before.payload_start)[1]


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
        raise InitError(
            f"the module has no `{requested}` export (choose one with {option('init_func')})"
        )
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
                f"(add {option('keep_init_func')})"
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


class _Additions:
    """Exports, functions and a scratch memory that instrumentation appends to a module: new
    entries go after the existing ones, so no index of the original module moves."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.exports: list[bytes] = []
        self.types: list[bytes] = []
        self.functions: list[bytes] = []
        self.bodies: list[bytes] = []
        self.memory = False

    def export(self, suffix: str, kind: ExternKind, index: int) -> str:
        """Export `index` under the reserved name `__wizer_<suffix>`; returns that name."""
        export_name = RESERVED_PREFIX + suffix
        self.exports.append(_export(export_name, kind, index))
        return export_name

    def function(self, suffix: str, signature: bytes, body: bytes) -> str:
        """Add and export a function given its encoded type and body (with size prefix)."""
        if signature not in self.types:
            self.types.append(signature)
        self.functions.append(uleb(len(self.module.types) + self.types.index(signature)))
        self.bodies.append(body)
        index = len(self.module.func_types) + len(self.bodies) - 1
        return self.export(suffix, ExternKind.FUNC, index)

    def sections(self) -> dict[SectionId, Payload | None]:
        module = self.module
        new: dict[SectionId, Payload | None] = {
            SectionId.EXPORT: extend_vector(module, SectionId.EXPORT, self.exports)
        }
        if self.memory:
            new[SectionId.MEMORY] = extend_vector(module, SectionId.MEMORY, [b"\x00\x00"])
        if self.bodies:
            new[SectionId.TYPE] = extend_vector(module, SectionId.TYPE, self.types)
            new[SectionId.FUNCTION] = extend_vector(module, SectionId.FUNCTION, self.functions)
            new[SectionId.CODE] = extend_vector(module, SectionId.CODE, self.bodies)
        return new


def _add_probes(
    module: Module, add: _Additions
) -> tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
    """One `[] -> []` function per passive segment; `memory.init`/`table.init` of zero bytes
    from the segment's end traps exactly when the segment was dropped."""
    data: list[tuple[int, str]] = []
    elem: list[tuple[int, str]] = []

    def probe(kind: str, i: int, code: bytes) -> str:
        body = b"\x00" + code + b"\x0b"  # no locals
        return add.function(f"probe_{kind}_{i}", NO_PARAMS_NO_RESULTS, uleb(len(body)) + body)

    if module.data_count is not None and module.memories:
        at = b"\x42\x00" if module.memories[0].is64 else b"\x41\x00"
        memory = module.imported(ExternKind.MEMORY)
        for i, seg in enumerate(module.data):
            if seg.mode == "passive" and seg.length:
                code = at + _i32(seg.length) + _i32(0) + b"\xfc\x08" + uleb(i) + uleb(memory)
                data.append((i, probe("data", i, code)))
    for i, elems in enumerate(module.elements):
        table = _table_for(module, elems.elem_type)
        if elems.mode == "passive" and elems.length and table is not None:
            at = b"\x42\x00" if module.tables[table].limits.is64 else b"\x41\x00"
            index = module.tables[table].index
            code = at + _i32(elems.length) + _i32(0) + b"\xfc\x0c" + uleb(i) + uleb(index)
            elem.append((i, probe("elem", i, code)))
    return tuple(data), tuple(elem)


def _i32(value: int) -> bytes:
    return b"\x41" + sleb(value if value < 1 << 31 else value - (1 << 32))


def _table_for(module: Module, elem_type: str) -> int | None:
    return next((i for i, t in enumerate(module.tables) if t.elem_type == elem_type), None)
