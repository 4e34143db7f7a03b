"""Parse a core WebAssembly module into the few facts a snapshot needs.

Only the sections that name state (types, imports, functions, tables, memories, globals,
exports, start, elements, data) are decoded; everything else, the code section included, is
kept as a raw byte range so the rewrite can copy it untouched. Spec:
https://webassembly.github.io/spec/core/binary/modules.html
"""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

from enum import IntEnum
from typing import Final, NamedTuple

from ..errors import InvalidModule
from .binary import read_byte, read_name, read_sleb, read_uleb

__all__ = [
    "DataSegment",
    "ElemSegment",
    "Export",
    "ExternKind",
    "FuncType",
    "Global",
    "Import",
    "Limits",
    "Module",
    "Section",
    "SectionId",
    "Table",
    "parse_module",
    "split_sections",
]

MAGIC: Final = b"\0asm"
CORE_VERSION: Final = b"\x01\x00\x00\x00"
COMPONENT_LAYER: Final = b"\x01\x00"


class SectionId(IntEnum):
    CUSTOM = 0
    TYPE = 1
    IMPORT = 2
    FUNCTION = 3
    TABLE = 4
    MEMORY = 5
    GLOBAL = 6
    EXPORT = 7
    START = 8
    ELEMENT = 9
    CODE = 10
    DATA = 11
    DATA_COUNT = 12
    TAG = 13


# The order non-custom sections must appear in (the tag section sits between memory and global).
SECTION_ORDER: Final = (1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11)


class ExternKind(IntEnum):
    FUNC = 0
    TABLE = 1
    MEMORY = 2
    GLOBAL = 3
    TAG = 4


NUMERIC_TYPES: Final = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
FUNCREF: Final = "funcref"
EXTERNREF: Final = "externref"
# Abstract heap types as one-byte s33 values: func, extern, and the GC ones.
HEAP_FUNC: Final = -0x10
HEAP_EXTERN: Final = -0x11


# The records below are NamedTuples, not frozen dataclasses: each of those costs ~0.3 ms to
# create at import (under 0.1 ms for a NamedTuple), and every cold CLI run imports this module.
# (A field named `index` shadows `tuple.index`, which nothing here calls.)
class Section(NamedTuple):
    id: int
    start: int  # offset of the id byte
    payload_start: int
    end: int


class FuncType(NamedTuple):
    params: tuple[str, ...]
    results: tuple[str, ...]


class Limits(NamedTuple):
    flags: int
    minimum: int
    maximum: int | None
    page_size_log2: int | None = None

    @property
    def is64(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def shared(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def page_size(self) -> int:
        return 1 << (16 if self.page_size_log2 is None else self.page_size_log2)


class Import(NamedTuple):
    module: str
    name: str
    kind: ExternKind
    type_index: int = -1  # functions and tags


class Table(NamedTuple):
    index: int  # type: ignore[assignment]
    elem_type: str
    limits: Limits
    type_raw: bytes  # the reference type's encoding
    init_raw: bytes | None = None  # an explicit initializer expression, if any


class Global(NamedTuple):
    index: int  # type: ignore[assignment]
    valtype: str
    mutable: bool
    raw: bytes  # the whole entry: type, mutability and initializer
    type_raw: bytes


class Export(NamedTuple):
    name: str
    kind: ExternKind
    index: int  # type: ignore[assignment]


class ElemSegment(NamedTuple):
    mode: str  # "active", "passive" or "declarative"
    elem_type: str
    length: int
    funcs: tuple[int, ...]  # every function the segment references
    raw: bytes
    type_raw: bytes = b"\x70"
    table: int = 0
    # For an active segment with a constant offset whose items are all `ref.func`/`ref.null`:
    # where it goes, and the function (or None) of each item, so a table's initial contents
    # are known without running anything.
    offset: int | None = None
    items: tuple[int | None, ...] | None = None


class DataSegment(NamedTuple):
    mode: str  # "active" or "passive"
    raw: bytes
    length: int
    memory: int = 0


class Module(NamedTuple):
    wasm: bytes
    sections: tuple[Section, ...]
    types: tuple[FuncType | None, ...]  # None for GC struct and array types
    has_gc_types: bool
    imports: tuple[Import, ...]
    func_types: tuple[int, ...]  # the type index of every function, imports first
    tables: tuple[Table, ...]  # defined tables only
    memories: tuple[Limits, ...]  # defined memories only
    globals: tuple[Global, ...]  # defined globals only
    exports: tuple[Export, ...]
    start: int | None
    elements: tuple[ElemSegment, ...]
    data: tuple[DataSegment, ...]
    data_count: int | None
    code_count: int
    global_refs: tuple[int, ...]  # functions named by ref.func in global initializers

    def imported(self, kind: ExternKind) -> int:
        return sum(1 for imp in self.imports if imp.kind == kind)

    @property
    def imported_memories(self) -> int:
        return self.imported(ExternKind.MEMORY)

    def section(self, section_id: SectionId) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)

    def export(self, name: str) -> Export | None:
        return next((e for e in self.exports if e.name == name), None)

    def func_type(self, func_index: int) -> FuncType | None:
        type_index = self.func_types[func_index]
        return self.types[type_index] if type_index < len(self.types) else None


def is_component(wasm: bytes) -> bool:
    return wasm[:4] == MAGIC and wasm[6:8] == COMPONENT_LAYER


def check_header(wasm: bytes) -> None:
    """Fail early, with a clear message, on input that is not a core module at all."""
    if wasm[:4] != MAGIC:
        raise InvalidModule("not a WebAssembly module (the file does not start with \\0asm)")
    if is_component(wasm):
        raise InvalidModule("expected a core module, found a component")
    if wasm[4:8] != CORE_VERSION:
        version = wasm[4:8].hex(" ") or "nothing"
        raise InvalidModule(f"unsupported WebAssembly version {version} (expected 01 00 00 00)")


def parse_module(wasm: bytes) -> Module:
    check_header(wasm)
    sections = split_sections(wasm)
    p = _Parsed(wasm)
    for sec in sections:
        reader = _SECTION_READERS.get(SectionId(sec.id)) if sec.id <= 13 else None
        if sec.id == SectionId.FUNCTION and _read_small_type_indices(p, wasm, sec):
            continue
        if reader is not None:
            count, pos = read_uleb(wasm, sec.payload_start)
            for _ in range(count):
                pos = reader(p, wasm, pos)
            if pos != sec.end:
                raise InvalidModule(f"section size mismatch in section {sec.id} at {pos:#x}")
        elif sec.id == SectionId.START:
            p.start, _ = read_uleb(wasm, sec.payload_start)
        elif sec.id == SectionId.DATA_COUNT:
            p.data_count, _ = read_uleb(wasm, sec.payload_start)
        elif sec.id == SectionId.CODE:
            p.code_count, _ = read_uleb(wasm, sec.payload_start)
    return Module(
        wasm=wasm,
        sections=tuple(sections),
        types=tuple(p.types),
        has_gc_types=p.has_gc_types,
        imports=tuple(p.imports),
        func_types=tuple(p.func_types),
        tables=tuple(p.tables),
        memories=tuple(p.memories),
        globals=tuple(p.globals),
        exports=tuple(p.exports),
        start=p.start,
        elements=tuple(p.elements),
        data=tuple(p.data),
        data_count=p.data_count,
        code_count=p.code_count,
        global_refs=tuple(p.global_refs),
    )


def _read_small_type_indices(p: "_Parsed", wasm: bytes, sec: Section) -> bool:
    """The function section in one step when every type index fits in a byte (the usual case:
    CPython has 89,000 functions)."""
    count, pos = read_uleb(wasm, sec.payload_start)
    indices = wasm[pos : sec.end]
    if len(indices) != count or (indices and max(indices) >= 0x80):
        return False
    p.func_types.extend(indices)
    return True


def split_sections(wasm: bytes) -> list[Section]:
    sections = []
    pos = 8
    while pos < len(wasm):
        start = pos
        section_id, pos = read_byte(wasm, pos)
        size, pos = read_uleb(wasm, pos)
        if pos + size > len(wasm):
            raise InvalidModule(f"section {section_id} at offset {start:#x} runs past the end")
        sections.append(Section(section_id, start, pos, pos + size))
        pos += size
    return sections


class _Parsed:
    """Accumulates entries while sections are read (local to one parse_module call)."""

    def __init__(self, wasm: bytes) -> None:
        self.types: list[FuncType | None] = []
        self.has_gc_types = False
        self.imports: list[Import] = []
        self.func_types: list[int] = []
        self.tables: list[Table] = []
        self.memories: list[Limits] = []
        self.globals: list[Global] = []
        self.exports: list[Export] = []
        self.elements: list[ElemSegment] = []
        self.data: list[DataSegment] = []
        self.start: int | None = None
        self.data_count: int | None = None
        self.code_count = 0
        self.global_refs: list[int] = []
        self.imported_tables = self.imported_globals = 0


# --- types -------------------------------------------------------------------------------------


def read_heap_type(buf: bytes, pos: int) -> tuple[int, int]:
    return read_sleb(buf, pos, 33)


def read_valtype(buf: bytes, pos: int) -> tuple[str, int]:
    start = pos
    code, pos = read_byte(buf, pos)
    if code in NUMERIC_TYPES:
        return NUMERIC_TYPES[code], pos
    if code == 0x70:
        return FUNCREF, pos
    if code == 0x6F:
        return EXTERNREF, pos
    if code in (0x63, 0x64):  # (ref null ht), (ref ht)
        heap, pos = read_heap_type(buf, pos)
        if code == 0x63 and heap == HEAP_FUNC:
            return FUNCREF, pos
        if code == 0x63 and heap == HEAP_EXTERN:
            return EXTERNREF, pos
        return "ref", pos
    if 0x65 <= code <= 0x74:  # other abstract heap-type shorthands
        return "ref", pos
    raise InvalidModule(f"unknown value type {code:#x} at offset {start:#x}")


def _read_storage_type(buf: bytes, pos: int) -> int:
    if buf[pos] in (0x78, 0x77):  # packed i8 / i16
        return pos + 1
    return read_valtype(buf, pos)[1]


def _read_comp_type(p: _Parsed, buf: bytes, pos: int) -> int:
    form, pos = read_byte(buf, pos)
    if form == 0x60:
        params, pos = _read_valtypes(buf, pos)
        results, pos = _read_valtypes(buf, pos)
        p.types.append(FuncType(params, results))
        return pos
    p.has_gc_types = True
    p.types.append(None)
    if form == 0x5F:  # struct
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            pos = _read_storage_type(buf, pos) + 1
        return pos
    if form == 0x5E:  # array
        return _read_storage_type(buf, pos) + 1
    raise InvalidModule(f"unknown composite type {form:#x} at offset {pos - 1:#x}")


def _read_sub_type(p: _Parsed, buf: bytes, pos: int) -> int:
    if buf[pos] in (0x50, 0x4F):  # sub / sub final: supertypes first
        count, pos = read_uleb(buf, pos + 1)
        for _ in range(count):
            _, pos = read_uleb(buf, pos)
    return _read_comp_type(p, buf, pos)


def _read_type_entry(p: _Parsed, buf: bytes, pos: int) -> int:
    if pos < len(buf) and buf[pos] == 0x4E:  # rec group
        count, pos = read_uleb(buf, pos + 1)
        for _ in range(count):
            pos = _read_sub_type(p, buf, pos)
        return pos
    return _read_sub_type(p, buf, pos)


def _read_valtypes(buf: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    count, pos = read_uleb(buf, pos)
    out = []
    for _ in range(count):
        valtype, pos = read_valtype(buf, pos)
        out.append(valtype)
    return tuple(out), pos


def read_limits(buf: bytes, pos: int) -> tuple[Limits, int]:
    flags, pos = read_byte(buf, pos)
    if flags & ~0x0F:
        raise InvalidModule(f"invalid limits flags {flags:#x} at offset {pos - 1:#x}")
    bits = 64 if flags & 0x04 else 32
    minimum, pos = read_uleb(buf, pos, bits)
    maximum = None
    if flags & 0x01:
        maximum, pos = read_uleb(buf, pos, bits)
    page_size_log2 = None
    if flags & 0x08:
        page_size_log2, pos = read_uleb(buf, pos)
    return Limits(flags, minimum, maximum, page_size_log2), pos


def _read_table_type(buf: bytes, pos: int) -> tuple[str, Limits, int]:
    elem_type, pos = read_valtype(buf, pos)
    limits, pos = read_limits(buf, pos)
    return elem_type, limits, pos


# --- constant expressions ----------------------------------------------------------------------


def skip_number(buf: bytes, op: int, pos: int) -> int:
    """Skip the immediate of `i32.const`, `i64.const`, `f32.const` or `f64.const` (0x41-0x44)."""
    if op == 0x41:
        return read_sleb(buf, pos, 32)[1]
    if op == 0x42:
        return read_sleb(buf, pos, 64)[1]
    return pos + (4 if op == 0x43 else 8)


def read_const_expr(buf: bytes, pos: int, refs: list[int] | None = None) -> int:
    """Skip a constant expression up to and including its `end`; collect ref.func targets."""
    if pos < len(buf) and 0x41 <= buf[pos] <= 0x44:  # the usual `<number>.const N end` first
        end = skip_number(buf, buf[pos], pos + 1)
        if end < len(buf) and buf[end] == 0x0B:
            return end + 1
    while True:
        start = pos
        op, pos = read_byte(buf, pos)
        if op == 0x0B:
            return pos
        if 0x41 <= op <= 0x44:
            pos = skip_number(buf, op, pos)
        elif op == 0x23:
            _, pos = read_uleb(buf, pos)
        elif op == 0xD0:
            _, pos = read_heap_type(buf, pos)
        elif op == 0xD2:
            func, pos = read_uleb(buf, pos)
            if refs is not None:
                refs.append(func)
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            pass
        elif op == 0xFD:
            sub, pos = read_uleb(buf, pos)
            if sub != 12:
                raise InvalidModule(
                    f"non-constant instruction in constant expression at {start:#x}"
                )
            pos += 16
        elif op == 0xFB:
            pos = _skip_gc_const(buf, pos, start)
        else:
            raise InvalidModule(
                f"non-constant instruction {op:#x} in constant expression at {start:#x}"
            )


def _skip_gc_const(buf: bytes, pos: int, start: int) -> int:
    sub, pos = read_uleb(buf, pos)
    if sub in (0, 1, 6, 7):  # struct.new(_default), array.new(_default): a type index
        return read_uleb(buf, pos)[1]
    if sub == 8:  # array.new_fixed: a type index and a length
        return read_uleb(buf, read_uleb(buf, pos)[1])[1]
    if sub in (0x1A, 0x1B, 0x1C):  # any.convert_extern, extern.convert_any, ref.i31
        return pos
    raise InvalidModule(f"non-constant GC instruction in constant expression at {start:#x}")


# --- section entries ---------------------------------------------------------------------------


def _read_import(p: _Parsed, buf: bytes, pos: int) -> int:
    start = pos
    module, pos = read_name(buf, pos)
    name, pos = read_name(buf, pos)
    kind, pos = read_byte(buf, pos)
    if kind == ExternKind.FUNC:
        type_index, pos = read_uleb(buf, pos)
        p.func_types.append(type_index)
        p.imports.append(Import(module, name, ExternKind.FUNC, type_index))
    elif kind == ExternKind.TABLE:
        _, _, pos = _read_table_type(buf, pos)
        p.imports.append(Import(module, name, ExternKind.TABLE))
        p.imported_tables += 1
    elif kind == ExternKind.MEMORY:
        _, pos = read_limits(buf, pos)
        p.imports.append(Import(module, name, ExternKind.MEMORY))
    elif kind == ExternKind.GLOBAL:
        _, pos = read_valtype(buf, pos)
        pos += 1
        p.imports.append(Import(module, name, ExternKind.GLOBAL))
        p.imported_globals += 1
    elif kind == ExternKind.TAG:
        pos += 1  # attribute: always 0 (exception)
        type_index, pos = read_uleb(buf, pos)
        p.imports.append(Import(module, name, ExternKind.TAG, type_index))
    else:
        raise InvalidModule(
            f"unsupported import kind {kind:#x} for `{module}::{name}` at {start:#x}"
        )
    return pos


def _read_function(p: _Parsed, buf: bytes, pos: int) -> int:
    type_index, pos = read_uleb(buf, pos)
    p.func_types.append(type_index)
    return pos


def _read_table(p: _Parsed, buf: bytes, pos: int) -> int:
    has_init = buf[pos : pos + 2] == b"\x40\x00"
    if has_init:
        pos += 2
    type_start = pos
    elem_type, type_end = read_valtype(buf, pos)
    limits, pos = read_limits(buf, type_end)
    init_raw = None
    if has_init:
        init_start = pos
        pos = read_const_expr(buf, pos)
        init_raw = buf[init_start:pos]
    index = p.imported_tables + len(p.tables)
    p.tables.append(Table(index, elem_type, limits, buf[type_start:type_end], init_raw))
    return pos


def _read_memory(p: _Parsed, buf: bytes, pos: int) -> int:
    limits, pos = read_limits(buf, pos)
    p.memories.append(limits)
    return pos


def _read_global(p: _Parsed, buf: bytes, pos: int) -> int:
    start = pos
    valtype, type_end = read_valtype(buf, pos)
    mutable, pos = read_byte(buf, type_end)
    pos = read_const_expr(buf, pos, p.global_refs)
    index = p.imported_globals + len(p.globals)
    p.globals.append(Global(index, valtype, bool(mutable), buf[start:pos], buf[start:type_end]))
    return pos


def _read_export(p: _Parsed, buf: bytes, pos: int) -> int:
    name, pos = read_name(buf, pos)
    kind, pos = read_byte(buf, pos)
    index, pos = read_uleb(buf, pos)
    p.exports.append(Export(name, ExternKind(kind) if kind <= 4 else ExternKind.TAG, index))
    return pos


def _read_funcs_vector(
    buf: bytes, pos: int, funcs: list[int]
) -> tuple[tuple[int | None, ...] | None, int]:
    count, pos = read_uleb(buf, pos)
    for _ in range(count):
        func, pos = read_uleb(buf, pos)
        funcs.append(func)
    return tuple(funcs), pos


def _const_offset(expr: bytes) -> int | None:
    """The value of an `i32.const`/`i64.const` offset expression, else None."""
    if expr[:1] in (b"\x41", b"\x42"):
        value, end = read_sleb(expr, 1, 64)
        if end == len(expr) - 1:
            return value & (0xFFFFFFFF if expr[0] == 0x41 else 0xFFFFFFFFFFFFFFFF)
    return None


def _read_exprs_vector(
    buf: bytes, pos: int, funcs: list[int]
) -> tuple[tuple[int | None, ...] | None, int]:
    count, pos = read_uleb(buf, pos)
    items: list[int | None] | None = []
    for _ in range(count):
        start, known = pos, len(funcs)
        pos = read_const_expr(buf, pos, funcs)
        if items is None:
            continue
        if buf[start] == 0xD2 and read_uleb(buf, start + 1)[1] + 1 == pos:
            items.append(funcs[known])  # just `ref.func f`
        elif buf[start] == 0xD0 and read_heap_type(buf, start + 1)[1] + 1 == pos:
            items.append(None)  # just `ref.null t`
        else:
            items = None  # something only evaluation would tell
    return (tuple(items) if items is not None else None), pos


def _read_element(p: _Parsed, buf: bytes, pos: int) -> int:
    start = pos
    flags, pos = read_uleb(buf, pos)
    if flags > 7:
        raise InvalidModule(f"invalid element segment flags {flags} at offset {start:#x}")
    table = 0
    if flags & 0x02 and not flags & 0x01:  # explicit table index
        table, pos = read_uleb(buf, pos)
    offset = None
    if not flags & 0x01:  # active: an offset expression
        expr_start = pos
        pos = read_const_expr(buf, pos)
        offset = _const_offset(buf[expr_start:pos])
    elem_type = FUNCREF
    type_raw = b"\x70"
    if flags & 0x03:  # an element kind (0x00 = funcref) or a reference type follows
        if flags & 0x04:
            type_start = pos
            elem_type, pos = read_valtype(buf, pos)
            type_raw = buf[type_start:pos]
        else:
            pos += 1
    funcs: list[int] = []
    read_items = _read_exprs_vector if flags & 0x04 else _read_funcs_vector
    length, _ = read_uleb(buf, pos)
    items, pos = read_items(buf, pos, funcs)
    mode = "active" if not flags & 0x01 else ("declarative" if flags & 0x02 else "passive")
    static = mode == "active" and offset is not None and items is not None
    p.elements.append(
        ElemSegment(
            mode,
            elem_type,
            length,
            tuple(funcs),
            buf[start:pos],
            type_raw,
            table,
            offset if static else None,
            items if static else None,
        )
    )
    return pos


def _read_data(p: _Parsed, buf: bytes, pos: int) -> int:
    start = pos
    flags, pos = read_uleb(buf, pos)
    memory = 0
    if flags == 2:
        memory, pos = read_uleb(buf, pos)
    elif flags not in (0, 1):
        raise InvalidModule(f"invalid data segment flags {flags} at offset {start:#x}")
    if flags != 1:
        pos = read_const_expr(buf, pos)
    length, pos = read_uleb(buf, pos)
    pos += length
    if pos > len(buf):
        raise InvalidModule(f"data segment at offset {start:#x} runs past the end")
    mode = "passive" if flags == 1 else "active"
    p.data.append(DataSegment(mode, buf[start:pos], length, memory))
    return pos


def _read_tag(p: _Parsed, buf: bytes, pos: int) -> int:
    return read_uleb(buf, pos + 1)[1]


_SECTION_READERS: Final = {
    SectionId.TYPE: _read_type_entry,
    SectionId.IMPORT: _read_import,
    SectionId.FUNCTION: _read_function,
    SectionId.TABLE: _read_table,
    SectionId.MEMORY: _read_memory,
    SectionId.GLOBAL: _read_global,
    SectionId.EXPORT: _read_export,
    SectionId.ELEMENT: _read_element,
    SectionId.DATA: _read_data,
    SectionId.TAG: _read_tag,
}


def function_name(module: Module, index: int) -> str:
    """`index` with its name from the `name` section, for messages: "12 (`parse_config`)"."""
    for sec in module.sections:
        if sec.id != SectionId.CUSTOM:
            continue
        try:
            title, pos = read_name(module.wasm, sec.payload_start)
            if title != "name":
                continue
            while pos < sec.end:
                kind, pos = read_byte(module.wasm, pos)
                size, pos = read_uleb(module.wasm, pos)
                if kind == 1:  # function names: a map from index to name
                    count, entry = read_uleb(module.wasm, pos)
                    for _ in range(count):
                        func, entry = read_uleb(module.wasm, entry)
                        name, entry = read_name(module.wasm, entry)
                        if func == index:
                            return f"{index} (`{name}`)"
                pos += size
        except InvalidModule:
            pass  # a malformed name section only costs us the name
    return str(index)
