"""Parse a WebAssembly component into its sections, index-space counts and core instances.

Only what pre-initialization needs is decoded: which core modules are instantiated (and as
which core instance), which nested components are instantiated (each parsed the same way, so
state anywhere in the tree is found), how many items each index space holds (so that new
definitions can be appended), the component's exports, and every place a component function
index appears (so that removing an export can renumber them). Everything else stays raw bytes.
Spec:
https://github.com/WebAssembly/component-model/blob/main/design/mvp/Binary.md
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from ..errors import InvalidModule, UnsupportedModule
from ..wasm.binary import read_byte, read_name, read_uleb, uleb
from ..wasm.parse import MAGIC, is_component

__all__ = [
    "Component",
    "ComponentExport",
    "ComponentInstance",
    "CoreInstance",
    "Sort",
    "parse_component",
    "reassemble",
]

COMPONENT_VERSION: Final = b"\x0d\x00\x01\x00"


class SectionId(IntEnum):
    CUSTOM = 0
    CORE_MODULE = 1
    CORE_INSTANCE = 2
    CORE_TYPE = 3
    COMPONENT = 4
    INSTANCE = 5
    ALIAS = 6
    TYPE = 7
    CANON = 8
    START = 9
    IMPORT = 10
    EXPORT = 11
    VALUE = 12


class Sort(IntEnum):
    """Component-level sorts; core sorts are `CORE_BASE + core sort byte`."""

    FUNC = 1
    VALUE = 2
    TYPE = 3
    COMPONENT = 4
    INSTANCE = 5
    CORE_FUNC = 0x100
    CORE_TABLE = 0x101
    CORE_MEMORY = 0x102
    CORE_GLOBAL = 0x103
    CORE_TYPE = 0x110
    CORE_MODULE = 0x111
    CORE_INSTANCE = 0x112


CORE_BASE: Final = 0x100
# externtype discriminants of imports, by the sort they add to.
_EXTERN_SORTS: Final = {
    0x00: Sort.CORE_MODULE,
    0x01: Sort.FUNC,
    0x02: Sort.VALUE,
    0x03: Sort.TYPE,
    0x04: Sort.COMPONENT,
    0x05: Sort.INSTANCE,
}


@dataclass(frozen=True)
class Section:
    id: int
    start: int
    payload_start: int
    end: int


@dataclass(frozen=True)
class CoreInstance:
    """A core instance made by instantiating a module defined in this component."""

    index: int  # in the core instance index space
    module: int  # in the core module index space
    section: int  # ordinal of the core module section holding the module's bytes


@dataclass(frozen=True)
class ComponentExport:
    name: str
    sort: Sort
    index: int  # what it exports
    new_index: int  # the index the export itself adds to its sort's space
    section: int  # ordinal of its export section among all sections
    position: int  # ordinal within that section


@dataclass(frozen=True)
class ComponentInstance:
    """A component instance made by instantiating a component defined in this component."""

    index: int  # in the component instance index space
    component: int  # in the component index space
    section: int  # ordinal of the component section holding the nested component


@dataclass
class Component:
    wasm: bytes
    sections: list[Section]
    counts: dict[Sort, int]
    module_sections: dict[int, int]  # core module index -> section ordinal (defined ones)
    instances: list[CoreInstance]
    exports: list[ComponentExport]
    # Component function index -> the function it aliases, for functions made by exports.
    export_aliases: dict[int, int] = field(default_factory=dict)
    # Nested components by section ordinal, and the instances made of them here.
    children: dict[int, Component] = field(default_factory=dict)
    component_instances: list[ComponentInstance] = field(default_factory=list)
    # Component index -> where it comes from: a section ordinal (defined here), or the
    # component an outer alias names, or a description of an import or export alias.
    component_origins: dict[int, int | Component | str] = field(default_factory=dict)

    def module_bytes(self, section: int) -> bytes:
        sec = self.sections[section]
        return self.wasm[sec.payload_start : sec.end]

    def export(self, name: str) -> ComponentExport | None:
        return next((e for e in self.exports if e.name == name), None)

    def has_state(self) -> bool:
        """Whether instantiating this component instantiates core modules, at any depth."""
        return bool(self.instances) or any(
            self.children[i.section].has_state() for i in self.component_instances
        )


def parse_component(wasm: bytes, outer: tuple[Component, ...] = ()) -> Component:
    """Parse `wasm`; `outer` holds the enclosing components, innermost last (for aliases)."""
    if wasm[:4] != MAGIC:
        raise InvalidModule("not a WebAssembly component (the file does not start with \\0asm)")
    if not is_component(wasm):
        raise InvalidModule("expected a component, found a core module")
    if wasm[4:8] != COMPONENT_VERSION:
        raise InvalidModule(
            f"unsupported component binary version {wasm[4:6].hex(' ')} (expected 0d 00)"
        )
    component = Component(wasm, _split(wasm, 8, len(wasm)), dict.fromkeys(Sort, 0), {}, [], [])
    module_kinds: dict[int, str] = {}
    for ordinal, sec in enumerate(component.sections):
        _read_section(component, ordinal, sec, module_kinds, outer)
    return component


def _split(wasm: bytes, pos: int, end: int) -> list[Section]:
    sections = []
    while pos < end:
        start = pos
        section_id, pos = read_byte(wasm, pos)
        size, pos = read_uleb(wasm, pos)
        if pos + size > end:
            raise InvalidModule(f"section {section_id} at offset {start:#x} runs past the end")
        if section_id > SectionId.VALUE:
            raise InvalidModule(f"unknown component section id {section_id} at {start:#x}")
        sections.append(Section(section_id, start, pos, pos + size))
        pos += size
    return sections


def _read_section(
    c: Component, ordinal: int, sec: Section, kinds: dict[int, str], outer: tuple[Component, ...]
) -> None:
    buf = c.wasm
    counts = c.counts
    sid = sec.id
    if sid == SectionId.CUSTOM:
        return
    if sid == SectionId.CORE_MODULE:
        index = counts[Sort.CORE_MODULE]
        c.module_sections[index] = ordinal
        kinds[index] = "defined"
        counts[Sort.CORE_MODULE] += 1
        return
    if sid == SectionId.COMPONENT:
        c.children[ordinal] = parse_component(buf[sec.payload_start : sec.end], (*outer, c))
        c.component_origins[counts[Sort.COMPONENT]] = ordinal
        counts[Sort.COMPONENT] += 1
        return
    if sid == SectionId.START:
        raise UnsupportedModule("component start functions are not supported")
    if sid == SectionId.VALUE:
        raise UnsupportedModule("component value definitions are not supported")
    count, pos = read_uleb(buf, sec.payload_start)
    for position in range(count):
        at = pos
        if sid == SectionId.CORE_INSTANCE:
            pos = _core_instance(c, buf, pos, kinds)
        elif sid == SectionId.CORE_TYPE:
            pos = _skip_core_type(buf, pos)
            counts[Sort.CORE_TYPE] += 1
        elif sid == SectionId.INSTANCE:
            if buf[pos] == 0x00:
                _component_instance(c, read_uleb(buf, pos + 1)[0])
            pos = _instance(buf, pos, None)[1]
            counts[Sort.INSTANCE] += 1
        elif sid == SectionId.ALIAS:
            sort, target, pos = _alias(buf, pos)
            if sort == Sort.CORE_MODULE:
                kinds[counts[sort]] = "an alias" if target is None else "an outer alias"
            elif sort == Sort.COMPONENT:
                c.component_origins[counts[sort]] = _aliased_component(target, outer)
            counts[sort] += 1
        elif sid == SectionId.TYPE:
            pos = _skip_type(buf, pos)
            counts[Sort.TYPE] += 1
        elif sid == SectionId.CANON:
            lift, pos = _canon(buf, pos, None)[1:]
            counts[Sort.FUNC if lift else Sort.CORE_FUNC] += 1
        elif sid == SectionId.IMPORT:
            _, pos = _extern_name(buf, pos)
            sort, pos = _extern_type(buf, pos)
            if sort == Sort.CORE_MODULE:
                kinds[counts[sort]] = "an import"
            elif sort == Sort.COMPONENT:
                c.component_origins[counts[sort]] = "an import"
            counts[sort] += 1
        elif sid == SectionId.EXPORT:
            name, pos = _extern_name(buf, pos)
            sort, index, pos = _sortidx(buf, pos)
            if read_byte(buf, pos)[0] == 1:
                pos = _extern_type(buf, pos + 1)[1]
            else:
                pos += 1
            new_index = counts[sort]
            c.exports.append(ComponentExport(name, sort, index, new_index, ordinal, position))
            if sort == Sort.FUNC:
                c.export_aliases[new_index] = c.export_aliases.get(index, index)
            elif sort == Sort.COMPONENT:  # the export names the same component again
                c.component_origins[new_index] = c.component_origins.get(index, "unknown")
            counts[sort] += 1
        if pos <= at:  # pragma: no cover - every reader consumes bytes
            raise InvalidModule(f"malformed component section {sid} at {at:#x}")
    if pos != sec.end:
        raise InvalidModule(f"section size mismatch in component section {sid} at {pos:#x}")


def _core_instance(c: Component, buf: bytes, pos: int, kinds: dict[int, str]) -> int:
    index = c.counts[Sort.CORE_INSTANCE]
    c.counts[Sort.CORE_INSTANCE] += 1
    kind, pos = read_byte(buf, pos)
    if kind == 0x00:
        module, pos = read_uleb(buf, pos)
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            _, pos = read_name(buf, pos)
            pos = read_uleb(buf, pos + 1)[1]  # 0x12 (instance), then the instance index
        if kinds.get(module) != "defined":
            raise UnsupportedModule(
                f"core instance {index} instantiates core module {module}, which is "
                f"{kinds.get(module, 'unknown')} rather than defined in the component: "
                "its code cannot be rewritten"
            )
        c.instances.append(CoreInstance(index, module, c.module_sections[module]))
        return pos
    if kind == 0x01:
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            _, pos = read_name(buf, pos)
            pos = read_uleb(buf, pos + 1)[1]
        return pos
    raise InvalidModule(f"unknown core instance kind {kind:#x} at {pos - 1:#x}")


def _component_instance(c: Component, component: int) -> None:
    """Record an instance of a nested component; one whose modules live somewhere the
    rewrite cannot reach is an error."""
    index = c.counts[Sort.INSTANCE]
    origin = c.component_origins.get(component, "unknown")
    if isinstance(origin, int):
        c.component_instances.append(ComponentInstance(index, component, origin))
    elif isinstance(origin, Component):
        if origin.has_state():
            raise UnsupportedModule(
                f"component instance {index} instantiates component {component}, an outer "
                "alias of a component that instantiates core modules: their state cannot be "
                "written back through an alias"
            )
    else:
        raise UnsupportedModule(
            f"component instance {index} instantiates component {component}, which is "
            f"{origin} rather than defined in the component: its state cannot be snapshotted"
        )


def _aliased_component(
    target: tuple[int, int] | None, outer: tuple[Component, ...]
) -> Component | str:
    """The component an outer alias names, if it is defined in an enclosing component."""
    if target is None:
        return "an alias of an instance export"
    count, index = target
    if count == 0 or count > len(outer):
        return "an outer alias"
    enclosing = outer[-count]
    origin = enclosing.component_origins.get(index)
    if isinstance(origin, int):
        return enclosing.children[origin]
    return origin if origin is not None else "an outer alias"


# --- names, sorts, types -----------------------------------------------------------------------


def _extern_name(buf: bytes, pos: int) -> tuple[str, int]:
    kind, pos = read_byte(buf, pos)
    name, pos = read_name(buf, pos)
    if kind == 0x02:  # attributes
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            attr, pos = read_byte(buf, pos)
            _, pos = read_name(buf, pos)
            if attr not in (0, 1, 2):
                raise InvalidModule(f"unknown name attribute {attr:#x} at {pos:#x}")
    elif kind not in (0x00, 0x01):
        raise InvalidModule(f"unknown extern name kind {kind:#x} at {pos - 1:#x}")
    return name, pos


def _sort(buf: bytes, pos: int) -> tuple[Sort, int]:
    byte, pos = read_byte(buf, pos)
    if byte == 0x00:
        core, pos = read_byte(buf, pos)
        try:
            return Sort(CORE_BASE + core), pos
        except ValueError:
            raise InvalidModule(f"unknown core sort {core:#x} at {pos - 1:#x}") from None
    try:
        return Sort(byte), pos
    except ValueError:
        raise InvalidModule(f"unknown sort {byte:#x} at {pos - 1:#x}") from None


def _sortidx(buf: bytes, pos: int) -> tuple[Sort, int, int]:
    sort, pos = _sort(buf, pos)
    index, pos = read_uleb(buf, pos)
    return sort, index, pos


def _extern_type(buf: bytes, pos: int) -> tuple[Sort, int]:
    kind, pos = read_byte(buf, pos)
    if kind == 0x00:
        return Sort.CORE_MODULE, read_uleb(buf, pos + 1)[1]
    if kind in (0x01, 0x04, 0x05):
        return _EXTERN_SORTS[kind], read_uleb(buf, pos)[1]
    if kind == 0x02:  # value bound
        bound, pos = read_byte(buf, pos)
        return Sort.VALUE, (read_uleb(buf, pos)[1] if bound == 0 else _skip_valtype(buf, pos))
    if kind == 0x03:  # type bound: eq i, or sub resource
        bound, pos = read_byte(buf, pos)
        return Sort.TYPE, (read_uleb(buf, pos)[1] if bound == 0 else pos)
    raise InvalidModule(f"unknown extern type {kind:#x} at {pos - 1:#x}")


def _alias(buf: bytes, pos: int) -> tuple[Sort, tuple[int, int] | None, int]:
    """An alias's sort, its (outer count, index) for an outer alias (None for an export
    alias), and the position after it."""
    sort, pos = _sort(buf, pos)
    target, pos = read_byte(buf, pos)
    if target in (0x00, 0x01):
        _, pos = read_uleb(buf, pos)
        _, pos = read_name(buf, pos)
        return sort, None, pos
    if target == 0x02:
        count, pos = read_uleb(buf, pos)
        index, pos = read_uleb(buf, pos)
        return sort, (count, index), pos
    raise InvalidModule(f"unknown alias target {target:#x} at {pos - 1:#x}")


def _skip_valtype(buf: bytes, pos: int) -> int:
    # A one-byte negative s33 is a primitive type; anything else a (positive) type index.
    if read_byte(buf, pos)[0] & 0xC0 == 0x40:
        return pos + 1
    return read_uleb(buf, pos)[1]


def _skip_optional_valtype(buf: bytes, pos: int) -> int:
    flag, pos = read_byte(buf, pos)
    return _skip_valtype(buf, pos) if flag == 1 else pos


def _skip_labels(buf: bytes, pos: int) -> int:
    count, pos = read_uleb(buf, pos)
    for _ in range(count):
        _, pos = read_name(buf, pos)
    return pos


def _skip_defvaltype(buf: bytes, pos: int) -> int:
    code, pos = read_byte(buf, pos)
    if code == 0x72:  # record
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            _, pos = read_name(buf, pos)
            pos = _skip_valtype(buf, pos)
        return pos
    if code == 0x71:  # variant
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            _, pos = read_name(buf, pos)
            pos = _skip_optional_valtype(buf, pos)
            refines, pos = read_byte(buf, pos)
            if refines == 1:
                _, pos = read_uleb(buf, pos)
        return pos
    if code in (0x70, 0x6B):  # list, option
        return _skip_valtype(buf, pos)
    if code == 0x67:  # fixed-length list
        return read_uleb(buf, _skip_valtype(buf, pos))[1]
    if code == 0x6F:  # tuple
        count, pos = read_uleb(buf, pos)
        for _ in range(count):
            pos = _skip_valtype(buf, pos)
        return pos
    if code in (0x6E, 0x6D):  # flags, enum
        return _skip_labels(buf, pos)
    if code == 0x6A:  # result
        return _skip_optional_valtype(buf, _skip_optional_valtype(buf, pos))
    if code in (0x69, 0x68):  # own, borrow
        return read_uleb(buf, pos)[1]
    if code in (0x66, 0x65):  # stream, future
        return _skip_optional_valtype(buf, pos)
    if code == 0x63:  # map
        return _skip_valtype(buf, _skip_valtype(buf, pos))
    if 0x64 <= code <= 0x7F:  # primitive
        return pos
    raise InvalidModule(f"unknown component type {code:#x} at {pos - 1:#x}")


def _skip_type(buf: bytes, pos: int) -> int:
    code = buf[pos] if pos < len(buf) else -1
    if code in (0x40, 0x43):  # func
        count, pos = read_uleb(buf, pos + 1)
        for _ in range(count):
            _, pos = read_name(buf, pos)
            pos = _skip_valtype(buf, pos)
        kind, pos = read_byte(buf, pos)
        return _skip_valtype(buf, pos) if kind == 0x00 else pos + 1
    if code in (0x41, 0x42):  # component, instance type
        count, pos = read_uleb(buf, pos + 1)
        for _ in range(count):
            pos = _skip_decl(buf, pos)
        return pos
    if code == 0x3F:  # resource: rep, optional destructor
        pos += 2
        flag, pos = read_byte(buf, pos)
        return read_uleb(buf, pos)[1] if flag == 1 else pos
    return _skip_defvaltype(buf, pos)


def _skip_decl(buf: bytes, pos: int) -> int:
    kind, pos = read_byte(buf, pos)
    if kind == 0x00:
        return _skip_core_type(buf, pos)
    if kind == 0x01:
        return _skip_type(buf, pos)
    if kind == 0x02:
        return _alias(buf, pos)[2]
    if kind in (0x03, 0x04):  # import, export
        _, pos = _extern_name(buf, pos)
        return _extern_type(buf, pos)[1]
    raise InvalidModule(f"unknown declaration kind {kind:#x} at {pos - 1:#x}")


def _skip_core_type(buf: bytes, pos: int) -> int:
    from ..wasm.parse import _Parsed, _read_type_entry, read_limits, read_valtype

    if buf[pos : pos + 2] == b"\x00\x50":  # a non-final GC subtype, prefixed here
        return _read_type_entry(_Parsed(buf), buf, pos + 1)
    if buf[pos] != 0x50:
        return _read_type_entry(_Parsed(buf), buf, pos)
    count, pos = read_uleb(buf, pos + 1)
    for _ in range(count):  # module type declarations
        kind, pos = read_byte(buf, pos)
        if kind == 0x01:
            pos = _read_type_entry(_Parsed(buf), buf, pos)
        elif kind == 0x02:  # outer alias: sort, 0x01, ct, idx
            pos = read_uleb(buf, read_uleb(buf, pos + 2)[1])[1]
        elif kind in (0x00, 0x03):
            if kind == 0x00:
                _, pos = read_name(buf, pos)
            _, pos = read_name(buf, pos)
            desc, pos = read_byte(buf, pos)
            if desc in (0x00, 0x04):
                pos = read_uleb(buf, pos + (1 if desc == 0x04 else 0))[1]
            elif desc == 0x01:
                pos = read_limits(buf, read_valtype(buf, pos)[1])[1]
            elif desc == 0x02:
                pos = read_limits(buf, pos)[1]
            elif desc == 0x03:
                pos = read_valtype(buf, pos)[1] + 1
            else:
                raise InvalidModule(f"unknown core import kind {desc:#x} at {pos - 1:#x}")
        else:
            raise InvalidModule(f"unknown module type declaration {kind:#x} at {pos - 1:#x}")
    return pos


# --- function references, for renumbering -----------------------------------------------------

Remap = Callable[[int], int]


def _opts(buf: bytes, pos: int) -> int:
    count, pos = read_uleb(buf, pos)
    for _ in range(count):
        opt, pos = read_byte(buf, pos)
        if opt in (0x03, 0x04, 0x05, 0x07, 0x08):  # memory, realloc, post-return, callback, type
            _, pos = read_uleb(buf, pos)
        elif opt > 0x08:
            raise InvalidModule(f"unknown canonical option {opt:#x} at {pos - 1:#x}")
    return pos


# Canonical built-ins by the immediates that follow their opcode: "t" a type index, "o" options,
# "b" a one-byte flag, "v" a core value type byte then an index, "m" a core memory index.
_CANON_IMMEDIATES: Final = {
    0x02: "t", 0x03: "t", 0x04: "t", 0x07: "t", 0x24: "", 0x25: "", 0x05: "", 0x0A: "v",
    0x0B: "v", 0x06: "b", 0x0D: "", 0x0E: "t", 0x0F: "to", 0x10: "to", 0x11: "tb", 0x12: "tb",
    0x13: "t", 0x14: "t", 0x15: "t", 0x16: "to", 0x17: "to", 0x18: "tb", 0x19: "tb", 0x1A: "t",
    0x1B: "t", 0x1C: "o", 0x1D: "o", 0x1E: "", 0x1F: "", 0x20: "bm", 0x21: "bm", 0x22: "",
    0x23: "", 0x26: "", 0x27: "tt", 0x28: "", 0x29: "b", 0x0C: "b", 0x2A: "b", 0x2B: "b",
    0x2C: "b", 0x2D: "b", 0x40: "bt", 0x41: "btt", 0x42: "b",
}  # fmt: skip


def _canon(buf: bytes, pos: int, remap: Remap | None) -> tuple[bytes, bool, int]:
    """Skip one canonical definition; return it re-encoded with `remap` applied to the
    component function it lowers, whether it is a lift, and the new position."""
    start = pos
    op, pos = read_byte(buf, pos)
    if op == 0x00:  # lift: 0x00 core func, options, type
        _, pos = read_uleb(buf, pos + 1)
        pos = read_uleb(buf, _opts(buf, pos))[1]
        return buf[start:pos], True, pos
    if op == 0x01:  # lower: 0x00 func, options
        func, after = read_uleb(buf, pos + 1)
        pos = _opts(buf, after)
        if remap is None:
            return buf[start:pos], False, pos
        return b"\x01\x00" + uleb(remap(func)) + buf[after:pos], False, pos
    if op == 0x09:  # task.return: result list, options
        kind, pos = read_byte(buf, pos)
        pos = _skip_valtype(buf, pos) if kind == 0x00 else pos + 1
        pos = _opts(buf, pos)
        return buf[start:pos], False, pos
    immediates = _CANON_IMMEDIATES.get(op)
    if immediates is None:
        raise UnsupportedModule(f"unknown canonical definition {op:#x} at offset {start:#x}")
    for immediate in immediates:
        if immediate in "tm":
            _, pos = read_uleb(buf, pos)
        elif immediate == "o":
            pos = _opts(buf, pos)
        elif immediate == "b":
            pos += 1
        elif immediate == "v":
            pos = read_uleb(buf, pos + 1)[1]
    return buf[start:pos], False, pos


def _instance(buf: bytes, pos: int, remap: Remap | None) -> tuple[bytes, int]:
    """One component instance definition, re-encoded with `remap` on function indices."""
    kind, pos = read_byte(buf, pos)
    out = bytearray([kind])
    if kind == 0x00:
        component, pos = read_uleb(buf, pos)
        out += uleb(component)
    elif kind != 0x01:
        raise InvalidModule(f"unknown instance kind {kind:#x} at {pos - 1:#x}")
    count, pos = read_uleb(buf, pos)
    out += uleb(count)
    for _ in range(count):
        name_start = pos
        if kind == 0x00:
            _, pos = read_name(buf, pos)
        else:
            _, pos = _extern_name(buf, pos)
        out += buf[name_start:pos]
        pos, item = _remap_sortidx(buf, pos, remap)
        out += item
    return bytes(out), pos


def _remap_sortidx(buf: bytes, pos: int, remap: Remap | None) -> tuple[int, bytes]:
    start = pos
    sort, index, pos = _sortidx(buf, pos)
    if sort == Sort.FUNC and remap is not None:
        return pos, b"\x01" + uleb(remap(index))
    return pos, buf[start:pos]


def reassemble(
    c: Component, modules: dict[int, bytes], drop: ComponentExport | None = None
) -> bytes:
    """The component with the core module sections at the given ordinals replaced and, if
    `drop` is given, without that function export: every later function index shifts down,
    and references to the dropped export go to the function it aliased."""
    remap: Remap | None = None
    if drop is not None:
        removed = drop.new_index
        target = c.export_aliases.get(removed, drop.index)

        def remap(index: int) -> int:
            if index == removed:
                return target
            return index - 1 if index > removed else index

    out = [c.wasm[:8]]
    for ordinal, sec in enumerate(c.sections):
        payload: bytes | None = None
        if ordinal in modules:
            payload = modules[ordinal]
        elif drop is not None and remap is not None:
            payload = _remap_section(c, ordinal, sec, remap, drop)
        if payload is None:
            out.append(c.wasm[sec.start : sec.end])
        else:
            out += (bytes([sec.id]), uleb(len(payload)), payload)  # one copy, in the join
    return b"".join(out)


def _remap_section(
    c: Component, ordinal: int, sec: Section, remap: Remap, drop: ComponentExport
) -> bytes | None:
    buf = c.wasm
    if sec.id == SectionId.CUSTOM:
        return _remap_names(buf, sec, drop.new_index)
    if sec.id not in (SectionId.INSTANCE, SectionId.CANON, SectionId.EXPORT):
        return None
    count, pos = read_uleb(buf, sec.payload_start)
    items = []
    for position in range(count):
        if sec.id == SectionId.INSTANCE:
            item, pos = _instance(buf, pos, remap)
        elif sec.id == SectionId.CANON:
            item, _, pos = _canon(buf, pos, remap)
        else:
            start = pos
            _, pos = _extern_name(buf, pos)
            head = buf[start:pos]
            pos, sortidx = _remap_sortidx(buf, pos, remap)
            ascribed_start = pos
            pos = _extern_type(buf, pos + 1)[1] if buf[pos] == 1 else pos + 1
            if ordinal == drop.section and position == drop.position:
                continue
            item = head + sortidx + buf[ascribed_start:pos]
        items.append(item)
    return uleb(len(items)) + b"".join(items)


def _remap_names(buf: bytes, sec: Section, removed: int) -> bytes | None:
    """The `component-name` section with the removed function's name dropped and later
    function names renumbered; other custom sections stay as they are."""
    try:
        title, pos = read_name(buf, sec.payload_start)
    except InvalidModule:
        return None
    if title != "component-name":
        return None
    out = bytearray(buf[sec.payload_start : pos])
    try:
        while pos < sec.end:
            kind, body = read_byte(buf, pos)
            size, body = read_uleb(buf, body)
            end = body + size
            sort_start = body
            if kind == 1:
                sort, body = _sort(buf, body)
                if sort == Sort.FUNC:
                    count, body = read_uleb(buf, body)
                    entries = []
                    for _ in range(count):
                        index, body = read_uleb(buf, body)
                        name_start = body
                        _, body = read_name(buf, body)
                        if index != removed:
                            shifted = index - 1 if index > removed else index
                            entries.append(uleb(shifted) + buf[name_start:body])
                    sub = buf[sort_start : sort_start + 1] + uleb(len(entries)) + b"".join(entries)
                    out += bytes([kind]) + uleb(len(sub)) + sub
                    pos = end
                    continue
            out += buf[pos:end]
            pos = end
    except InvalidModule:
        return None  # a malformed name section is left alone
    return bytes(out)
