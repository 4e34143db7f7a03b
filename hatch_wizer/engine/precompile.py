"""Compile a wizened module ahead of time into `NAME.cwasm`, for the build's platform.

The code is compiled for a CPU level that machines of the architecture share, not for the
build machine's CPU: an explicit target triple turns off wasmtime's detection of host CPU
features (AVX2, BMI, AVX-512, ...), and only the features of `CPU_LEVELS` are turned back on.
Everything else is a default `wasmtime.Config()`, which is what
`load_module(wasmtime.Engine(), ...)` accepts.
"""

from __future__ import annotations

import platform
import struct
import sys
from dataclasses import dataclass
from typing import Final

import wasmtime

from ..errors import ConfigError, InvalidModule
from .compile import one_line
from .loader import cwasm_trailer

__all__ = ["Precompiled", "host_target", "precompile"]

_ARCHITECTURES: Final = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "riscv64": "riscv64gc",
    "s390x": "s390x",
}
_SYSTEMS: Final = {
    "linux": "unknown-linux-gnu",
    "darwin": "apple-darwin",
    "win32": "pc-windows-msvc",
}
# The CPU features the code may use, by architecture: on x86-64 the x86-64-v2 level (SSE3 to
# SSE4.2, POPCNT, CMPXCHG16B), which every x86-64 CPU since 2008-11 has (RHEL 9 and Windows 11
# 24H2 require it); without it Cranelift's code for wasm SIMD ran a kernel 7-10x slower here
# (benches/precompile.py), with AVX2 and BMI no faster. Elsewhere the architecture's baseline.
# A machine without them compiles the .wasm instead (wasmtime checks on loading).
CPU_LEVELS: Final = {
    "x86_64": (
        "x86-64-v2",
        ("has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt", "has_cmpxchg16b"),
    ),
}
# wasmtime's section with the version and settings an artifact needs (its engine metadata).
_ENGINE_SECTION: Final = b".wasmtime.engine"


@dataclass(frozen=True)
class Precompiled:
    """A `.cwasm` file's bytes and what it needs to load."""

    data: bytes
    wasmtime: str  # the version string wasmtime checks on loading
    target: str
    cpu: str  # the CPU level the code needs, e.g. x86-64-v2


def host_target() -> str:
    """This machine's target triple; the OS variant (gnu or musl) does not matter to wasmtime,
    which compares architecture and OS only."""
    arch = _ARCHITECTURES.get(platform.machine().lower())
    system = _SYSTEMS.get("linux" if sys.platform.startswith("linux") else sys.platform)
    if arch is None or system is None:
        raise ConfigError(
            f"precompile: no wasmtime target known for {platform.machine()} {sys.platform}; "
            "turn precompile off"
        )
    return f"{arch}-{system}"


def precompile(wasm: bytes, *, cache: bool = True) -> Precompiled:
    """`wasm` compiled by Cranelift for `host_target()` and its architecture's CPU level,
    serialized with our trailer.

    Two compiles of the same bytes by the same wasmtime give the same bytes (also through
    wasmtime's compilation cache, used when `cache`)."""
    target = host_target()
    config = wasmtime.Config()
    config.target = target
    cpu, features = CPU_LEVELS.get(target.split("-")[0], ("baseline", ()))
    for feature in features:
        config.cranelift_flag_enable(feature)
    if cache:
        config.cache = True
    try:
        artifact = bytes(wasmtime.Module(wasmtime.Engine(config), wasm).serialize())
    except wasmtime.WasmtimeError as e:
        raise InvalidModule(f"precompile: {one_line(e)}") from None
    return Precompiled(artifact + cwasm_trailer(wasm), _needed_version(artifact), target, cpu)


def _needed_version(elf: bytes) -> str:
    """The version string in the artifact's engine section (`51` for wasmtime 51.x)."""
    section = _elf_section(elf, _ENGINE_SECTION)
    # A format byte, then the version string's length and bytes.
    return section[2 : 2 + section[1]].decode()


def _elf_section(elf: bytes, name: bytes) -> bytes:
    """One section of a little-endian ELF64 file (wasmtime writes its artifacts so)."""
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    entsize, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        name_at, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * entsize)
        return name_at, offset, size

    _, names_at, _ = header(names_index)
    for i in range(count):
        name_at, offset, size = header(i)
        start = names_at + name_at
        if elf[start : elf.index(b"\0", start)] == name:
            return elf[offset : offset + size]
    raise InvalidModule(f"precompile: wasmtime's artifact has no {name.decode()} section")
