"""LEB128 and the other primitives of the WebAssembly binary format (spec chapter 5).

Readers are pure functions `(buf, pos) -> (value, new_pos)` that raise `InvalidModule`
naming the byte offset; writers return bytes.
"""

from __future__ import annotations

from typing import Final

from ..errors import InvalidModule

__all__ = [
    "read_byte",
    "read_name",
    "read_sleb",
    "read_uleb",
    "section",
    "sleb",
    "uleb",
    "vector",
]

MAX_LEB_BYTES: Final = 10


def read_byte(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise InvalidModule(f"unexpected end of input at offset {pos:#x}")
    return buf[pos], pos + 1


def _read_leb(buf: bytes, pos: int, bits: int, signed: bool) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one byte, as most are: no loop
        byte = buf[pos]
        return (byte - 0x80 if signed and byte & 0x40 else byte), pos + 1
    result = shift = 0
    start = pos
    while True:
        byte, pos = read_byte(buf, pos)
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
        if pos - start >= (bits + 6) // 7:
            raise InvalidModule(f"integer representation too long at offset {start:#x}")
    if signed:
        return (result - (1 << shift) if byte & 0x40 else result), pos
    if result >> bits:
        raise InvalidModule(f"integer too large at offset {start:#x}")
    return result, pos


def read_uleb(buf: bytes, pos: int, bits: int = 32) -> tuple[int, int]:
    """An unsigned LEB128 of at most `bits` bits."""
    return _read_leb(buf, pos, bits, signed=False)


def read_sleb(buf: bytes, pos: int, bits: int = 32) -> tuple[int, int]:
    """A signed LEB128 of at most `bits` bits."""
    return _read_leb(buf, pos, bits, signed=True)


def read_name(buf: bytes, pos: int) -> tuple[str, int]:
    length, pos = read_uleb(buf, pos)
    end = pos + length
    if end > len(buf):
        raise InvalidModule(f"unexpected end of input at offset {pos:#x}")
    try:
        return buf[pos:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise InvalidModule(f"malformed UTF-8 name at offset {pos:#x}") from None


def uleb(value: int) -> bytes:
    # Unrolled for the small values that dominate (segment lengths, indices).
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(value: int) -> bytes:
    # Unrolled for the non-negative values that dominate (data segment offsets).
    if 0 <= value < 0x2000:
        return bytes((value,)) if value < 0x40 else bytes((value & 0x7F | 0x80, value >> 7))
    if 0 <= value < 0x8000000:
        if value < 0x100000:
            return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
        return bytes(
            (value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80, value >> 21)
        )
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def name(text: str) -> bytes:
    raw = text.encode("utf-8")
    return uleb(len(raw)) + raw


def vector(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + uleb(len(payload)) + payload


def offset_expr(offset: int, is64: bool) -> bytes:
    """A segment's constant offset expression; `i32.const` takes a signed immediate, so an
    address from 2 GiB up is written as a negative number."""
    if is64:
        return b"\x42" + sleb(offset) + b"\x0b"
    return b"\x41" + sleb(offset - (1 << 32) if offset >= 1 << 31 else offset) + b"\x0b"
