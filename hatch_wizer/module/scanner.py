"""Wasm functions, added by instrumentation, that find a memory's non-zero runs and encode them.

Compiled with the module, they work at machine speed where Python would step through every run.

`scan(from: i64, to: i64, split: i32) -> i32` writes the runs of `[from, to)` that are separated
by at least `split` zero bytes as (start, end) i64 pairs to the start of a scratch memory, and
returns how many it wrote. Zeros are skipped 32 bytes at a time (64 with SIMD), and the bytes
of a run that hold no zero 8 at a time (the `haszero` bit trick; with SIMD 16, then 64).
`encode(count, out) -> end` turns such pairs into encoded active data segments (see
`encode_body`), so Python handles one blob per memory.
"""

from __future__ import annotations

from typing import Final

from ..wasm.binary import sleb, uleb

__all__ = [
    "DUMPABLE",
    "ENCODE_TYPE",
    "GLOBAL_SLOT",
    "SCAN_TYPE",
    "dump_globals_body",
    "encode_body",
    "scan_body",
]

# (i64, i64, i32) -> i32
SCAN_TYPE: Final = b"\x60\x03\x7e\x7e\x7f\x01\x7f"

# Locals after the three parameters.
FROM, TO, SPLIT = 0, 1, 2
POS, START, ZEROS, WORD = 3, 4, 5, 6  # i64
OUT, COUNT = 7, 8  # i32

BLOCK, LOOP, IF, ELSE, END, BR, BR_IF, RETURN = 0x02, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0F
EMPTY = 0x40
V128_OR, V128_ANY_TRUE, I8X16_ALL_TRUE = b"\xfd\x50", b"\xfd\x53", b"\xfd\x63"
I8X16_MIN_U = b"\xfd\x77"


def _get(i: int) -> bytes:
    return b"\x20" + uleb(i)


def _set(i: int) -> bytes:
    return b"\x21" + uleb(i)


def _i64(value: int) -> bytes:
    return b"\x42" + sleb(value)


def _i32(value: int) -> bytes:
    return b"\x41" + sleb(value)


def _memarg(align: int, memory: int) -> bytes:
    # Bit 6 of the alignment field says a memory index follows (multi-memory).
    if memory == 0:
        return uleb(align) + b"\x00"
    return uleb(align | 0x40) + uleb(memory) + b"\x00"


class _Body:
    def __init__(self, memory: int, is64: bool, scratch: int) -> None:
        self.memory = memory
        self.is64 = is64
        self.scratch = scratch
        self.code = bytearray()

    def emit(self, *parts: bytes | int) -> None:
        for part in parts:
            self.code += bytes([part]) if isinstance(part, int) else part

    def address(self, local: int) -> bytes:
        # A 32-bit memory takes i32 addresses; `to` never exceeds its size, so this is exact.
        return _get(local) + (b"" if self.is64 else b"\xa7")  # i32.wrap_i64

    def load64(self, local: int) -> bytes:
        return self.address(local) + b"\x29" + _memarg(0, self.memory)

    def load64_at(self, local: int, offset: int) -> bytes:
        return self.address(local) + b"\x29" + _memarg(0, self.memory)[:-1] + uleb(offset)

    def load128_at(self, local: int, offset: int) -> bytes:
        return self.address(local) + b"\xfd\x00" + _memarg(0, self.memory)[:-1] + uleb(offset)

    def load8(self, local: int) -> bytes:
        return self.address(local) + b"\x2d" + _memarg(0, self.memory)  # i32.load8_u


def _emit_run(b: _Body, end: bytes) -> None:
    """Store (start, end) at scratch[out], growing the scratch memory as needed."""
    s = b.scratch
    # if out + 16 > memory.size(scratch) * 65536: memory.grow(scratch, 16 pages) or trap
    b.emit(_get(OUT), _i32(16), 0x6A, b"\x3f" + uleb(s), _i32(16), 0x74, 0x4B, IF, EMPTY)
    b.emit(_i32(16), b"\x40" + uleb(s), _i32(-1), 0x46, IF, EMPTY, 0x00, END, END)
    b.emit(_get(OUT), _get(START), b"\x37" + _memarg(3, s))  # i64.store
    b.emit(_get(OUT), end, b"\x37" + _memarg(3, s)[:-1] + b"\x08")
    b.emit(_get(OUT), _i32(16), 0x6A, _set(OUT))
    b.emit(_get(COUNT), _i32(1), 0x6A, _set(COUNT))


def scan_body(memory: int, is64: bool, scratch: int, simd: bool = False) -> bytes:
    """The encoded body (with its size prefix) of the scan function for `memory`."""
    b = _Body(memory, is64, scratch)
    b.emit(b"\x02", b"\x04\x7e", b"\x02\x7f")  # locals: 4 x i64, 2 x i32
    b.emit(_get(FROM), _set(POS))
    b.emit(BLOCK, EMPTY, LOOP, EMPTY)  # $done, $next_run
    # Skip 64 zero bytes at a time with SIMD, then 32, then zero words, then zero bytes.
    if simd:
        b.emit(BLOCK, EMPTY, LOOP, EMPTY)
        b.emit(_get(POS), _i64(64), 0x7C, _get(TO), 0x56, BR_IF, 1)  # pos + 64 > to
        b.emit(b.load128_at(POS, 0), b.load128_at(POS, 16), V128_OR, b.load128_at(POS, 32))
        b.emit(V128_OR, b.load128_at(POS, 48), V128_OR, V128_ANY_TRUE, BR_IF, 1)
        b.emit(_get(POS), _i64(64), 0x7C, _set(POS), BR, 0, END, END)
    b.emit(BLOCK, EMPTY, LOOP, EMPTY)
    b.emit(_get(POS), _i64(32), 0x7C, _get(TO), 0x56, BR_IF, 1)  # pos + 32 > to
    b.emit(b.load64(POS), b.load64_at(POS, 8), 0x84, b.load64_at(POS, 16), 0x84)
    b.emit(b.load64_at(POS, 24), 0x84, 0x50, 0x45, BR_IF, 1)  # any non-zero: stop
    b.emit(_get(POS), _i64(32), 0x7C, _set(POS), BR, 0, END, END)
    b.emit(BLOCK, EMPTY, LOOP, EMPTY)
    b.emit(_get(POS), _i64(8), 0x7C, _get(TO), 0x56, BR_IF, 1)  # pos + 8 > to: stop words
    b.emit(b.load64(POS), 0x50, 0x45, BR_IF, 1)  # a non-zero word: stop
    b.emit(_get(POS), _i64(8), 0x7C, _set(POS), BR, 0, END, END)
    b.emit(BLOCK, EMPTY, LOOP, EMPTY)
    b.emit(_get(POS), _get(TO), 0x5A, BR_IF, 3)  # pos >= to: done
    b.emit(b.load8(POS), BR_IF, 1)  # non-zero: the run starts
    b.emit(_get(POS), _i64(1), 0x7C, _set(POS), BR, 0, END, END)
    # In a run: count trailing zeros until `split` of them, or the end.
    b.emit(_get(POS), _set(START), _i64(0), _set(ZEROS))
    b.emit(LOOP, EMPTY)  # $in_run
    b.emit(_get(POS), _i64(1), 0x7C, _set(POS))
    # At the end: the run stops before its trailing zeros.
    b.emit(_get(POS), _get(TO), 0x5A, IF, EMPTY)
    _emit_run(b, _get(POS) + _get(ZEROS) + b"\x7d")
    b.emit(BR, 3, END)  # done
    # Sixteen bytes without a zero byte: skip them, then 64 at a time while no byte is zero
    # (the unsigned minimum of four vectors has a zero byte where one of them has).
    if simd:
        b.emit(_get(POS), _i64(16), 0x7C, _get(TO), 0x58, IF, EMPTY)  # pos + 16 <= to
        b.emit(b.load128_at(POS, 0), I8X16_ALL_TRUE, IF, EMPTY)
        b.emit(_get(POS), _i64(16), 0x7C, _set(POS), BLOCK, EMPTY, LOOP, EMPTY)
        b.emit(_get(POS), _i64(64), 0x7C, _get(TO), 0x56, BR_IF, 1)  # pos + 64 > to
        b.emit(b.load128_at(POS, 0), b.load128_at(POS, 16), I8X16_MIN_U, b.load128_at(POS, 32))
        b.emit(I8X16_MIN_U, b.load128_at(POS, 48), I8X16_MIN_U, I8X16_ALL_TRUE, 0x45, BR_IF, 1)
        b.emit(_get(POS), _i64(64), 0x7C, _set(POS), BR, 0, END, END)
        # The loop above advances pos by one before it looks at a byte.
        b.emit(_get(POS), _i64(1), 0x7D, _set(POS), _i64(0), _set(ZEROS), BR, 2, END, END)
    # Eight bytes without a zero byte: skip them all.
    b.emit(_get(POS), _i64(8), 0x7C, _get(TO), 0x58, IF, EMPTY)  # pos + 8 <= to
    b.emit(b.load64(POS), _set(WORD))
    b.emit(_get(WORD), _i64(0x0101010101010101), 0x7D, _get(WORD), _i64(-1), 0x85, 0x83)
    b.emit(_i64(-0x7F7F7F7F7F7F7F80), 0x83, 0x50, IF, EMPTY)  # no zero byte in the word
    b.emit(_get(POS), _i64(7), 0x7C, _set(POS), _i64(0), _set(ZEROS), BR, 2, END)
    # Eight zero bytes: count the first seven here, and the last as the single byte below.
    b.emit(_get(WORD), 0x50, IF, EMPTY)
    b.emit(_get(ZEROS), _i64(7), 0x7C, _set(ZEROS), _get(POS), _i64(7), 0x7C, _set(POS), ELSE)
    # Zero and non-zero bytes mixed, as in arrays of small numbers. A gap inside the word has
    # at most 6 zeros, so from a split of 7 only its edges matter: the leading zero bytes
    # (ctz / 8) may close a gap begun before it, and the trailing ones (clz / 8) begin one.
    b.emit(_get(SPLIT), _i32(6), 0x4B, IF, EMPTY)  # split > 6
    leading = _get(WORD) + b"\x7a" + _i64(3) + b"\x88"  # i64.ctz, shr_u
    b.emit(_get(ZEROS), leading, 0x7C, _get(SPLIT), 0xAD, 0x5A, IF, EMPTY)  # a gap to split at
    _emit_run(b, _get(POS) + _get(ZEROS) + b"\x7d")
    b.emit(_get(POS), leading, 0x7C, _set(POS), BR, 5, END)  # next run: its first byte
    b.emit(_get(WORD), b"\x79", _i64(3), 0x88, _set(ZEROS))  # i64.clz, shr_u
    b.emit(_get(POS), _i64(7), 0x7C, _set(POS), BR, 3, END, END, END)
    b.emit(b.load8(POS), IF, EMPTY, _i64(0), _set(ZEROS), BR, 1, END)
    b.emit(_get(ZEROS), _i64(1), 0x7C, _set(ZEROS))
    b.emit(_get(ZEROS), _get(SPLIT), 0xAD, 0x54, BR_IF, 0)  # fewer than split zeros: go on
    _emit_run(b, _get(POS) + _i64(1) + b"\x7c" + _get(ZEROS) + b"\x7d")
    b.emit(_get(POS), _i64(1), 0x7C, _set(POS), BR, 1, END)  # next run
    b.emit(END, END, _get(COUNT), END)
    return uleb(len(b.code)) + bytes(b.code)


# (i32 count, i32 out) -> i32 end
ENCODE_TYPE: Final = b"\x60\x02\x7f\x7f\x01\x7f"

# Locals of the encoder after its two parameters.
E_COUNT, E_OUT = 0, 1
E_PAIR, E_LEN, E_BYTE, E_N = 2, 3, 4, 5  # i32
E_START, E_VALUE = 6, 7  # i64


def _store_byte(b: _Body, value: bytes) -> None:
    """scratch[out] = value (an i32 on the stack when `value` runs); out += 1"""
    b.emit(_get(E_OUT), value, b"\x3a" + _memarg(0, b.scratch))  # i32.store8
    b.emit(_get(E_OUT), _i32(1), 0x6A, _set(E_OUT))


def encode_body(memory: int, is64: bool, scratch: int) -> bytes:
    """The encoded body of `encode(count, out) -> end` for `memory`: it turns the `count`
    (start, end) i64 pairs at the start of the scratch memory into active data segments of
    `memory`, written from scratch[out]; the data is copied memory to memory."""
    b = _Body(memory, is64, scratch)
    b.emit(b"\x02", b"\x04\x7f", b"\x02\x7e")  # locals: 4 x i32, 2 x i64
    b.emit(BLOCK, EMPTY, LOOP, EMPTY)
    b.emit(_get(E_PAIR), _get(E_COUNT), 0x4F, BR_IF, 1)  # pair >= count: done (i32.ge_u)
    pair_at = _get(E_PAIR) + _i32(16) + b"\x6c"  # pair * 16
    b.emit(pair_at, b"\x29" + _memarg(3, scratch), _set(E_START))
    b.emit(pair_at, b"\x29" + _memarg(3, scratch)[:-1] + b"\x08", _get(E_START), 0x7D, 0xA7)
    b.emit(_set(E_N))  # the segment's length
    # Flag (and memory index), then the offset's const opcode.
    head = (b"\x00" if memory == 0 else b"\x02" + uleb(memory)) + (b"\x42" if is64 else b"\x41")
    for byte in head:
        _store_byte(b, _i32(byte))
    # The offset as a signed LEB: an i32.const offset is the address's low 32 bits, signed.
    b.emit(_get(E_START), b"" if is64 else b"\xa7\xac", _set(E_VALUE))  # wrap, extend_s
    b.emit(LOOP, EMPTY)
    b.emit(_get(E_VALUE), 0xA7, _i32(0x7F), 0x71, _set(E_BYTE))  # byte = value & 0x7f
    b.emit(_get(E_VALUE), _i64(7), 0x87, _set(E_VALUE))  # value >>= 7 (arithmetic)
    # more = !(value == 0 && !(byte & 0x40)) && !(value == -1 && (byte & 0x40))
    b.emit(_get(E_VALUE), _i64(0), 0x51, _get(E_BYTE), _i32(0x40), 0x71, 0x45, 0x71)
    b.emit(_get(E_VALUE), _i64(-1), 0x51, _get(E_BYTE), _i32(0x40), 0x71, 0x45, 0x45, 0x71)
    b.emit(0x72, 0x45, _set(E_LEN))  # E_LEN holds `more` for a moment
    _store_byte(b, _get(E_BYTE) + _get(E_LEN) + _i32(7) + b"\x74" + b"\x72")  # | more << 7
    b.emit(_get(E_LEN), BR_IF, 0, END)
    _store_byte(b, _i32(0x0B))  # end of the offset expression
    # The length as an unsigned LEB.
    b.emit(_get(E_N), _set(E_LEN))
    b.emit(LOOP, EMPTY)
    b.emit(_get(E_LEN), _i32(0x7F), 0x71, _set(E_BYTE))
    b.emit(_get(E_LEN), _i32(7), 0x76, _set(E_LEN))  # i32.shr_u
    _store_byte(b, _get(E_BYTE) + _get(E_LEN) + _i32(0) + b"\x47" + _i32(7) + b"\x74\x72")
    b.emit(_get(E_LEN), BR_IF, 0, END)
    # The data itself: memory.copy scratch[out..] <- memory[start..]
    b.emit(_get(E_OUT), b.address(E_START), _get(E_N), b"\xfc\x0a" + uleb(scratch) + uleb(memory))
    b.emit(_get(E_OUT), _get(E_N), 0x6A, _set(E_OUT))
    b.emit(_get(E_PAIR), _i32(1), 0x6A, _set(E_PAIR), BR, 0, END, END)
    b.emit(_get(E_OUT), END)
    return uleb(len(b.code)) + bytes(b.code)


_STORES: Final = {
    "i32": b"\x36",
    "i64": b"\x37",
    "f32": b"\x38",
    "f64": b"\x39",
    "v128": b"\xfd\x0b",
}
GLOBAL_SLOT: Final = 16
DUMPABLE: Final = frozenset(_STORES)


def dump_globals_body(globals_: list[tuple[int, str]], scratch: int) -> bytes:
    """The encoded body of `dump() -> ()`: stores each global's raw bits (loads and stores never
    touch float bits, NaN payloads included) at 16-byte slots from the scratch memory's start,
    one call instead of one host call per global."""
    pages = -(-len(globals_) * GLOBAL_SLOT // 65536)
    code = bytearray(b"\x00")  # no locals
    # if memory.size < pages: memory.grow(pages - memory.size) (a 0-page scratch to begin with)
    code += _i32(pages) + b"\x3f" + uleb(scratch) + b"\x6b\x40" + uleb(scratch) + b"\x1a"
    stores = {valtype: op + _memarg(0, scratch) for valtype, op in _STORES.items()}
    for slot, (index, valtype) in enumerate(globals_):
        code += _i32(slot * GLOBAL_SLOT) + b"\x23" + uleb(index) + stores[valtype]
    code += b"\x0b"
    return uleb(len(code)) + bytes(code)
