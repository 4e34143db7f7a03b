"""sqlex.js: evaluate JavaScript expressions (row filters, computed columns) with QuickJS.

QuickJS is 1.5 MB of WebAssembly: wasmtime takes over a second to compile it, far more than
its init (creating the JS runtime and context) takes. The wheel ships `qjs.wasm` wizened (init
done at build time) and `qjs.cwasm`, the same module compiled ahead of time for this platform
(`precompile = true`). `load_module` below uses the .cwasm when it fits and compiles the .wasm
otherwise; these are the few lines hatch-wizer's README gives for packages that want no run-time
dependency on hatch-wizer (`hatch_wizer.load_module` does the same).
"""

from __future__ import annotations

import hashlib
import os
from importlib.resources import files
from pathlib import Path

import wasmtime

__all__ = ["JS", "JSError", "evaluate", "load_module"]

INIT_EXPORT = "wizer-initialize"
_ENGINE = wasmtime.Engine()
_EXCEPTION_TAG = 6  # QuickJS's JS_TAG_EXCEPTION, the upper half of a NaN-boxed value
_TRAILER = b"hatch-wizer.cw01"


def load_module(engine: wasmtime.Engine, wasm_path: Path) -> wasmtime.Module:
    """The module from its .cwasm when that was compiled from these .wasm bytes and wasmtime
    accepts it (same version, platform, compatible config and CPU), else compiled."""
    wasm = wasm_path.read_bytes()
    cwasm = wasm_path.with_suffix(".cwasm")
    try:
        with cwasm.open("rb") as f:
            f.seek(-32 - len(_TRAILER), os.SEEK_END)
            if f.read() == hashlib.sha256(wasm).digest() + _TRAILER:
                return wasmtime.Module.deserialize_file(engine, str(cwasm))
    except (OSError, wasmtime.WasmtimeError):
        pass
    return wasmtime.Module(engine, wasm)


class JSError(Exception):
    """A JavaScript exception, with its message."""


class JS:
    """One QuickJS runtime; `path` is a module to load instead of the packaged one."""

    def __init__(self, path: str | Path | None = None) -> None:
        wasm = Path(path) if path is not None else Path(str(files(__package__) / "qjs.wasm"))
        module = load_module(_ENGINE, wasm)
        linker = wasmtime.Linker(_ENGINE)
        linker.define_wasi()
        self._store = wasmtime.Store(_ENGINE)
        self._store.set_wasi(wasmtime.WasiConfig())
        self._exports = linker.instantiate(self._store, module).exports(self._store)
        #: Whether the module came pre-initialized (no init export left to run).
        self.preinitialized = INIT_EXPORT not in self._exports
        if not self.preinitialized:
            self._call("_initialize")
            self._call(INIT_EXPORT)
        self._memory = self._exports["memory"]
        self._context = self._call("qjs_get_context")
        self._name = self._string(b"<sqlex>")
        self._length = self._call("malloc", 4)

    def _call(self, name: str, *args: int) -> int:
        return self._exports[name](self._store, *args)  # type: ignore[no-any-return]

    def _string(self, data: bytes) -> int:
        """A NUL-terminated copy of `data` in the module's memory (free it with `free`)."""
        address = self._call("malloc", len(data) + 1)
        self._memory.write(self._store, data + b"\0", address)
        return address

    def evaluate(self, source: str) -> str:
        """`String(eval(source))`, or JSError with the exception's text."""
        data = source.encode()
        address = self._string(data)
        try:
            value = self._call("JS_Eval", self._context, address, len(data), self._name, 0)
        finally:
            self._call("free", address)
        if (value & 0xFFFFFFFFFFFFFFFF) >> 32 == _EXCEPTION_TAG:
            raise JSError(self._text(self._call("JS_GetException", self._context)))
        return self._text(value)

    def _text(self, value: int) -> str:
        """The value as a string; frees the value."""
        try:
            pointer = self._call("JS_ToCStringLen2", self._context, self._length, value, 0)
            length = int.from_bytes(
                self._memory.read(self._store, self._length, self._length + 4), "little"
            )
            text = bytes(self._memory.read(self._store, pointer, pointer + length)).decode()
            self._call("JS_FreeCString", self._context, pointer)
            return text
        finally:
            self._call("JS_FreeValue", self._context, value)


_default: JS | None = None


def evaluate(source: str) -> str:
    """Evaluate with a shared JS runtime created on first use."""
    global _default
    if _default is None:
        _default = JS()
    return _default.evaluate(source)
