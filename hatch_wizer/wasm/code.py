"""Decode function bodies instruction by instruction, to find GC object mutations.

Only modules that declare GC struct or array types pay for this walk: it is a Python loop over
every instruction. Immediates follow https://webassembly.github.io/spec/core/binary/instructions.html
plus the GC, exception-handling, threads, SIMD and wide-arithmetic proposals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ..errors import InvalidModule, UnsupportedModule
from .binary import read_byte, read_sleb, read_uleb
from .parse import Module, SectionId, function_name, read_heap_type, read_valtype, skip_number

__all__ = ["GC_MUTATIONS", "check_gc_mutations", "gc_mutations"]

GC_MUTATIONS: Final = {
    0x05: "struct.set",
    0x0E: "array.set",
    0x10: "array.fill",
    0x11: "array.copy",
    0x12: "array.init_data",
    0x13: "array.init_elem",
}

# Single-byte opcodes by immediate: "i" one LEB index, "ii" two, "m" a memarg.
_ONE_INDEX: Final = frozenset(
    [0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x14, 0x15, 0x18, 0x20, 0x21, 0x22, 0x23, 0x24,
     0x25, 0x26, 0x3F, 0x40, 0xD2, 0xD5, 0xD6]
)  # fmt: skip
_TWO_INDICES: Final = frozenset([0x11, 0x13])
_BLOCKS: Final = frozenset([0x02, 0x03, 0x04, 0x06])
# Prefixed 0xFB (GC) sub-opcodes by how many LEB indices follow.
_GC_INDICES: Final = {
    **dict.fromkeys([0, 1, 6, 7, 11, 12, 13, 14, 16], 1),
    **dict.fromkeys([2, 3, 4, 5, 8, 9, 10, 17, 18, 19], 2),
}
# Prefixed 0xFC sub-opcodes by how many LEB indices follow.
_MISC_INDICES: Final = {8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}
_SIMD_MEMARG: Final = frozenset([*range(0, 12), 92, 93])
_SIMD_MEMARG_LANE: Final = frozenset(range(84, 92))
_SIMD_LANE: Final = frozenset(range(21, 35))


def _memarg(buf: bytes, pos: int) -> int:
    align, pos = read_uleb(buf, pos)
    if align & 0x40:  # multi-memory: a memory index follows
        _, pos = read_uleb(buf, pos)
    return read_uleb(buf, pos, 64)[1]


def _block_type(buf: bytes, pos: int) -> int:
    if buf[pos] == 0x40:
        return pos + 1
    if buf[pos] in (0x63, 0x64) or 0x65 <= buf[pos] <= 0x7F:
        return read_valtype(buf, pos)[1]
    return read_sleb(buf, pos, 33)[1]


def _skip_prefixed(buf: bytes, prefix: int, pos: int) -> tuple[int, int]:
    """Skip the immediates of a prefixed instruction; return (sub-opcode, new position)."""
    sub, pos = read_uleb(buf, pos)
    if prefix == 0xFB:
        if sub in _GC_INDICES:
            for _ in range(_GC_INDICES[sub]):
                _, pos = read_uleb(buf, pos)
        elif 20 <= sub <= 23:  # ref.test / ref.cast
            _, pos = read_heap_type(buf, pos)
        elif sub in (24, 25):  # br_on_cast(_fail): flags, label, two heap types
            _, pos = read_uleb(buf, pos + 1)
            pos = read_heap_type(buf, read_heap_type(buf, pos)[1])[1]
    elif prefix == 0xFC:
        for _ in range(_MISC_INDICES.get(sub, 0)):
            _, pos = read_uleb(buf, pos)
    elif prefix == 0xFD:
        if sub in _SIMD_MEMARG or sub in _SIMD_MEMARG_LANE:
            pos = _memarg(buf, pos) + (sub in _SIMD_MEMARG_LANE)
        elif sub in (12, 13):  # v128.const, i8x16.shuffle
            pos += 16
        elif sub in _SIMD_LANE:
            pos += 1
    elif prefix == 0xFE:
        pos = pos + 1 if sub == 0x03 else _memarg(buf, pos)  # atomic.fence has a zero byte
    return sub, pos


def _instructions(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(offset, opcode, sub-opcode or -1) of every instruction in `buf[pos:end]`."""
    while pos < end:
        start = pos
        op, pos = read_byte(buf, pos)
        sub = -1
        if op in _ONE_INDEX:
            _, pos = read_uleb(buf, pos)
        elif op in _TWO_INDICES:
            pos = read_uleb(buf, read_uleb(buf, pos)[1])[1]
        elif 0x28 <= op <= 0x3E:
            pos = _memarg(buf, pos)
        elif op in _BLOCKS:
            pos = _block_type(buf, pos)
        elif 0x41 <= op <= 0x44:
            pos = skip_number(buf, op, pos)
        elif op == 0x0E:  # br_table
            count, pos = read_uleb(buf, pos)
            for _ in range(count + 1):
                _, pos = read_uleb(buf, pos)
        elif op == 0x1C:  # typed select
            count, pos = read_uleb(buf, pos)
            for _ in range(count):
                _, pos = read_valtype(buf, pos)
        elif op == 0x1F:  # try_table: block type, then catch clauses
            pos = _block_type(buf, pos)
            count, pos = read_uleb(buf, pos)
            for _ in range(count):
                kind, pos = read_byte(buf, pos)
                if kind in (0, 1):
                    _, pos = read_uleb(buf, pos)
                _, pos = read_uleb(buf, pos)
        elif op == 0xD0:
            _, pos = read_heap_type(buf, pos)
        elif op in (0xFB, 0xFC, 0xFD, 0xFE):
            sub, pos = _skip_prefixed(buf, op, pos)
        elif op >= 0xE0 and op not in range(0xD0, 0xD7):
            raise InvalidModule(f"unsupported instruction {op:#x} at offset {start:#x}")
        yield start, op, sub


def _bodies(module: Module) -> Iterator[tuple[int, int, int]]:
    """(function index, first instruction offset, end offset) of every defined function."""
    code = module.section(SectionId.CODE)
    if code is None:
        return
    buf = module.wasm
    count, pos = read_uleb(buf, code.payload_start)
    first = len(module.func_types) - count
    for i in range(count):
        size, pos = read_uleb(buf, pos)
        end = pos + size
        groups, body = read_uleb(buf, pos)
        for _ in range(groups):
            _, body = read_uleb(buf, body)
            _, body = read_valtype(buf, body)
        yield first + i, body, end
        pos = end


def gc_mutations(module: Module) -> Iterator[tuple[int, int, str]]:
    """(function index, offset, instruction) of every GC object mutation in the code."""
    for func, start, end in _bodies(module):
        for offset, op, sub in _instructions(module.wasm, start, end):
            if op == 0xFB and sub in GC_MUTATIONS:
                yield func, offset, GC_MUTATIONS[sub]


def check_gc_mutations(module: Module) -> None:
    """Reject GC mutations in modules with GC types: objects built by initializers survive into
    the output rebuilt from their initializers, so a change made to one by init would be lost."""
    if not module.has_gc_types:
        return
    for func, offset, name in gc_mutations(module):
        raise UnsupportedModule(
            f"function {function_name(module, func)} uses `{name}` at offset {offset:#x}: "
            "GC object mutations cannot be snapshotted"
        )
