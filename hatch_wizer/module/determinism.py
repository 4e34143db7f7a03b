"""Compare the state two init runs left behind: is init deterministic?"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from typing import Final

from .instrumentation import ModuleContext
from .state import InstanceState, read_globals

__all__ = ["describe", "differences"]

CHUNK: Final = 64 * 1024
# Differing bytes closer than this are reported as one range.
MERGE_GAP: Final = 16
SHOWN: Final = 8

_libc = ctypes.CDLL(None)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_DIFFERENT: Final = re.compile(rb"[^\x00]+")


def differences(context: ModuleContext, a: InstanceState, b: InstanceState) -> list[str]:
    """Everything that differs between two instances after init, as `global N`,
    `memory M [start, end)`, `table T slot S` and size notes; empty when they agree."""
    globals_a, globals_b = read_globals(context, a), read_globals(context, b)
    out = [f"global {index}" for index in globals_a if globals_a[index] != globals_b[index]]
    first = context.module.imported_memories
    for ordinal, name in enumerate(context.memories):
        out += _memory(first + ordinal, a.memory(name), b.memory(name))
    for ordinal, name in enumerate(context.tables):
        ta, tb = a.table(name), b.table(name)
        if ta.size != tb.size:
            out.append(f"table {ordinal} size ({ta.size} vs {tb.size} entries)")
        slots = sorted(set(ta.changed) | set(tb.changed))
        out += [
            f"table {ordinal} slot {s}" for s in slots if ta.changed.get(s) != tb.changed.get(s)
        ]
    return out


def describe(found: list[str]) -> str:
    """One line naming the first few differences."""
    shown = ", ".join(found[:SHOWN])
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return shown + more


def _memory(index: int, a: memoryview, b: memoryview) -> list[str]:
    out = []
    if a.nbytes != b.nbytes:
        out.append(f"memory {index} size ({a.nbytes} vs {b.nbytes} bytes)")
    ranges: list[list[int]] = []
    for start, end in _differing(a, b, min(a.nbytes, b.nbytes)):
        if ranges and start - ranges[-1][1] < MERGE_GAP:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
    return out + [f"memory {index} [{start}, {end})" for start, end in ranges]


def _differing(a: memoryview, b: memoryview, size: int) -> Iterator[tuple[int, int]]:
    """Exact byte ranges where `a` and `b` differ; equal chunks cost one memcmp each."""
    address_a, address_b = _address(a), _address(b)
    for offset in range(0, size, CHUNK):
        length = min(CHUNK, size - offset)
        if address_a and address_b:
            if _memcmp(address_a + offset, address_b + offset, length) == 0:
                continue
        elif a[offset : offset + length] == b[offset : offset + length]:
            continue
        x = int.from_bytes(a[offset : offset + length], "little") ^ int.from_bytes(
            b[offset : offset + length], "little"
        )
        xor = x.to_bytes(length, "little")
        for match in _DIFFERENT.finditer(xor):
            yield offset + match.start(), offset + match.end()


def _address(view: memoryview) -> int:
    """The raw address of a writable view's bytes, or 0 when it has none we can take."""
    if view.readonly or view.nbytes == 0:
        return 0
    return ctypes.addressof(ctypes.c_char.from_buffer(view))
