"""Run an instrumented component's init on wasmtime and read its state through the accessors.

The engine, the init deadline and the mapping of wasmtime errors come from the core runtime;
this module adds the component linker (WASI preview 2), the init call in WAVE syntax, and an
`InstanceState` per core module that answers through the `hatch-wizer-*` exports.

Tables are checked rather than snapshotted (neither Wasm nor the component API can tell which
function a slot holds): a table write that ran (recorded by `barrier.py`) or a table that grew
is an error naming it.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import component as wc

from ..component.instrument import CHUNK, SCAN_UNIT, ComponentContext, InitCall, ModuleAccess
from ..errors import ConfigError, InitError, InvalidModule, UnsupportedModule, option
from ..module.state import TableState
from ..options import WizenOptions
from ..wasm.parse import function_name
from .compile import engine_config, one_line
from .host import reject_unprovided, wasi_config
from .runtime import Runtime
from .wasi import Clock, WasiHost
from .wasmtime_api import component_item_type, require_component
from .wave import parse_args

__all__ = ["AccessorState", "ComponentRuntime", "Session"]

_RUNS = re.compile(rb"\x01+")


@dataclass
class Session:
    """A live instance of the instrumented component after its init call."""

    store: wasmtime.Store
    instance: wc.Instance
    runtime: Runtime
    results: Any = None
    wasi: WasiHost | None = None  # the clock and random calls init made


class ComponentRuntime:
    def __init__(self, options: WizenOptions, input_size: int = 0) -> None:
        if options.preloads:
            raise ConfigError(
                "preloads are core modules and cannot satisfy a component's imports; "
                "compose the component with its dependencies first"
            )
        if options.unknown_imports == "default":
            raise ConfigError(
                "unknown imports as default values (-W unknown-imports-default) work for core "
                "modules only; wasmtime has no such stubs for components"
            )
        if options.compiler == "winch":
            raise ConfigError(
                f"Winch cannot compile components: set {option('compiler')} to auto or "
                "cranelift (a component's init runs on Cranelift's code)"
            )
        if options.wasi_cwd is not None:
            raise ConfigError(
                "a component's initial working directory (-S cwd) cannot be set through "
                "wasmtime-py; leave it out (preview 1 modules have none)"
            )
        require_component()  # an unsupported wasmtime-py fails here, in one line
        self.options = options
        self.runtime = Runtime(options, input_size)
        self.engine = self.runtime.engine

    def compile(self, wasm: bytes) -> wc.Component:
        self.engine = self.runtime.cranelift_for(wasm)
        try:
            return wc.Component(self.engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise InvalidModule(f"failed to compile the component: {one_line(e)}") from None

    def check(self, wasm: bytes) -> None:
        """Compile `wasm` (a stand-in, see `check.py`) only to validate it: unoptimized, not
        cached, with the features the options allow."""
        config = engine_config(self.options.features, cache=False, stoppable=False)
        config.cranelift_opt_level = "none"
        try:
            wc.Component(wasmtime.Engine(config), wasm)
        except wasmtime.WasmtimeError as e:
            raise InvalidModule(
                f"hatch-wizer produced an invalid component (a bug, please report it): "
                f"{one_line(e)}"
            ) from None

    def initialize(self, context: ComponentContext, component: wc.Component) -> Session:
        """Instantiate (core start functions run here, in the component's order) and make the
        init call; the instance stays live for the accessors."""
        store = wasmtime.Store(self.engine)
        store.set_epoch_deadline(1)
        linker = wc.Linker(self.engine)
        if self.options.unknown_imports == "reject":
            wasi = self.options.allow_wasi
            names = component.type.imports(self.engine)
            reject_unprovided(
                "the component", [n for n in names if not (wasi and n.startswith("wasi:"))]
            )
        host = None
        if self.options.allow_wasi:
            store.set_wasi(wasi_config(self.options))
            linker.add_wasip2()
            host = WasiHost.for_build(self.options.reproducible)
            self._shadow_clocks_and_random(linker, component, host)
            # wasmtime's own stubbing would shadow WASI interfaces whose version the linker
            # matches by semver (a component importing wasi:cli@0.2.9 from a 0.2.6 host).
            self._stub_imports(linker, component, lambda name: not name.startswith("wasi:"))
        else:
            linker.define_unknown_imports_as_traps(component)
        call = self.runtime.call

        def run() -> Session:
            instance = call(
                "instantiating the component", lambda: linker.instantiate(store, component)
            )
            session = Session(store, instance, self.runtime, wasi=host)
            func = _find_func(store, instance, context.init)
            args = _arguments(store, func, context.init)
            what = f"`{context.init.text}`"
            session.results = call(what, lambda: func(store, *args))
            call(what, lambda: func.post_return(store))
            return session

        return self.runtime.run_init(run)

    def _shadow_clocks_and_random(
        self, linker: wc.Linker, component: wc.Component, host: WasiHost
    ) -> None:
        """Preview 2's random and wall-clock interfaces, as the component imports them, with
        `host`'s answers: fixed when reproducible, counted either way, as for modules. An
        interface can only be shadowed whole, so the monotonic clock stays wasmtime's (its
        `subscribe-*` functions return wasi:io pollables that only wasmtime can make), as does
        an interface with a function this table lacks (a newer version)."""
        table = _wasip2_host(host)
        linker.allow_shadowing = True
        with linker.root() as root:
            for name, item in component.type.imports(self.engine).items():
                interface, _, version = name.partition("@")
                funcs = table.get(interface) if version.startswith("0.2.") else None
                ty = component_item_type(item)
                if funcs is None or not isinstance(ty, wc.ComponentInstanceType):
                    continue
                wanted = [
                    fname
                    for fname, export in ty.exports(self.engine).items()
                    if isinstance(component_item_type(export), wc.FuncType)
                ]
                if set(wanted) <= funcs.keys():
                    with root.add_instance(name) as instance:
                        for fname in wanted:
                            instance.add_func(fname, funcs[fname])
        linker.allow_shadowing = False

    def _stub_imports(
        self, linker: wc.Linker, component: wc.Component, wanted: Callable[[str], bool]
    ) -> None:
        """Functions that fail with a clear error when init calls them, for the imports
        `wanted` picks (top-level functions and functions of imported instances)."""
        imports = component.type.imports(self.engine)
        with linker.root() as root:
            for name, item in imports.items():
                if not wanted(name):
                    continue
                ty = component_item_type(item)
                if isinstance(ty, wc.FuncType):
                    root.add_func(name, _trap(name))
                elif isinstance(ty, wc.ComponentInstanceType):
                    with root.add_instance(name) as instance:
                        for fname, export in ty.exports(self.engine).items():
                            if isinstance(component_item_type(export), wc.FuncType):
                                instance.add_func(fname, _trap(f"{name}#{fname}"))


def _wasip2_host(host: WasiHost) -> dict[str, dict[str, Callable[..., Any]]]:
    """WASI preview 2's random and wall-clock functions on `host`, by interface (any 0.2.x:
    their functions have not changed; 0.3's are another API) and function name."""

    def random_bytes(_: Any, length: int) -> bytes:
        return host.random(length)

    def random_u64(_: Any) -> int:
        return int.from_bytes(host.random(8), "little")

    def seed(_: Any) -> tuple[int, int]:
        data = host.random(16)
        return int.from_bytes(data[:8], "little"), int.from_bytes(data[8:], "little")

    def datetime(nanoseconds: int | None) -> wc.Record:
        record = wc.Record()  # wasmtime-py reads a record's fields as attributes
        seconds, rest = divmod(nanoseconds or 0, 1_000_000_000)
        vars(record).update(seconds=seconds, nanoseconds=rest)
        return record

    return {
        "wasi:random/random": {"get-random-bytes": random_bytes, "get-random-u64": random_u64},
        "wasi:random/insecure": {
            "get-insecure-random-bytes": random_bytes,
            "get-insecure-random-u64": random_u64,
        },
        "wasi:random/insecure-seed": {"insecure-seed": seed},
        "wasi:clocks/wall-clock": {
            "now": lambda _: datetime(host.clock_time(Clock.REALTIME)),
            "resolution": lambda _: datetime(host.clock_resolution(Clock.REALTIME)),
        },
    }


def _trap(name: str) -> Callable[..., Any]:
    def call(*_: Any) -> Any:
        raise InitError(
            f"init called the import `{name}`, which nothing provides during init "
            f"(only WASI is linked, with {option('allow_wasi')})"
        )

    return call


def _find_func(store: wasmtime.Store, instance: wc.Instance, init: InitCall) -> wc.Func:
    """The init function: a top-level export, or `interface.function` (a version may follow
    either part, as in `ns:pkg/iface.func@1.0.0`)."""
    func = instance.get_func(store, init.name)
    if func is not None:
        return func
    text = init.name
    for dot in [m.start() for m in re.finditer(r"\.", text)][::-1]:
        iface, fname = text[:dot], text[dot + 1 :]
        if "@" in fname:
            fname, version = fname.split("@", 1)
            iface = f"{iface}@{version}"
        outer = instance.get_export_index(store, iface)
        if outer is None:
            continue
        index = instance.get_export_index(store, fname, instance=outer)
        if index is not None:
            found = instance.get_func(store, index)
            if found is not None:
                return found
    raise InitError(
        f"the component has no `{init.name}` function export "
        f"(choose one with {option('init_func')})"
    )


def _arguments(store: wasmtime.Store, func: wc.Func, init: InitCall) -> list[Any]:
    params = func.type(store).params
    if init.args is None:
        if params:
            names = ", ".join(name for name, _ in params)
            raise ConfigError(
                f"`{init.name}` takes parameters ({names}); give them in WAVE syntax, "
                f"e.g. {option('init_func')} '{init.name}(...)'"
            )
        return []
    return parse_args(init.args, params, init.text)


def _zero_image(size: int) -> mmap.mmap | bytearray:
    """`size` zero bytes whose pages cost memory only once written: a component's memory is
    copied out run by run, and a 1 GiB heap with a few bytes set then takes a few MiB. Private
    anonymous pages read as the kernel's zero page; a shared mapping (mmap's default) would
    allocate each page the scan reads."""
    private = getattr(mmap, "MAP_PRIVATE", None)  # not on Windows
    if not size or private is None:
        return bytearray(size)
    return mmap.mmap(-1, size, flags=private)


class AccessorState:
    """The InstanceState of one core module, read through the component's accessor exports."""

    def __init__(self, session: Session, access: ModuleAccess) -> None:
        self.session = session
        self.access = access
        self.images: dict[str, mmap.mmap | bytearray] = {}
        self.where = access.where

    def _call(self, export: str, *args: Any) -> Any:
        session = self.session
        func = session.instance.get_func(session.store, export)
        if func is None:  # pragma: no cover - the instrumentation exported it
            raise InitError(f"the instrumented component lacks `{export}`")
        result = session.runtime.call(
            f"reading the state of {self.where}", lambda: func(session.store, *args)
        )
        func.post_return(session.store)
        return result

    def global_value(self, name: str, valtype: str) -> int | None:
        exports = self.access.globals[name]
        if valtype == "v128":
            lo, hi = (int(self._call(e)) for e in exports)
            return lo | hi << 64
        if valtype in ("funcref", "externref"):
            if self._call(exports[0]):
                return None
            index = name.rsplit("_", 1)[1]
            raise UnsupportedModule(
                f"global {index} of {self.where} holds a non-null {valtype} after init; "
                "references inside components cannot be snapshotted"
            )
        return int(self._call(exports[0]))

    def memory(self, name: str) -> memoryview:
        image = self.images.get(name)
        if image is None:
            image = self.images[name] = self._read_memory(name)
        return memoryview(image)

    def _read_memory(self, name: str) -> mmap.mmap | bytearray:
        size = int(self._call(self.access.memory_size[name]))
        image = _zero_image(size)
        units = size // SCAN_UNIT
        read = self.access.memory_read[name]
        for first in range(0, units, CHUNK):
            count = min(CHUNK, units - first)
            flags = self._call(self.access.memory_scan[name], first * SCAN_UNIT, count)
            for run in _RUNS.finditer(flags.encode("latin-1")):
                start = (first + run.start()) * SCAN_UNIT
                end = (first + run.end()) * SCAN_UNIT
                self._copy(read, image, start, end)
        if size % SCAN_UNIT:  # a custom page size can leave a partial unit at the end
            self._copy(read, image, units * SCAN_UNIT, size)
        return image

    def _copy(self, read: str, image: mmap.mmap | bytearray, start: int, end: int) -> None:
        for offset in range(start, end, CHUNK):
            length = min(CHUNK, end - offset)
            image[offset : offset + length] = self._call(read, offset, length).encode("latin-1")

    def check_table_writes(self) -> None:
        """Fail, naming the instruction, if a table write ran during instantiation or init."""
        if self.access.table_writes is None:
            return
        mark = int(self._call(self.access.table_writes))
        if mark:
            site = self.access.write_sites[mark - 1]
            func = function_name(self.access.context.module, site.func)
            raise UnsupportedModule(
                f"function {func} of {self.where} ran `{site.instruction}` on table "
                f"{site.table} (offset {site.offset:#x}) during init or a start function; "
                "table writes inside components cannot be snapshotted"
            )

    def table(self, name: str) -> TableState:
        ordinal = int(name.rsplit("_", 1)[1])
        table = self.access.context.module.tables[ordinal]
        size = int(self._call(self.access.table_size[name]))
        if size != table.limits.minimum:
            raise UnsupportedModule(
                f"table {table.index} of {self.where} grew from {table.limits.minimum} to "
                f"{size} entries during init or a start function; tables inside components "
                "cannot be snapshotted"
            )
        return TableState(size, {})

    def segment_dropped(self, probe: str) -> bool:
        session = self.session
        func = session.instance.get_func(session.store, self.access.probes[probe])
        assert func is not None
        try:
            func(session.store)
            func.post_return(session.store)
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            segment = probe.rsplit("_", 1)[1]
            raise UnsupportedModule(
                f"passive segment {segment} of {self.where} was dropped during init; "
                "dropped segments inside components are not supported"
            ) from None
        return False
