"""Make table writes observable: an instrumented module records each one that runs.

Wasm cannot compare function references and a component's host cannot read core tables, so a
slot changed from one function to another cannot be found by looking at the table afterwards.
Instead, in the module that runs during init (the output keeps the original code), every
instruction that writes a table sets a new mutable global, just before it runs, to 1 + the
index of its site; the accessor reads the global after init. Finding the sites decodes only
the bodies holding a byte that could start one (0x26, or 0xFC then the first byte of 12, 14 or
17 as a LEB): 2 % of libpython's functions, 0.5 s, where decoding everything took 3 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ..wasm.assemble import Payload, assemble, extend_vector
from ..wasm.binary import name, read_uleb, sleb, uleb
from ..wasm.code import _bodies, _instructions
from ..wasm.parse import ExternKind, Module, SectionId, parse_module

__all__ = ["WRITES_EXPORT", "WriteSite", "add_barriers", "write_sites"]

WRITES_EXPORT: Final = "__wizer_table_writes"

# Sub-opcodes of 0xFC that write a table, and the position of the table among the immediates.
_MISC_WRITES: Final = {12: ("table.init", 1), 14: ("table.copy", 0), 17: ("table.fill", 0)}
_CANDIDATE: Final = re.compile(rb"\x26|\xfc[\x0c\x0e\x11\x8c\x8e\x91]")


@dataclass(frozen=True)
class WriteSite:
    func: int
    offset: int  # of the instruction, in the original module
    relative: int  # from the start of the function's instructions
    instruction: str
    table: int


def write_sites(module: Module) -> list[WriteSite]:
    """Every instruction of the module's code that writes a table."""
    if not module.tables and not module.imported(ExternKind.TABLE):
        return []
    buf = module.wasm
    sites = []
    for func, start, end in _bodies(module):
        if _CANDIDATE.search(buf, start, end) is None:
            continue
        for offset, op, sub in _instructions(buf, start, end):
            if op == 0x26:
                table = read_uleb(buf, offset + 1)[0]
                sites.append(WriteSite(func, offset, offset - start, "table.set", table))
            elif op == 0xFC and sub in _MISC_WRITES:
                what, position = _MISC_WRITES[sub]
                pos = read_uleb(buf, offset + 1)[1]  # past the sub-opcode
                for _ in range(position):
                    pos = read_uleb(buf, pos)[1]
                table = read_uleb(buf, pos)[0]
                sites.append(WriteSite(func, offset, offset - start, what, table))
    return sites


def add_barriers(instrumented: bytes, sites: list[WriteSite]) -> bytes:
    """`instrumented` with the global `WRITES_EXPORT` set before each site runs."""
    module = parse_module(instrumented)
    global_index = module.imported(ExternKind.GLOBAL) + len(module.globals)
    marks: dict[int, list[tuple[int, bytes]]] = {}  # func -> (relative offset, barrier)
    for number, site in enumerate(sites, 1):
        barrier = b"\x41" + sleb(number) + b"\x24" + uleb(global_index)  # global.set
        marks.setdefault(site.func, []).append((site.relative, barrier))
    new: dict[SectionId, Payload | None] = {
        SectionId.GLOBAL: extend_vector(module, SectionId.GLOBAL, [b"\x7f\x01\x41\x00\x0b"]),
        SectionId.EXPORT: extend_vector(
            module, SectionId.EXPORT, [name(WRITES_EXPORT) + b"\x03" + uleb(global_index)]
        ),
        SectionId.CODE: _code(module, marks),
    }
    return assemble(module, new)


def _code(module: Module, marks: dict[int, list[tuple[int, bytes]]]) -> Payload:
    """The code section with the barriers inserted; untouched bodies are copied in spans."""
    code = module.section(SectionId.CODE)
    assert code is not None  # there are sites
    wasm = module.wasm
    view = memoryview(wasm)
    count, previous = read_uleb(wasm, code.payload_start)
    out: list[bytes | memoryview] = [uleb(count)]
    copied = previous
    for func, start, end in _bodies(module):
        if func in marks:
            out.append(view[copied:previous])
            pieces = [wasm[read_uleb(wasm, previous)[1] : start]]  # the locals
            at = start
            for relative, barrier in marks[func]:
                pieces += [wasm[at : start + relative], barrier]
                at = start + relative
            body = b"".join([*pieces, wasm[at:end]])
            out += [uleb(len(body)), body]
            copied = end
        previous = end
    out.append(view[copied : code.end])
    return out
