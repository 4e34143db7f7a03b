"""Run a module the way its users would, to compare a wizened output with its original."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from hatch_wizer import WizenOptions, wizen

__all__ = ["Observed", "assert_same_behaviour", "instantiate_wasi", "observe", "wasm_of"]


def wasm_of(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def instantiate_wasi(wasm: bytes) -> tuple[wasmtime.Store, Any]:
    """A store and the exports of `wasm`, instantiated under plain wasmtime WASI."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    return store, linker.instantiate(store, wasmtime.Module(engine, wasm)).exports(store)


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.wasm_relaxed_simd_deterministic = True
    return wasmtime.Engine(config)


@dataclass
class Observed:
    """Everything a user can see of an instance: call results, globals, memories."""

    results: dict[str, Any]
    globals: dict[str, int]
    memories: dict[str, bytes]


def _call(func: Any, store: wasmtime.Store, args: tuple[int, ...]) -> Any:
    try:
        return ("ok", func(store, *args))
    except wasmtime.Trap as e:
        return ("trap", e.trap_code)
    except wasmtime.WasmtimeError as e:
        return ("error", str(e).splitlines()[-1].strip())


def _global_bits(store: wasmtime.Store, g: Any) -> int:
    raw = ffi.wasmtime_val_t()
    ffi.wasmtime_global_get(store._context(), ctypes.byref(g._global), ctypes.byref(raw))
    if raw.kind == 4:
        return int.from_bytes(bytes(raw.of.v128), "little")
    if raw.kind in (5, 6):
        return -1  # references: compared through calls instead
    return int(raw.of.i64) & ((1 << 64) - 1) if raw.kind in (1, 3) else int(raw.of.i32) & 0xFFFFFFFF


def observe(
    wasm: bytes,
    calls: list[tuple[str, tuple[int, ...]]],
    init: list[str] = (),  # type: ignore[assignment]
    linker_setup: Any = None,
) -> Observed:
    """Instantiate, call the `init` exports, read all state, then make `calls` in order."""
    engine = _engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    module = wasmtime.Module(engine, wasm)
    if linker_setup is not None:
        linker_setup(store, linker)
    linker.define_unknown_imports_as_traps(module)
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    for name in init:
        exports[name](store)
    globals_ = {
        n: _global_bits(store, e) for n, e in exports.items() if isinstance(e, wasmtime.Global)
    }
    memories = {
        n: bytes(e.read(store)) for n, e in exports.items() if isinstance(e, wasmtime.Memory)
    }
    results = {
        f"{i}:{name}": _call(exports[name], store, args) for i, (name, args) in enumerate(calls)
    }
    return Observed(results, globals_, memories)


def assert_same_behaviour(
    source: str | bytes,
    calls: list[tuple[str, tuple[int, ...]]],
    options: WizenOptions | None = None,
    linker_setup: Any = None,
) -> bytes:
    """Wizen `source` and check the output behaves like the original run after init."""
    wasm = wasm_of(source) if isinstance(source, str) else source
    options = options or WizenOptions(cache=False)
    out = wizen(wasm, options)
    init = [options.init_func]
    module = wasmtime.Module(_engine(), wasm)
    names = [e.name for e in module.exports]
    if "_initialize" in names and options.init_func != "_initialize":
        init.insert(0, "_initialize")
    expected = observe(wasm, calls, init, linker_setup)
    actual = observe(out, calls, [], linker_setup)
    assert actual.results == expected.results
    assert actual.globals == expected.globals
    assert actual.memories.keys() == expected.memories.keys()
    for name, data in expected.memories.items():
        assert actual.memories[name] == data, f"memory {name} differs"
    return out


def wheel_platform() -> str:
    """The platform tag hatchling and setuptools give this machine's platform wheels (the most
    specific one that is not manylinux or musllinux)."""
    from packaging.tags import sys_tags

    return next(t.platform for t in sys_tags() if not t.platform.startswith(("manylinux", "musllinux")))  # fmt: skip
