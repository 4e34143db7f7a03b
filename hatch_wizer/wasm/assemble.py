"""Re-emit a parsed module with some sections replaced, dropped or added, the rest copied raw."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Protocol

from .binary import read_uleb, uleb
from .parse import SECTION_ORDER, Module, SectionId

__all__ = ["Deferred", "Payload", "Piece", "assemble", "build", "extend_vector"]


class Deferred(Protocol):
    """A piece of known size that writes itself into the output (e.g. a memory's data)."""

    @property
    def nbytes(self) -> int: ...

    def write_into(self, out: memoryview) -> None:
        """Fill `out`, which is exactly `nbytes` long."""
        ...


Piece = bytes | memoryview | Deferred
# A section's contents: bytes, or pieces to be copied into the output (large data only once).
Payload = bytes | Sequence[Piece]

_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
_new_bytes.restype = ctypes.py_object


def _size(piece: Piece) -> int:
    return len(piece) if isinstance(piece, bytes | bytearray) else piece.nbytes


def _section(section_id: int, payload: Payload) -> list[Piece]:
    pieces = [payload] if isinstance(payload, bytes) else payload
    return [bytes([section_id]) + uleb(sum(map(_size, pieces))), *pieces]


def build(pieces: Sequence[Piece]) -> bytes:
    """The pieces in one new bytes object, filled in place before anyone else sees it (C's
    `PyBytes_FromStringAndSize(NULL, n)`): a join would need every piece to exist in full at
    once, and a bytearray would be copied once more into bytes."""
    size = sum(map(_size, pieces))
    out = _new_bytes(None, size)
    address = ctypes.cast(ctypes.c_char_p(out), ctypes.c_void_p).value or 0
    view = memoryview((ctypes.c_ubyte * size).from_address(address)).cast("B")
    pos = 0
    for piece in pieces:
        end = pos + _size(piece)
        if isinstance(piece, bytes | bytearray | memoryview):
            view[pos:end] = piece
        else:
            piece.write_into(view[pos:end])
        pos = end
    assert isinstance(out, bytes)
    return out


def assemble(module: Module, new: Mapping[SectionId, Payload | None]) -> bytes:
    """The module with each section in `new` set to that payload (None drops it).

    A new section the module lacks goes right after the last section that must precede it, so
    custom sections that followed that one (e.g. `name`) stay after it.
    """
    wasm = memoryview(module.wasm)
    present = {s.id for s in module.sections}
    missing = sorted(
        (sid for sid, payload in new.items() if payload is not None and sid not in present),
        key=SECTION_ORDER.index,
    )
    out: list[Piece] = [wasm[:8]]

    def emit_missing_before(rank: int) -> None:
        while missing and SECTION_ORDER.index(missing[0]) < rank:
            sid = missing.pop(0)
            out.extend(_section(sid, new[sid] or b""))

    for sec in module.sections:
        if sec.id != SectionId.CUSTOM:
            emit_missing_before(SECTION_ORDER.index(sec.id))
        if sec.id != SectionId.CUSTOM and sec.id in new:
            payload = new[SectionId(sec.id)]
            if payload is not None:
                out.extend(_section(sec.id, payload))
        else:
            out.append(wasm[sec.start : sec.end])
        if sec.id != SectionId.CUSTOM:
            # Sections that sort right after this one go before any trailing custom section.
            emit_missing_before(SECTION_ORDER.index(sec.id) + 1 + _gap_after(sec.id, present))
    emit_missing_before(len(SECTION_ORDER))
    return build(out)


def _gap_after(section_id: int, present: set[int]) -> int:
    """How many ranks after `section_id` hold no section of the module (so new ones fit there)."""
    rank = SECTION_ORDER.index(section_id) + 1
    gap = 0
    while rank + gap < len(SECTION_ORDER) and SECTION_ORDER[rank + gap] not in present:
        gap += 1
    return gap


def extend_vector(module: Module, section_id: SectionId, items: list[bytes]) -> Payload:
    """The payload of a vector section with `items` appended to its raw entries."""
    sec = module.section(section_id)
    if sec is None:
        return [uleb(len(items)), *items]
    count, pos = read_uleb(module.wasm, sec.payload_start)
    return [uleb(count + len(items)), memoryview(module.wasm)[pos : sec.end], *items]
