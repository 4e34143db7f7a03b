"""Run an instrumented module's initialization on wasmtime: the only module that imports it.

Type information always comes from our own parser: asking wasmtime about a v128 type aborts
the process (see the wasmtime-py probe notes), so nothing here touches `ValType`.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import itertools
import os
import platform
import re
import shutil
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._extern import wrap_extern

from ..errors import ConfigError, InitError, InvalidModule
from ..module.instrumentation import INITIALIZE, ModuleContext
from ..module.layout import data_bytes
from ..module.scanner import GLOBAL_SLOT
from ..module.state import Ref, TableState
from ..options import Features, WizenOptions
from .interrupts import INIT_GROUP
from .wasi import WASI_MODULE, Errno, WasiHost

__all__ = ["Runtime", "WasmtimeState"]

_T = TypeVar("_T")

_UNKNOWN_IMPORT = re.compile(r"unknown import: `([^`]*)` has not been defined")
_KIND_FUNCREF = 5
_KIND_EXTERNREF = 6
_KIND_ANYREF = 7
# The most elements a table may declare (wasmparser's and the web engines' shared limit).
MAX_TABLE_ELEMENTS = 10_000_000
_KIND_EXNREF = 8
# Instrumented modules up to this size start init under Winch while Cranelift compiles them on
# a second core (a few tens of ms); an init still running then restarts on Cranelift's code,
# which runs it ~1.6x faster (uap: 0.53 -> 0.33 s). Bigger modules take seconds to compile.
RIVAL_MAX_BYTES = 1 << 20
# Cranelift compiles modules (and components) up to this size with epoch checks, so that a
# time limit, Ctrl-C or a failing build can stop their init. Past it the checks cost more than
# they are worth: CPython's compile takes 4.7 s and 125 MiB more with them (40.3 vs 45.0 s,
# 2,133 vs 2,258 MiB), and code with them runs loops 15-20 % slower (uap's init: 329 vs 273 ms).
STOPPABLE_MAX_BYTES = 1 << 20


# Proposals Winch cannot compile; a Winch engine with any of them enabled aborts the process.
_NOT_IN_WINCH = ("relaxed_simd", "gc", "function_references", "exceptions", "tail_call", "threads",
                 "wide_arithmetic")  # fmt: skip


def _winch_available() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _config(
    features: Features,
    *,
    cache: bool,
    stoppable: bool,
    winch: bool = False,
    parallel: bool = True,
    optimize: bool = True,
) -> wasmtime.Config:
    if winch:
        features = replace(features, **dict.fromkeys(_NOT_IN_WINCH, False))
    config = wasmtime.Config()
    if winch:
        ffi.wasmtime_config_strategy_set(config.ptr(), 2)  # the Python property refuses "winch"
        config.wasm_component_model = False
    # Disabling SIMD while relaxed SIMD stays on aborts the process: keep them consistent.
    config.wasm_relaxed_simd = features.simd and features.relaxed_simd
    config.wasm_simd = features.simd
    config.wasm_relaxed_simd_deterministic = True
    config.wasm_bulk_memory = features.bulk_memory
    config.wasm_multi_memory = features.multi_memory
    config.wasm_multi_value = features.multi_value
    config.wasm_memory64 = features.memory64
    config.wasm_threads = features.threads
    config.wasm_tail_call = features.tail_call
    config.wasm_exceptions = features.exceptions
    config.wasm_gc = features.gc
    config.wasm_function_references = features.function_references or features.gc
    config.wasm_wide_arithmetic = features.wide_arithmetic
    config.wasm_custom_page_sizes = features.custom_page_sizes
    # Turning reference types off aborts the process too; our validator check covers it.
    config.epoch_interruption = stoppable  # init can be stopped, not only left (`run_init`)
    config.parallel_compilation = parallel
    # Nothing unwinds natively through wasm frames here (host functions are Python, wasmtime's
    # own backtraces walk frame pointers): without unwind info there is less to compile.
    config.native_unwind_info = False
    if not optimize:
        config.cranelift_opt_level = "none"
    if cache:
        config.cache = True
    return config


def _bytes_pointer(wasm: bytes) -> Any:
    """A pointer to the bytes themselves (the caller keeps `wasm` alive during the call)."""
    # wasmtime-py copies the bytes into a ctypes array first; for a 100 MB module that is
    # 100 MB more at the peak of compilation. A pointer into the bytes object needs no copy.
    return ctypes.cast(ctypes.c_char_p(wasm), ctypes.POINTER(ctypes.c_uint8))


def _validate(engine: wasmtime.Engine, wasm: bytes) -> None:
    """`wasmtime.Module.validate` without copying the bytes."""
    wasm = bytes(wasm)  # no copy for bytes; bytearrays have no stable c_char_p
    error = ffi.wasmtime_module_validate(engine.ptr(), _bytes_pointer(wasm), len(wasm))
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def _module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """`wasmtime.Module(engine, wasm)` without copying the bytes."""
    wasm = bytes(wasm)
    ptr = ctypes.POINTER(ffi.wasmtime_module_t)()
    error = ffi.wasmtime_module_new(
        engine.ptr(), _bytes_pointer(wasm), len(wasm), ctypes.byref(ptr)
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    return wasmtime.Module._from_ptr(ptr)


def _message(error: Exception) -> str:
    """wasmtime's error text without its backtrace, on one line."""
    text = str(getattr(error, "message", None) or error)
    if "Caused by:" in text:
        text = text.split("Caused by:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [re.sub(r"^\d+: ", "", line) for line in lines]
    return "; ".join(dict.fromkeys(lines))


def _backtrace(trap: wasmtime.Trap, code_moved: int) -> str:
    frames = []
    for frame in trap.frames[:8]:
        where = frame.func_name or f"function {frame.func_index}"
        if frame.module_offset is not None and frame.module_offset < 1 << 63:
            where += f" at {frame.module_offset - code_moved:#x}"
        frames.append(where)
    more = " < ..." if len(trap.frames) > 8 else ""
    return " (in " + " < ".join(frames) + more + ")" if frames else ""


class Runtime:
    """wasmtime engines configured from the options: Cranelift validates, and runs init unless
    the baseline compiler Winch, several times faster to compile, supports the module."""

    def __init__(self, options: WizenOptions) -> None:
        self.options = options
        self.engine = self._engine(winch=False)
        self.run_engine = self.engine
        self.compiler = "cranelift"
        self.stoppable = True  # the init run's code checks the epoch (see `run_init`)
        self._rival: _Rival | None = None
        self._running = "init"  # what the init thread runs, for the time limit's error

    def _engine(
        self, *, winch: bool, rival: bool = False, stoppable: bool = True
    ) -> wasmtime.Engine:
        options = self.options
        # A rival compiles on one core, beside the init, and is not worth caching.
        # Cranelift compiles for one init run: unoptimized, like Winch, it compiles CPython in
        # 43 s instead of 51. The rival, and a `cranelift` asked for by name, want fast code.
        return wasmtime.Engine(
            _config(
                options.features,
                cache=options.cache and not rival,
                stoppable=stoppable,
                winch=winch,
                parallel=not rival,
                optimize=rival or options.compiler == "cranelift",
            )
        )

    def cranelift_for(self, wasm: bytes) -> wasmtime.Engine:
        """The Cranelift engine that compiles `wasm` (a module or component) for init; it
        becomes `run_engine`. Past STOPPABLE_MAX_BYTES its code has no epoch checks."""
        self.stoppable = len(wasm) <= STOPPABLE_MAX_BYTES
        engine = self.engine if self.stoppable else self._engine(winch=False, stoppable=False)
        self.run_engine, self.compiler = engine, "cranelift"
        return engine

    def validate(self, wasm: bytes, what: str = "invalid module") -> None:
        if not self.options.features.reference_types and _uses_reference_types(wasm):
            raise InvalidModule(f"{what}: reference types support is not enabled")
        try:
            _validate(self.engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise InvalidModule(f"{what}: {_message(e)}") from None

    def compile(self, wasm: bytes) -> wasmtime.Module:
        """Compile for the init run; the engine that compiled it becomes `run_engine`."""
        if self.options.compiler != "cranelift" and _winch_available():
            winch = self._engine(winch=True)
            try:
                _validate(winch, wasm)  # fails fast on proposals Winch lacks
                module = _module(winch, wasm)
            except wasmtime.WasmtimeError as e:
                if self.options.compiler == "winch":
                    raise InvalidModule(f"Winch cannot compile the module: {_message(e)}") from None
            else:
                self.run_engine, self.compiler, self.stoppable = winch, "winch", True
                if self.options.compiler == "auto" and _worth_a_rival(wasm, self.options):
                    self._rival = _Rival(self._engine(winch=False, rival=True), wasm, winch)
                return module
        try:
            return _module(self.cranelift_for(wasm), wasm)
        except wasmtime.WasmtimeError as e:
            raise InvalidModule(f"failed to compile the module: {_message(e)}") from None

    def initialize(self, context: ModuleContext, module: wasmtime.Module) -> WasmtimeState:
        """Instantiate, run start, `_initialize` and the init func; return the live state.

        With a rival compiling, this first run is a trial that keeps its output to itself: if
        Cranelift's code is ready before it ends, init starts over on that code instead."""
        rival = self._rival
        if rival is None:
            return self._initialize(context, module)
        overtaken = False
        with tempfile.TemporaryDirectory(prefix="hatch-wizer-") as tmp:
            try:
                state = self._initialize(context, module, captured=Path(tmp))
            except _Overtaken:
                overtaken = True
            finally:
                self._rival = None
                rival.settle()  # from here on, the rival changes nothing
                if not overtaken:  # the run that counts, finished or failed
                    _replay(Path(tmp))
        if not overtaken:
            # A rival that finished after init did may have ticked the epoch.
            state.store.set_epoch_deadline(1)
            return state
        assert rival.module is not None
        self.run_engine, self.compiler = rival.engine, "cranelift"
        return self._initialize(context, rival.module)

    def _initialize(
        self, context: ModuleContext, module: wasmtime.Module, captured: Path | None = None
    ) -> WasmtimeState:
        store = wasmtime.Store(self.run_engine)
        store.set_epoch_deadline(1)
        # table.grow past what a module may declare fails (returns -1), as the spec allows,
        # instead of filling the build machine's memory with a table no snapshot can hold.
        store.set_limits(table_elements=MAX_TABLE_ELEMENTS)
        linker = wasmtime.Linker(self.run_engine)
        host = None
        if self.options.allow_wasi:
            store.set_wasi(_wasi_config(self.options, captured))
            linker.define_wasi()
            host = WasiHost.for_build(self.options.reproducible)
            _define_wasi_host(linker, host)

        def run() -> WasmtimeState:
            self._define_preloads(store, linker)
            linker.define_unknown_imports_as_traps(module)
            instance = self._call(
                "instantiating the module", lambda: linker.instantiate(store, module)
            )
            state = WasmtimeState(store, instance, context)
            state.wasi = host
            moved = context.code_moved
            if context.start is not None:
                self._call("the start function", partial(state.call, context.start), moved)
            if context.call_initialize:
                self._call(f"`{INITIALIZE}`", partial(state.call, INITIALIZE), moved)
            self._call(f"`{context.init_func}`", partial(state.call, context.init_func), moved)
            return state

        return self.run_init(run)

    def run_init(self, run: Callable[[], _T]) -> _T:
        """`run()` (instantiate and init) on a thread of its own, waited for until it ends, the
        time limit passes, Ctrl-C arrives or the build's `InitGroup` stops it.

        A run that is given up on stops if its code checks the epoch. Big modules' code does
        not (see STOPPABLE_MAX_BYTES): their run goes on, on its daemon thread, until the
        process ends, which the CLI does at once and a failed build soon after. Waiting here,
        the calling thread stays in Python, where Ctrl-C raises KeyboardInterrupt."""
        outcome: list[tuple[bool, Any]] = []
        wake = threading.Event()

        def work() -> None:
            try:
                outcome.append((True, run()))
            except BaseException as e:  # handed to the waiting thread
                outcome.append((False, e))
            finally:
                wake.set()

        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(work,), name="hatch-wizer init",
            daemon=True,
        )  # fmt: skip
        group = INIT_GROUP.get()
        timeout = self.options.init_timeout
        try:
            with group.member(wake.set) if group else nullcontext():
                worker.start()
                if not _wait(wake, timeout):
                    raise InitError(
                        f"{self._running} did not finish within {timeout:g} s (--init-timeout)"
                    )
            if not outcome:
                raise KeyboardInterrupt  # the group stopped this run
        except BaseException:
            if not outcome:
                self._give_up(worker)
            raise
        finished, value = outcome[0]
        if not finished:
            raise value
        return value  # type: ignore[no-any-return]

    def _give_up(self, worker: threading.Thread) -> None:
        """Stop the run if its code checks the epoch, and let it end before going on."""
        if self.stoppable:
            self.run_engine.increment_epoch()
            worker.join(timeout=5)

    def _call(self, what: str, run: Callable[[], Any], code_moved: int = 0) -> Any:
        """`run()`, with wasmtime's failures as one-line errors; frames of the instrumented
        module show offsets in the input (see `ModuleContext.code_moved`)."""
        self._running = what
        try:
            return run()
        except wasmtime.ExitTrap as e:
            raise InitError(
                f"{what} exited (WASI proc_exit with code {e.code}) during init"
            ) from None
        except wasmtime.Trap as e:
            if e.trap_code == wasmtime.TrapCode.INTERRUPT and self._rival and self._rival.won:
                raise _Overtaken from None
            raise InitError(f"{what} trapped: {_message(e)}{_backtrace(e, code_moved)}") from None
        except wasmtime.WasmtimeError as e:
            unknown = _UNKNOWN_IMPORT.search(str(e))
            if unknown:
                raise InitError(
                    f"{what} used the import `{unknown.group(1)}`, which nothing provides during "
                    "init (link WASI with --allow-wasi, or provide it with --preload)"
                ) from None
            raise InitError(f"{what} failed: {_message(e)}") from None

    def _define_preloads(self, store: wasmtime.Store, linker: wasmtime.Linker) -> None:
        for preload in self.options.preloads:
            try:
                source = Path(preload.path).read_bytes()
            except OSError as e:
                raise ConfigError(
                    f"cannot read preload `{preload.name}` ({e.strerror}: {preload.path})"
                ) from None
            try:
                module = wasmtime.Module(
                    self.run_engine, source if source[:1] == b"\0" else source.decode()
                )
            except (wasmtime.WasmtimeError, UnicodeDecodeError) as e:
                raise InvalidModule(
                    f"preload `{preload.name}` ({preload.path}): {_message(e)}"
                ) from None
            what = f"instantiating preload `{preload.name}`"
            instance = self._call(what, partial(linker.instantiate, store, module))
            linker.define_instance(store, preload.name, instance)


def _uses_reference_types(wasm: bytes) -> bool:
    # Without the proposal, wasmtime cannot even be configured; approximate the old validator
    # by the reference-type bytes a module would need in its types and tables.
    from ..wasm.parse import parse_module

    module = parse_module(wasm)
    return len(module.tables) > 1 or any(t.elem_type != "funcref" for t in module.tables)


class _Overtaken(Exception):
    """The rival's code was ready first: the trial init was stopped, to be run again."""


class _Rival:
    """Cranelift compiling the module on a thread of its own while init runs under Winch."""

    def __init__(self, engine: wasmtime.Engine, wasm: bytes, trial: wasmtime.Engine) -> None:
        self.engine = engine
        self.won = False  # the module was ready first, and the trial was stopped
        self.module: wasmtime.Module | None = None
        self._trial = trial
        self._settled = False
        self._lock = threading.Lock()
        # Not a daemon: at exit the interpreter waits for it rather than unloading wasmtime
        # under it (the CLI exits without waiting).
        threading.Thread(target=self._compile, args=(wasm,), name="hatch-wizer rival").start()

    def _compile(self, wasm: bytes) -> None:
        try:
            module = _module(self.engine, wasm)
        except Exception:  # the trial stands; nothing to report
            return
        with self._lock:
            self.module = module
            if not self._settled:
                self.won = self._settled = True
                self._trial.increment_epoch()

    def settle(self) -> None:
        """Stop the race: a module ready from now on interrupts nothing."""
        with self._lock:
            self._settled = True


def _worth_a_rival(wasm: bytes, options: WizenOptions) -> bool:
    """Whether to race Cranelift: the module compiles in well under a second, and init can
    run twice unnoticed (it writes no files and reads no stdin a first run would consume; its
    output is captured, and shown only for the run that counts). The determinism check runs
    init twice on one module anyway."""
    if len(wasm) > RIVAL_MAX_BYTES or options.check_determinism:
        return False
    if any(p.writable for p in options.preopens):
        return False
    return not (options.allow_wasi and _gives_stdin(options)) or _stdin_is_not_data()


def _gives_stdin(options: WizenOptions) -> bool:
    """Whether init reads this process's stdin (reproducible init reads none: input would make
    the snapshot depend on the build)."""
    return options.inherit_stdio and not options.reproducible


def _stdin_is_not_data() -> bool:
    """Whether a first run could not quietly consume input meant for the second: stdin is
    closed, /dev/null, or a terminal (a read there waits for someone to type; builds don't)."""
    try:
        mine, null = os.fstat(0), Path(os.devnull).stat()
    except OSError:
        return True
    return os.isatty(0) or (stat.S_ISCHR(mine.st_mode) and mine.st_rdev == null.st_rdev)


def _replay(captured: Path) -> None:
    """Show what the kept trial wrote to stdout and stderr (a closed stdout drops it, as it
    would have dropped the guest's own writes)."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        path = captured / name
        if path.exists() and path.stat().st_size:
            with (
                contextlib.suppress(OSError),
                path.open("rb") as src,
                open(fd, "wb", closefd=False) as dst,
            ):
                shutil.copyfileobj(src, dst)


def _wasi_config(options: WizenOptions, captured: Path | None = None) -> wasmtime.WasiConfig:
    wasi = wasmtime.WasiConfig()
    if options.reproducible and options.inherit_env:
        raise ConfigError(
            "inheriting the environment (inherit-env) would make a reproducible build depend "
            "on the build machine; pass variables with env, or turn reproducible off"
        )
    if options.inherit_stdio:
        if _gives_stdin(options):
            wasi.inherit_stdin()
        if captured:
            wasi.stdout_file = str(captured / "stdout")
            wasi.stderr_file = str(captured / "stderr")
        else:
            wasi.inherit_stdout()
            wasi.inherit_stderr()
    env = dict(os.environ) if options.inherit_env else {}
    env.update(options.env)
    wasi.env = sorted(env.items())
    for preopen in sorted(options.preopens, key=lambda p: p.guest):
        if not Path(preopen.host).is_dir():
            raise ConfigError(f"preopen `{preopen.guest}`: {preopen.host} is not a directory")
        wasi.preopen_dir(str(preopen.host), preopen.guest, preopen.writable)
    return wasi


def _wait(event: threading.Event, timeout: float | None) -> bool:
    """`event.wait(timeout)` in short steps: on Windows a long wait does not wake for Ctrl-C."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
        if left <= 0:
            return False
        if event.wait(left):
            return True


def _define_wasi_host(linker: wasmtime.Linker, host: WasiHost) -> None:
    """Shadow WASI's clock and random calls with `host`'s (fixed when reproducible, counted)."""
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

    def store(caller: wasmtime.Caller, address: int, data: bytes) -> int:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return Errno.FAULT
        address &= 0xFFFFFFFF  # pointers arrive as signed i32
        if address + len(data) > memory.data_len(caller):
            return Errno.FAULT
        if data:
            memory.write(caller, data, address)
        return Errno.SUCCESS

    def clock_time_get(caller: wasmtime.Caller, clock: int, precision: int, out: int) -> int:
        now = host.clock_time(clock)
        return Errno.INVAL if now is None else store(caller, out, now.to_bytes(8, "little"))

    def clock_res_get(caller: wasmtime.Caller, clock: int, out: int) -> int:
        res = host.clock_resolution(clock)
        return Errno.INVAL if res is None else store(caller, out, res.to_bytes(8, "little"))

    def random_get(caller: wasmtime.Caller, buf: int, length: int) -> int:
        length &= 0xFFFFFFFF
        memory = caller.get("memory")
        if isinstance(memory, wasmtime.Memory) and (buf & 0xFFFFFFFF) + length > memory.data_len(
            caller
        ):
            return Errno.FAULT  # before drawing bytes: a bad buffer must not cost entropy
        return store(caller, buf, host.random(length))

    linker.allow_shadowing = True
    for name, params, func in (
        ("clock_time_get", [i32, i64, i32], clock_time_get),
        ("clock_res_get", [i32, i32], clock_res_get),
        ("random_get", [i32, i32], random_get),
    ):
        ty = wasmtime.FuncType(params, [i32])
        linker.define_func(WASI_MODULE, name, ty, func, access_caller=True)
    linker.allow_shadowing = False


class WasmtimeState:
    """The InstanceState of a live wasmtime instance."""

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance, context: ModuleContext):
        self.store = store
        self.instance = instance
        self.context = context
        self.wasi: WasiHost | None = None  # the clock and random calls init made
        self._func_indices: dict[int, int] | None = None
        # Tables as instantiation left them, before start or init could change them.
        self.initial_tables = {name: self._table_raw(name) for name in context.tables}

    def export(self, name: str) -> Any:
        """One export by name; `Instance.exports()` would cost time quadratic in their count."""
        item = ffi.wasmtime_extern_t()
        raw = name.encode()
        found = ffi.wasmtime_instance_export_get(
            self.store._context(),
            ctypes.byref(self.instance._instance),
            raw,
            len(raw),
            ctypes.byref(item),
        )
        if not found:
            raise InitError(f"the instance has no export `{name}`")
        return wrap_extern(item)

    def call(self, name: str) -> None:
        self.export(name)(self.store)

    def global_value(self, name: str, valtype: str) -> int | None:
        raw = ffi.wasmtime_val_t()
        ffi.wasmtime_global_get(
            self.store._context(), ctypes.byref(self.export(name)._global), ctypes.byref(raw)
        )
        try:
            if valtype == "i32" or valtype == "f32":
                return int(raw.of.i32) & 0xFFFFFFFF
            if valtype == "i64" or valtype == "f64":
                return int(raw.of.i64) & 0xFFFFFFFFFFFFFFFF
            if valtype == "v128":
                return int.from_bytes(bytes(raw.of.v128), "little")
            index = name.rsplit("_", 1)[1]
            return self._ref(raw, f"global {index}")
        finally:
            ffi.wasmtime_val_unroot(ctypes.byref(raw))

    def memory(self, name: str) -> memoryview:
        memory = self.export(name)
        size = memory.data_len(self.store)
        address = ctypes.cast(memory.data_ptr(self.store), ctypes.c_void_p).value or 0
        return memoryview((ctypes.c_ubyte * size).from_address(address)).cast("B")

    def table(self, name: str) -> TableState:
        before = self.initial_tables[name]
        after = self._table_raw(name)
        ordinal = name.rsplit("_", 1)[1]
        changed = {}
        for slot, entry in enumerate(after):
            # Entries without a comparable identity (value -1) always count as changed.
            if slot >= len(before) or before[slot] != entry or entry[1] < 0:
                changed[slot] = self._resolve(entry, f"table {ordinal} slot {slot}")
        return TableState(len(after), changed)

    def dumped_globals(self, dump: str, globals_: list[tuple[int, str]]) -> dict[int, int]:
        """Raw bits of numeric globals, stored to the scratch memory by one added function."""
        self.call(dump)
        scratch = self.export(self.context.scratch or "")
        address = ctypes.cast(scratch.data_ptr(self.store), ctypes.c_void_p).value or 0
        raw = ctypes.string_at(address, GLOBAL_SLOT * len(globals_))
        size = {"i32": 4, "f32": 4, "i64": 8, "f64": 8, "v128": 16}
        return {
            index: int.from_bytes(raw[GLOBAL_SLOT * k : GLOBAL_SLOT * k + size[valtype]], "little")
            for k, (index, valtype) in enumerate(globals_)
        }

    def scan_runs(self, scanner: str, start: int, end: int, split: int) -> list[tuple[int, int]]:
        """Non-zero runs of `[start, end)`, found by the module's added scanner function."""
        count = self.export(scanner)(self.store, start, end, split)
        scratch = self.export(self.context.scratch or "")
        address = ctypes.cast(scratch.data_ptr(self.store), ctypes.c_void_p).value or 0
        raw = (ctypes.c_char * (16 * count)).from_address(address)
        bounds = iter(memoryview(raw).cast("B").cast("q").tolist())
        return list(zip(bounds, bounds))

    def encode_segments(self, encoder: str, runs: list[tuple[int, int]]) -> bytes:
        """Encoded active data segments for `runs`, written by the module's added encoder."""
        scratch = self.export(self.context.scratch or "")
        # struct takes the pairs as arguments twice as fast as array iterates over them.
        pairs = struct.pack(f"<{2 * len(runs)}q", *itertools.chain.from_iterable(runs))
        data = data_bytes(runs)
        needed = len(pairs) + data + 20 * len(runs)  # 20: the most a segment header takes
        have = scratch.data_len(self.store)
        if needed > have:
            scratch.grow(self.store, -(-(needed - have) // 65536))
        scratch.write(self.store, pairs, 0)
        end = self.export(encoder)(self.store, len(runs), len(pairs))
        address = ctypes.cast(scratch.data_ptr(self.store), ctypes.c_void_p).value or 0
        return ctypes.string_at(address + len(pairs), end - len(pairs))

    def segment_dropped(self, probe: str) -> bool:
        try:
            self.call(probe)
        except wasmtime.Trap:
            return True
        return False

    def _table_raw(self, name: str) -> list[tuple[int, int]]:
        """Each entry as (kind, identity); identity 0 is null."""
        table = self.export(name)
        context = self.store._context()
        size = ffi.wasmtime_table_size(context, ctypes.byref(table._table))
        raw = ffi.wasmtime_val_t()
        entries = []
        for slot in range(size):
            ffi.wasmtime_table_get(context, ctypes.byref(table._table), slot, ctypes.byref(raw))
            entries.append(self._identity(raw))
            ffi.wasmtime_val_unroot(ctypes.byref(raw))
        return entries

    def _identity(self, raw: Any) -> tuple[int, int]:
        if raw.kind == _KIND_FUNCREF:
            func = raw.of.funcref
            if not getattr(func, "__private"):
                return (_KIND_FUNCREF, 0)
            return (
                _KIND_FUNCREF,
                int(ffi.wasmtime_func_to_raw(self.store._context(), ctypes.byref(func))),
            )
        if raw.kind == _KIND_EXTERNREF:
            ref = raw.of.externref
            null = not (
                getattr(ref, "__private1")
                or getattr(ref, "__private2")
                or getattr(ref, "__private3")
            )
            return (_KIND_EXTERNREF, 0 if null else -1)
        if raw.kind == _KIND_ANYREF or raw.kind == _KIND_EXNREF:
            ref = raw.of.anyref if raw.kind == _KIND_ANYREF else raw.of.exnref
            if not ref.store_id:
                return (raw.kind, 0)  # null: as comparable as any other null
        return (raw.kind, -1)  # a GC reference: no identity we can compare

    def _ref(self, raw: Any, where: str) -> Ref:
        return self._resolve(self._identity(raw), where)

    def _resolve(self, identity: tuple[int, int], where: str) -> Ref:
        kind, value = identity
        if value == 0:
            return None
        if kind == _KIND_FUNCREF:
            index = self._funcs().get(value)
            if index is None:
                raise InitError(
                    f"{where} holds a function that the module does not define or import "
                    "(a host function), which a snapshot cannot reproduce"
                )
            return index
        if kind == _KIND_EXTERNREF:
            raise InitError(
                f"{where} holds a non-null externref (a host value), "
                "which a snapshot cannot reproduce"
            )
        raise InitError(f"{where} holds a GC reference, which a snapshot cannot reproduce")

    def _funcs(self) -> dict[int, int]:
        if self._func_indices is None:
            context = self.store._context()
            self._func_indices = {}
            # Tables as instantiated, then exports: the lowest index wins when several
            # functions are one (an import re-exported, say).
            for slots, name in zip(self.context.initial_slots, self.context.tables):
                initial = self.initial_tables[name]
                for slot, index in reversed(slots):
                    self._func_indices[initial[slot][1]] = index
            for index, name in reversed(self.context.funcs):
                func = self.export(name)
                raw = int(ffi.wasmtime_func_to_raw(context, ctypes.byref(func._func)))
                self._func_indices[raw] = index
        return self._func_indices
