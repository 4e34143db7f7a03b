"""Instrument a component: its core modules as for core wizening, plus an accessor.

Every instantiated core module goes through the core instrumentation (embedded mode), which
exports its mutable globals, memories and tables under `__wizer_` names. A host cannot reach a
component's core instances, so an accessor core module is added that imports those exports and
offers small functions the component lifts and exports under `hatch-wizer-*` names:

- a global's raw bits as u32/u64 (floats reinterpreted, v128 as two u64 halves, references as
  a null flag), so NaN payloads survive and nothing is lost to the canonical ABI;
- a memory's byte size, read without growing it (a memory at its maximum is fine);
- `scan(offset, units)`: one byte per 4 KiB unit, 1 where the unit holds a non-zero byte;
- `read(offset, length)`: a window of the memory, copied into the accessor's own scratch memory
  and lifted as a latin1 string: one memcpy-speed transfer instead of a per-element list<u8>;
- a table's size and, for a module whose code writes tables, the site of the last write that
  ran (see `barrier.py`). Wasm cannot compare function references, so tables are checked, not
  snapshotted: no table write may run and no table may grow.

Nested components are instrumented the same way, inside: each gets its own accessor and
exports its lifts (and those of its own nested instances); the enclosing component aliases
them from every instance of the nested component and exports them again under the prefix
`i{instance}-`, so the root exports every core instance's accessors, however deep.

The additions are appended after each component's last section, so no existing index moves;
the rewrite starts again from the original sections, so none of them reach the output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from ..errors import InitError, UnsupportedModule, option
from ..module.instrumentation import ModuleContext, instrument_module
from ..options import WizenOptions
from ..wasm.binary import name, section, sleb, uleb, vector
from ..wasm.parse import EXTERNREF, FUNCREF, Limits, parse_module
from .barrier import WRITES_EXPORT, WriteSite, add_barriers, write_sites
from .parse import (
    Component,
    ComponentExport,
    CoreInstance,
    SectionId,
    Sort,
    parse_component,
    reassemble,
)

__all__ = [
    "ACCESS_PREFIX",
    "CHUNK",
    "SCAN_UNIT",
    "ComponentContext",
    "InitCall",
    "ModuleAccess",
    "instrument_component",
]

ACCESS_PREFIX: Final = "hatch-wizer-"
SCAN_UNIT: Final = 4096
# Largest window one `read` returns; the scratch memory holds it after a 16-byte header.
CHUNK: Final = 4 << 20
_HEADER: Final = 16
_SCRATCH_PAGES: Final = (CHUNK + _HEADER + 0xFFFF) // 0x10000

# Core function types of the accessor module.
_T_I32: Final = 0  # [] -> [i32]
_T_I64: Final = 1  # [] -> [i64]
_T_WINDOW: Final = 2  # [i64 offset, i32 length] -> [i32 result pointer]
_CORE_TYPES: Final = [b"\x60\x00\x01\x7f", b"\x60\x00\x01\x7e", b"\x60\x02\x7e\x7f\x01\x7f"]

# Component function types, appended to the type index space in this order.
_C_U32: Final = 0
_C_U64: Final = 1
_C_WINDOW: Final = 2
_C_UNIT: Final = 3
_COMPONENT_TYPES: Final = [
    b"\x40\x00\x00\x79",
    b"\x40\x00\x00\x77",
    b"\x40\x02" + name("offset") + b"\x77" + name("length") + b"\x79\x00\x73",
    b"\x40\x00\x01\x00",
]


@dataclass(frozen=True)
class _Lift:
    """A core function lifted and exported by the component under `export`."""

    export: str
    instance: int | None  # a module's core instance, or None for the accessor
    field: str  # the core export to alias
    ctype: int
    scratch: bool  # lifted with the accessor's memory and latin1 strings


@dataclass(frozen=True)
class InitCall:
    """The init export: a function name, optionally inside an exported instance, with
    arguments in WAVE syntax (empty for a `func()`)."""

    text: str
    name: str
    args: str | None  # None when called without parentheses


@dataclass(frozen=True)
class ModuleAccess:
    """One instantiated module: its core context and the accessor exports that reach it."""

    instance: CoreInstance
    context: ModuleContext
    globals: dict[str, tuple[str, ...]]  # __wizer_global name -> accessor exports (v128: two)
    memory_size: dict[str, str]
    memory_scan: dict[str, str]
    memory_read: dict[str, str]
    table_size: dict[str, str]
    probes: dict[str, str]
    table_writes: str | None = None  # the last table write that ran (1 + site), if any can
    write_sites: tuple[WriteSite, ...] = ()
    # Component section ordinals from the root to the component that defines the module.
    scope: tuple[int, ...] = ()
    where: str = ""  # for messages: "core instance 3 in component instance 1"

    def reexported(self, instance: int, section: int) -> ModuleAccess:
        """This access as seen from the component enclosing the instance `instance` (of the
        nested component in section `section`), which exports every accessor again."""

        def outer(export: str) -> str:
            return _reexport_name(instance, export)

        return replace(
            self,
            globals={k: tuple(map(outer, v)) for k, v in self.globals.items()},
            memory_size={k: outer(v) for k, v in self.memory_size.items()},
            memory_scan={k: outer(v) for k, v in self.memory_scan.items()},
            memory_read={k: outer(v) for k, v in self.memory_read.items()},
            table_size={k: outer(v) for k, v in self.table_size.items()},
            probes={k: outer(v) for k, v in self.probes.items()},
            table_writes=None if self.table_writes is None else outer(self.table_writes),
            scope=(section, *self.scope),
            where=f"{self.where} in component instance {instance}",
        )


def _reexport_name(instance: int, export: str) -> str:
    return f"{ACCESS_PREFIX}i{instance}-{export.removeprefix(ACCESS_PREFIX)}"


@dataclass(frozen=True)
class ComponentContext:
    component: Component
    options: WizenOptions
    init: InitCall
    modules: tuple[ModuleAccess, ...]
    drop: ComponentExport | None  # the init export, removed from the output


def parse_init_call(text: str) -> InitCall:
    text = text.strip()
    if "(" not in text:
        return InitCall(text, text, None)
    if not text.endswith(")"):
        raise UnsupportedModule(f"init function call `{text}` must end with `)`")
    head, _, rest = text.partition("(")
    return InitCall(text, head.strip(), rest[:-1])


def instrument_component(wasm: bytes, options: WizenOptions) -> tuple[ComponentContext, bytes]:
    component = parse_component(wasm)
    if options.renames:
        raise UnsupportedModule(f"components do not support renaming exports ({option('renames')})")
    init = parse_init_call(options.init_func)
    drop = _init_export(component, init, options.keep_init_func)
    out, accesses, _ = _instrument(component, options)
    return ComponentContext(component, options, init, tuple(accesses), drop), out


# An instrumented component: its bytes, its accesses, and the accessor names it exports.
_Instrumented = tuple[bytes, list[ModuleAccess], list[str]]


def _instrument(component: Component, options: WizenOptions) -> _Instrumented:
    """One component instrumented, with its nested components: its bytes, the accesses to
    every core instance it makes (at any depth), and the accessor names it exports."""
    _check_reserved(component)
    modules: dict[int, bytes] = {}
    # By section ordinal: one per module, however many times it is instantiated.
    contexts: dict[int, tuple[ModuleContext, list[WriteSite]]] = {}
    for instance in component.instances:
        if instance.section not in contexts:
            module = parse_module(component.module_bytes(instance.section))
            context, instrumented = instrument_module(module, options, embedded=True)
            sites = write_sites(module)
            if sites:
                instrumented = add_barriers(instrumented, sites)
            contexts[instance.section] = context, sites
            modules[instance.section] = instrumented
    builder = _Accessor(component)
    accesses = [builder.add(i, *contexts[i.section]) for i in component.instances]
    nested: dict[int, _Instrumented] = {}
    for child in component.component_instances:
        if not component.children[child.section].has_state():
            continue
        if child.section not in nested:
            nested[child.section] = _instrument(component.children[child.section], options)
        wasm, inner, exported = nested[child.section]
        modules[child.section] = wasm
        accesses += [a.reexported(child.index, child.section) for a in inner]
        builder.reexport(child.index, exported)
    return reassemble(component, modules) + builder.sections(), accesses, builder.exported()


def _check_reserved(component: Component) -> None:
    for export in component.exports:
        if export.name.startswith(ACCESS_PREFIX):
            raise UnsupportedModule(
                f"the component exports `{export.name}`, but names starting with "
                f"`{ACCESS_PREFIX}` are reserved for hatch-wizer"
            )


def _init_export(component: Component, init: InitCall, keep: bool) -> ComponentExport | None:
    """The top-level export the output drops: the init function's, unless it is kept."""
    export = component.export(init.name)
    if export is None:
        if "." not in init.name:
            raise InitError(
                f"the component has no `{init.name}` export (choose one with {option('init_func')})"
            )
        if not keep:
            raise UnsupportedModule(
                f"`{init.name}` is a function inside an exported instance, which cannot be "
                f"removed from the output; add {option('keep_init_func')}"
            )
        return None
    if export.sort != Sort.FUNC:
        raise InitError(f"the component's `{init.name}` export is not a function")
    return None if keep else export


class _Accessor:
    """Collects the accessor module's imports and functions and their component lifts."""

    def __init__(self, component: Component) -> None:
        self.counts = component.counts
        self.imports: list[bytes] = []
        self.imported = {"func": 0, "table": 0, "memory": 0, "global": 0}
        self.funcs: list[tuple[int, bytes, bytes]] = []  # (core type, locals, body)
        self.lifts: list[_Lift] = []
        self.instances: list[int] = []
        self.reexports: list[tuple[int, str]] = []  # (component instance, its export)

    # -- imports ------------------------------------------------------------------------------

    def _import(self, instance: int, field: str, kind: str, desc: bytes) -> int:
        index = self.imported[kind]
        self.imported[kind] += 1
        code = {"func": 0, "table": 1, "memory": 2, "global": 3}[kind]
        self.imports.append(name(str(instance)) + name(field) + bytes([code]) + desc)
        return index

    # -- per module ---------------------------------------------------------------------------

    def add(
        self, instance: CoreInstance, context: ModuleContext, sites: list[WriteSite]
    ) -> ModuleAccess:
        module = context.module
        c = instance.index
        if c not in self.instances:
            self.instances.append(c)
        tag = f"c{c}"
        globals_: dict[str, tuple[str, ...]] = {}
        by_index = {g.index: g for g in module.globals}
        for index, valtype, export in context.globals:
            g = by_index[index]
            imported = self._import(c, export, "global", g.type_raw + b"\x01")
            get = b"\x23" + uleb(imported)
            if valtype in ("i32", "f32"):
                body = get + (b"\xbc" if valtype == "f32" else b"")
                globals_[export] = (self._func(f"{tag}-g{index}", _T_I32, body, _C_U32),)
            elif valtype in ("i64", "f64"):
                body = get + (b"\xbd" if valtype == "f64" else b"")
                globals_[export] = (self._func(f"{tag}-g{index}", _T_I64, body, _C_U64),)
            elif valtype == "v128":
                lo = self._func(f"{tag}-g{index}-lo", _T_I64, get + b"\xfd\x1d\x00", _C_U64)
                hi = self._func(f"{tag}-g{index}-hi", _T_I64, get + b"\xfd\x1d\x01", _C_U64)
                globals_[export] = (lo, hi)
            elif valtype in (FUNCREF, EXTERNREF):
                body = get + b"\xd1"  # ref.is_null
                globals_[export] = (self._func(f"{tag}-g{index}-null", _T_I32, body, _C_U32),)
            else:  # pragma: no cover - the core instrumentation rejects other types
                raise UnsupportedModule(f"global {index} of core instance {c} has type {valtype}")
        sizes, scans, reads = {}, {}, {}
        for i, (export, limits) in enumerate(zip(context.memories, module.memories)):
            memory = self._import(c, export, "memory", _any_size(limits))
            sizes[export] = self._func(f"{tag}-m{i}-size", _T_I64, _size(memory, limits), _C_U64)
            locals_, body = _scan(memory, limits.is64)
            scans[export] = self._func(
                f"{tag}-m{i}-scan", _T_WINDOW, body, _C_WINDOW, scratch=True, locals_=locals_
            )
            reads[export] = self._func(
                f"{tag}-m{i}-read", _T_WINDOW, _read(memory, limits.is64), _C_WINDOW, scratch=True
            )
        tables = {}
        for i, (export, table) in enumerate(zip(context.tables, module.tables)):
            if table.type_raw not in (b"\x70", b"\x6f"):
                raise UnsupportedModule(
                    f"table {table.index} of core instance {c} holds typed references; "
                    "tables in components can only hold funcref or externref"
                )
            flags = 0x04 if table.limits.is64 else 0x00
            imported = self._import(c, export, "table", table.type_raw + bytes([flags, 0]))
            body = b"\xfc\x10" + uleb(imported)
            kind, ctype = (_T_I64, _C_U64) if table.limits.is64 else (_T_I32, _C_U32)
            tables[export] = self._func(f"{tag}-t{i}-size", kind, body, ctype)
        probes = {}
        for _, probe in (*context.data_probes, *context.elem_probes):
            lifted = f"{ACCESS_PREFIX}{tag}-{probe.removeprefix('__wizer_').replace('_', '-')}"
            self.lifts.append(_Lift(lifted, c, probe, _C_UNIT, False))
            probes[probe] = lifted
        writes = None
        if sites:
            imported = self._import(c, WRITES_EXPORT, "global", b"\x7f\x01")
            body = b"\x23" + uleb(imported)
            writes = self._func(f"{tag}-table-writes", _T_I32, body, _C_U32)
        return ModuleAccess(
            instance,
            context,
            globals_,
            sizes,
            scans,
            reads,
            tables,
            probes,
            table_writes=writes,
            write_sites=tuple(sites),
            where=f"core instance {c}",
        )

    def reexport(self, instance: int, exports: list[str]) -> None:
        """Export again the accessors that a nested component's instance exports."""
        self.reexports += [(instance, export) for export in exports]

    def exported(self) -> list[str]:
        own = [lift.export for lift in self.lifts]
        return own + [_reexport_name(i, export) for i, export in self.reexports]

    def _func(
        self,
        label: str,
        core_type: int,
        body: bytes,
        ctype: int,
        *,
        scratch: bool = False,
        locals_: bytes = b"\x00",
    ) -> str:
        export = f"{ACCESS_PREFIX}{label}"
        self.lifts.append(_Lift(export, None, f"f{len(self.funcs)}", ctype, scratch))
        self.funcs.append((core_type, locals_, body))
        return export

    # -- output -------------------------------------------------------------------------------

    def module(self) -> bytes:
        scratch = self.imported["memory"]  # the accessor's own memory comes after the imports
        first = self.imported["func"]
        codes = []
        for _, locals_, body in self.funcs:
            full = locals_ + body.replace(_SCRATCH_MARK, uleb(scratch)) + b"\x0b"
            codes.append(uleb(len(full)) + full)
        exports = [name(f"f{i}") + b"\x00" + uleb(first + i) for i in range(len(self.funcs))]
        exports.append(name("scratch") + b"\x02" + uleb(scratch))
        return b"".join(
            [
                b"\0asm\x01\x00\x00\x00",
                section(1, vector(_CORE_TYPES)),
                section(2, vector(self.imports)),
                section(3, vector([uleb(t) for t, _, _ in self.funcs])),
                section(5, vector([b"\x00" + uleb(_SCRATCH_PAGES)])),
                section(7, vector(exports)),
                section(10, vector(codes)),
            ]
        )

    def sections(self) -> bytes:
        """The sections to append: the accessor and its lifts, then the re-exports."""
        out = self._own_sections() if self.lifts else b""
        if self.reexports:
            func = self.counts[Sort.FUNC] + 2 * len(self.lifts)  # each lift and its export
            aliases = [
                b"\x01\x00" + uleb(instance) + name(export) for instance, export in self.reexports
            ]
            out += section(SectionId.ALIAS, vector(aliases))
            exports = [
                b"\x00" + name(_reexport_name(i, export)) + b"\x01" + uleb(func + k) + b"\x00"
                for k, (i, export) in enumerate(self.reexports)
            ]
            out += section(SectionId.EXPORT, vector(exports))
        return out

    def _own_sections(self) -> bytes:
        counts = self.counts
        module_index = counts[Sort.CORE_MODULE]
        accessor = counts[Sort.CORE_INSTANCE]
        args = [name(str(c)) + b"\x12" + uleb(c) for c in self.instances]
        out = section(SectionId.CORE_MODULE, self.module())
        out += section(
            SectionId.CORE_INSTANCE, vector([b"\x00" + uleb(module_index) + vector(args)])
        )
        aliases = []
        for lift in self.lifts:
            instance = accessor if lift.instance is None else lift.instance
            aliases.append(b"\x00\x00\x01" + uleb(instance) + name(lift.field))
        core_func = counts[Sort.CORE_FUNC]
        memory = counts[Sort.CORE_MEMORY]
        aliases.append(b"\x00\x02\x01" + uleb(accessor) + name("scratch"))
        out += section(SectionId.ALIAS, vector(aliases))
        first_type = counts[Sort.TYPE]
        out += section(SectionId.TYPE, vector(_COMPONENT_TYPES))
        lifts = []
        for i, lift in enumerate(self.lifts):
            opts = [b"\x02", b"\x03" + uleb(memory)] if lift.scratch else []
            lifts.append(
                b"\x00\x00" + uleb(core_func + i) + vector(opts) + uleb(first_type + lift.ctype)
            )
        out += section(SectionId.CANON, vector(lifts))
        first_func = counts[Sort.FUNC]
        exports = [
            b"\x00" + name(lift.export) + b"\x01" + uleb(first_func + i) + b"\x00"
            for i, lift in enumerate(self.lifts)
        ]
        out += section(SectionId.EXPORT, vector(exports))
        return out


# The scratch memory's index is only known once all imports are in: bodies carry this marker
# (an invalid opcode sequence no real body contains) where it goes.
_SCRATCH_MARK: Final = b"\xff\xfe\xfd"


def _any_size(limits: Limits) -> bytes:
    """An import type every instance of this memory matches: same kind, no bounds."""
    flags = limits.flags & 0x0C  # keep memory64 and custom page size
    out = bytes([flags]) + uleb(0)
    if limits.page_size_log2 is not None:
        out += uleb(limits.page_size_log2)
    return out


def _memarg(memory: int | None, align: int, offset: int = 0) -> bytes:
    """A memarg; None means the scratch memory (marked, patched later)."""
    index = _SCRATCH_MARK if memory is None else uleb(memory)
    return uleb(align | 0x40) + index + uleb(offset)


def _size(memory: int, limits: Limits) -> bytes:
    log2 = 16 if limits.page_size_log2 is None else limits.page_size_log2
    body = b"\x3f" + uleb(memory)
    if not limits.is64:
        body += b"\xad"  # i64.extend_i32_u
    return body + b"\x42" + uleb(log2) + b"\x86"  # i64.shl


def _result(length: bytes) -> bytes:
    """Store (16, length) at scratch offset 0 and return 0: a string's (pointer, length)."""
    return (
        b"\x41\x00\x41" + uleb(_HEADER) + b"\x36" + _memarg(None, 2)
        + b"\x41\x00" + length + b"\x36" + _memarg(None, 2, 4)
        + b"\x41\x00"
    )  # fmt: skip


def _read(memory: int, is64: bool) -> bytes:
    """memory.copy scratch[16..] <- memory[offset .. offset+length]."""
    src = b"\x20\x00" + (b"" if is64 else b"\xa7")  # i32.wrap_i64
    copy = b"\xfc\x0a" + _SCRATCH_MARK + uleb(memory)
    return b"\x41" + uleb(_HEADER) + src + b"\x20\x01" + copy + _result(b"\x20\x01")


def _scan(memory: int, is64: bool) -> tuple[bytes, bytes]:
    """Locals and body: for each 4 KiB unit from `offset`, one byte in scratch, 1 if the unit
    holds a non-zero byte. Eight 8-byte loads per step are OR-ed together."""
    u, p, end, acc = 2, 3, 4, 5  # after the parameters offset (i64) and units (i32)
    address = b"\x7e" if is64 else b"\x7f"
    locals_ = b"\x03\x01\x7f\x02" + address + b"\x01\x7e"
    a_add, a_lt, a_const = (b"\x7c", b"\x54", b"\x42") if is64 else (b"\x6a", b"\x49", b"\x41")
    offset = b"\x20\x00" if is64 else b"\x20\x00\xa7"
    unit = b"\x20" + bytes([u]) + (b"\xad" if is64 else b"")  # u as an address
    shift = b"\x42\x0c\x86" if is64 else b"\x41\x0c\x74"  # << 12
    loads = b"".join(
        b"\x20" + bytes([p]) + b"\x29" + _memarg(memory, 3, 8 * k) + b"\x84"  # i64.load; i64.or
        for k in range(8)
    )
    body = (
        b"\x02\x40"  # block $done
        + b"\x03\x40"  # loop $units
        + b"\x20" + bytes([u]) + b"\x20\x01\x4f\x0d\x01"  # u >= units: br_if $done
        + offset + unit + shift + a_add + b"\x22" + bytes([p])  # p = offset + u << 12
        + a_const + sleb(SCAN_UNIT) + a_add + b"\x21" + bytes([end])
        + b"\x42\x00\x21" + bytes([acc])
        + b"\x03\x40"  # loop $words
        + b"\x20" + bytes([acc]) + loads + b"\x21" + bytes([acc])
        + b"\x20" + bytes([p]) + a_const + sleb(64) + a_add + b"\x22" + bytes([p])
        + b"\x20" + bytes([end]) + a_lt + b"\x0d\x00"
        + b"\x0b"  # end $words
        + b"\x20" + bytes([u]) + b"\x20" + bytes([acc]) + b"\x42\x00\x52"  # acc != 0
        + b"\x3a" + _memarg(None, 0, _HEADER)  # i32.store8 scratch[16 + u]
        + b"\x20" + bytes([u]) + b"\x41\x01\x6a\x21" + bytes([u])
        + b"\x0c\x00"  # br $units
        + b"\x0b"  # end $units
        + b"\x0b"  # end $done
    )  # fmt: skip
    return locals_, body + _result(b"\x20\x01")
