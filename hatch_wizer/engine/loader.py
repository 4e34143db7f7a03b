"""Load a module that a package ships pre-compiled: `NAME.cwasm` beside `NAME.wasm`.

This is the one piece of hatch-wizer a package needs at run time, so it imports only wasmtime,
the standard library and the `.cwasm` suffix (no hatchling, no parser, no build machinery);
`import hatch_wizer` itself loads nothing until a name is used.

A `.cwasm` is wasmtime's serialized native code for the `.wasm` beside it, followed by a
trailer of ours: the sha256 of the `.wasm` it was compiled from, then `TRAILER_MAGIC`.
wasmtime ignores bytes after its ELF image. It checks, on loading, that the artifact was made
by this wasmtime version, for this architecture and OS, with compatible engine settings, and
uses no CPU feature the host lacks; the trailer adds that it belongs to this very `.wasm` (a
stale `.cwasm` from an earlier build is compiled around, not run).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

import wasmtime

from ..files import CWASM_SUFFIX

__all__ = ["TRAILER_MAGIC", "cwasm_trailer", "load_module"]

TRAILER_MAGIC: Final = b"hatch-wizer.cw01"
_TRAILER_SIZE: Final = 32 + len(TRAILER_MAGIC)


def cwasm_trailer(wasm: bytes) -> bytes:
    """What follows wasmtime's artifact in a `.cwasm`: it was compiled from `wasm`."""
    return hashlib.sha256(wasm).digest() + TRAILER_MAGIC


def load_module(
    engine: wasmtime.Engine,
    path: str | os.PathLike[str],
    *,
    on_fallback: Callable[[str], object] | None = None,
) -> wasmtime.Module:
    """The module at `path` (a `.wasm`), from its pre-compiled `.cwasm` when that can be used.

    The `.cwasm` is used when it was compiled from these very `.wasm` bytes, by this wasmtime
    version, for this platform and an engine configured like `engine` (the build compiles for
    `wasmtime.Engine()`'s default settings). Otherwise the `.wasm` is compiled, as without
    one: a mismatch costs time, never correctness. `on_fallback`, if given, is called with
    the reason in that case.

    Loading a `.cwasm` runs native code from it: pass only paths of modules shipped inside
    your own package, never a path that comes from user input.
    """
    wasm_path = Path(path)
    wasm = wasm_path.read_bytes()
    cwasm = wasm_path.with_suffix(CWASM_SUFFIX)
    try:
        return _precompiled(engine, cwasm, wasm)
    except _Unusable as e:
        if on_fallback is not None:
            on_fallback(f"{cwasm.name}: {e}")
    return wasmtime.Module(engine, wasm)


class _Unusable(Exception):
    """Why a `.cwasm` is not loaded."""


def _precompiled(engine: wasmtime.Engine, cwasm: Path, wasm: bytes) -> wasmtime.Module:
    try:
        with cwasm.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TRAILER_SIZE))
            trailer = f.read()
    except OSError as e:
        raise _Unusable(e.strerror or str(e)) from None
    if not trailer.endswith(TRAILER_MAGIC) or size == len(trailer):
        raise _Unusable("not a module pre-compiled by hatch-wizer")
    if trailer != cwasm_trailer(wasm):
        raise _Unusable("compiled from another module than the .wasm beside it")
    try:
        return wasmtime.Module.deserialize_file(engine, str(cwasm))
    except wasmtime.WasmtimeError as e:
        raise _Unusable(_last_line(str(e))) from None


def _last_line(text: str) -> str:
    """wasmtime's root cause: the last line of its error chain (`compile.one_line` gives them
    all, but the run-time loader stays clear of the build's imports)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    number, sep, cause = (lines[-1] if lines else text).partition(": ")
    return cause if sep and number.isdigit() else number + sep + cause
