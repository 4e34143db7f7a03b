"""Run a module the way its users would, to compare a wizened output with its original."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import wasmtime

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.engine import wasmtime_api as api

__all__ = [
    "WHEEL_HOOK",
    "Observed",
    "assert_same_behaviour",
    "hatch_pyproject",
    "instantiate_wasi",
    "observe",
    "trap_unknown_imports",
    "user_engine",
    "wasm_of",
]


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


def user_engine(*, fuel: bool = False) -> wasmtime.Engine:
    """A user's engine: the defaults, with deterministic relaxed SIMD, and GC and exceptions
    on (wasmtime-py before 46 leaves them off by default)."""
    config = wasmtime.Config()
    config.wasm_relaxed_simd_deterministic = True
    config.wasm_exceptions = True
    config.consume_fuel = fuel
    api.set_config(config, "wasm_gc", True)
    api.set_config(config, "wasm_function_references", True)
    return wasmtime.Engine(config)


def trap_unknown_imports(linker: wasmtime.Linker, module: wasmtime.Module) -> None:
    """`Linker.define_unknown_imports_as_traps`, on every supported wasmtime-py."""
    api.define_unknown_imports_as_traps(linker, module)


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
    kind, value = api.read_global(store, g)
    return -1 if kind >= api.FUNCREF else value  # references: compared through calls instead


def observe(
    wasm: bytes,
    calls: list[tuple[str, tuple[int, ...]]],
    init: list[str] = (),  # type: ignore[assignment]
    linker_setup: Any = None,
) -> Observed:
    """Instantiate, call the `init` exports, read all state, then make `calls` in order."""
    engine = user_engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    module = wasmtime.Module(engine, wasm)
    if linker_setup is not None:
        linker_setup(store, linker)
    trap_unknown_imports(linker, module)
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
    module = wasmtime.Module(user_engine(), wasm)
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


# How most test projects turn the hook on: for the wheel target.
WHEEL_HOOK = "[tool.hatch.build.targets.wheel.hooks.wizer]"


def hatch_pyproject(wizer: str, hooks: str = WHEEL_HOOK, *, requires: str = '"hatchling"') -> str:
    """The pyproject.toml of a hatchling project `pkg` (its package in src/pkg), with these
    hook tables and this `[tool.wizer]` body."""
    return (
        f'[build-system]\nrequires = [{requires}]\nbuild-backend = "hatchling.build"\n'
        f'[project]\nname = "pkg"\nversion = "1.0"\nrequires-python = ">=3.11"\n'
        f'[tool.hatch.build.targets.wheel]\npackages = ["src/pkg"]\n{hooks}\n'
        f"[tool.wizer]\n{wizer}\n"
    )


def wheel_platform() -> str:
    """The platform tag hatchling and setuptools give this machine's platform wheels (the most
    specific one that is not manylinux or musllinux)."""
    from packaging.tags import sys_tags

    return next(t.platform for t in sys_tags() if not t.platform.startswith(("manylinux", "musllinux")))  # fmt: skip
