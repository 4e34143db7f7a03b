"""Run an instrumented module's initialization on wasmtime, with a time limit.

Type information always comes from our own parser: asking wasmtime about a v128 type aborts
the process (see the wasmtime-py probe notes), so nothing here touches `ValType`.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import wasmtime

from ..errors import ConfigError, InitError, InvalidModule, option
from ..files import read_module
from ..module.instrumentation import INITIALIZE, ModuleContext
from ..options import Features, WizenOptions
from . import wasmtime_api as api
from .compile import engine_config, one_line, uses_reference_types, winch_available
from .instance import WasmtimeState
from .interrupts import INIT_GROUP, process_ends_with_run
from .rival import Overtaken, Rival, worth_a_rival

if TYPE_CHECKING:
    from .host import CapturedOutput  # WASI's host loads only for modules that link it

__all__ = ["Runtime"]

_T = TypeVar("_T")

# A pattern, not compiled here: only a failed instantiation needs it.
_UNKNOWN_IMPORT = r"unknown import: `([^`]*)` has not been defined"
# The most elements a table may declare (wasmparser's and the web engines' shared limit).
MAX_TABLE_ELEMENTS = 10_000_000
# Inputs from this size on have their compiled code kept in wasmtime's cache. Smaller ones
# compile in milliseconds (Winch: regex's 80 KB in ~5), less than the cache costs a first run
# (~3 ms: its directories, worker thread and write), and the result cache covers rebuilds.
COMPILE_CACHE_MIN_BYTES: Final = 1 << 20
# Inputs from this size on are validated beside their compile (`Runtime.validating`); smaller
# ones validate in a few milliseconds, about what a thread and an engine of its own cost.
VALIDATE_BESIDE_BYTES: Final = 1 << 20
_INVALID: Final = "invalid module"  # how the validator's error about an input begins


def _backtrace(trap: wasmtime.Trap, code_moved: int) -> str:
    frames = []
    for frame in trap.frames[:8]:
        where = frame.func_name or f"function {frame.func_index}"
        if frame.module_offset is not None and frame.module_offset < 1 << 63:
            where += f" at {frame.module_offset - code_moved:#x}"
        frames.append(where)
    more = " < ..." if len(trap.frames) > 8 else ""
    return " (in " + " < ".join(frames) + more + ")" if frames else ""


# `-O opt-level` values (options.OPT_LEVELS) and the Config names they stand for.
_OPT_LEVELS = {"0": "none", "1": "speed", "2": "speed", "s": "speed_and_size"}


def _opt_level(options: WizenOptions) -> str:
    """Cranelift's level for the init run: as asked (`-O opt-level`), else optimized when
    Cranelift was chosen by name and unoptimized when it stands in for Winch."""
    if options.opt_level is not None:
        return _OPT_LEVELS[options.opt_level]
    return "speed" if options.compiler == "cranelift" else "none"


class Runtime:
    """wasmtime engines configured from the options: Cranelift validates, and runs init unless
    the baseline compiler Winch, several times faster to compile, supports the module."""

    def __init__(self, options: WizenOptions, input_size: int = 0) -> None:
        """Engines for wizening an input of `input_size` bytes (from which its compiled code
        is worth wasmtime's compilation cache)."""
        api.require()  # an unsupported wasmtime-py fails here, in one line, before any work
        self.options = options
        self.compile_cache = options.cache and input_size >= COMPILE_CACHE_MIN_BYTES
        # Whether init's code must check the epoch for a time limit or Ctrl-C to stop it: not
        # in a process that ends with its run (see `interrupts.end_process_with_run`).
        self.checks = not process_ends_with_run()
        self.engine = self._engine(winch=False)
        self.run_engine = self.engine
        self.compiler = "cranelift"
        self.stoppable = self.checks  # whether the init run's code checks (see `run_init`)
        self._rival: Rival | None = None
        self._running = "init"  # what the init thread runs, for the time limit's error

    def _engine(
        self, *, winch: bool, rival: bool = False, stoppable: bool | None = None
    ) -> wasmtime.Engine:
        options = self.options
        # A rival compiles on one core, beside the init, and is not worth caching.
        # Cranelift compiles for one init run: unoptimized, like Winch, it compiles CPython in
        # 43 s instead of 51. The rival, and a `cranelift` asked for by name, want fast code
        # (the rival with the allocator that makes it).
        return wasmtime.Engine(
            engine_config(
                options.features,
                cache=self.compile_cache and not rival,
                stoppable=self.checks if stoppable is None else stoppable,
                winch=winch,
                parallel=options.parallel_compilation and not rival,
                opt_level="speed" if rival else _opt_level(options),
                regalloc="backtracking" if rival else options.regalloc_algorithm,
            )
        )

    def cranelift_for(self, wasm: bytes) -> wasmtime.Engine:
        """The Cranelift engine that compiles `wasm` (a module or component) for init; it
        becomes `run_engine`."""
        self.run_engine, self.compiler, self.stoppable = self.engine, "cranelift", self.checks
        return self.engine

    def validate(self, wasm: bytes, what: str = _INVALID) -> None:
        self._check_reference_types(wasm, what)
        _validate(self.engine, wasm, what)

    @contextmanager
    def validating(self, wasm: bytes) -> Iterator[None]:
        """Validate the input `wasm` while the body parses, instruments and compiles it.

        A big input is validated on a thread of its own at idle priority (Linux): the compile
        validates what it compiles anyway, and the input's own check then fits in the core
        that the compile's serial end leaves idle (CPython: 1.5 s on one core), instead of
        running before it (0.23 s on two). A failure in the body gives way to the
        validator's error, which says what is wrong with the input itself."""
        if len(wasm) < VALIDATE_BESIDE_BYTES:
            self.validate(wasm)
            yield
            return
        self._check_reference_types(wasm, _INVALID)
        check = _IdleValidation(self.options.features, wasm, fallback=self.engine)
        try:
            yield
        except Exception:
            check.finish()  # an invalid input: the validator's error, not the body's
            raise
        check.finish()

    def _check_reference_types(self, wasm: bytes, what: str) -> None:
        if not self.options.features.reference_types and uses_reference_types(wasm):
            raise InvalidModule(f"{what}: reference types support is not enabled")

    def compile(self, wasm: bytes) -> wasmtime.Module:
        """Compile for the init run; the engine that compiled it becomes `run_engine`."""
        if self.options.compiler != "cranelift" and winch_available():
            rival = self.options.compiler == "auto" and worth_a_rival(wasm, self.options)
            # A trial's code checks the epoch, for the rival to stop it.
            stoppable = self.checks or rival
            winch = self._engine(winch=True, stoppable=stoppable)
            try:
                api.validate_module(winch, wasm)  # fails fast on proposals Winch lacks
                module = api.compile_module(winch, wasm)
            except wasmtime.WasmtimeError as e:
                if self.options.compiler == "winch":
                    raise InvalidModule(f"Winch cannot compile the module: {one_line(e)}") from None
            else:
                self.run_engine, self.compiler, self.stoppable = winch, "winch", stoppable
                if rival:
                    self._rival = Rival(self._engine(winch=False, rival=True), wasm, winch)
                return module
        try:
            return api.compile_module(self.cranelift_for(wasm), wasm)
        except wasmtime.WasmtimeError as e:
            raise InvalidModule(f"failed to compile the module: {one_line(e)}") from None

    def initialize(self, context: ModuleContext, module: wasmtime.Module) -> WasmtimeState:
        """Instantiate, run start, `_initialize` and the init func; return the live state.

        With a rival compiling, this first run is a trial that keeps its output to itself: if
        Cranelift's code is ready before it ends, init starts over on that code instead."""
        rival = self._rival
        if rival is None:
            return self._initialize(context, module)
        overtaken = False
        captured = _trial_output(self.options.allow_wasi)
        try:
            state = self._initialize(context, module, captured=captured)
        except Overtaken:
            overtaken = True
        finally:
            self._rival = None
            rival.settle()  # from here on, the rival changes nothing
            if not overtaken and captured:  # the run that counts, finished or failed
                captured.replay()
        if not overtaken:
            # A rival that finished after init did may have ticked the epoch.
            state.store.set_epoch_deadline(1)
            return state
        assert rival.module is not None
        self.run_engine, self.compiler, self.stoppable = rival.engine, "cranelift", self.checks
        return self._initialize(context, rival.module)

    def _initialize(
        self,
        context: ModuleContext,
        module: wasmtime.Module,
        captured: CapturedOutput | None = None,
    ) -> WasmtimeState:
        store = wasmtime.Store(self.run_engine)
        store.set_epoch_deadline(1)
        if self._rival is not None and self._rival.won:
            # Ready before this deadline was set: its epoch tick cannot stop the trial.
            raise Overtaken
        # table.grow past what a module may declare fails (returns -1), as the spec allows,
        # instead of filling the build machine's memory with a table no snapshot can hold.
        store.set_limits(table_elements=MAX_TABLE_ELEMENTS)
        linker = wasmtime.Linker(self.run_engine)
        host = None
        if self.options.allow_wasi:  # WASI's host, and its imports, only for modules that link it
            from .host import define_wasi_host, wasi_config
            from .wasi import WasiHost

            store.set_wasi(wasi_config(self.options, captured))
            linker.define_wasi()
            host = WasiHost.for_build(self.options.reproducible)
            define_wasi_host(linker, host)

        def run() -> WasmtimeState:
            self._define_preloads(store, linker)
            policy = self.options.unknown_imports
            if policy == "trap":
                api.define_unknown_imports_as_traps(linker, module)
            elif policy == "default":
                api.define_unknown_imports_as_default_values(linker, store, module)
            else:
                from .host import reject_unprovided, unprovided_imports

                reject_unprovided("the module", unprovided_imports(store, linker, module))
            instance = self.call(
                "instantiating the module", lambda: linker.instantiate(store, module)
            )
            state = WasmtimeState(store, instance, context)
            state.wasi = host
            moved = context.code_moved
            if context.start is not None:
                self.call("the start function", partial(state.call, context.start), moved)
            if context.call_initialize:
                self.call(f"`{INITIALIZE}`", partial(state.call, INITIALIZE), moved)
            self.call(f"`{context.init_func}`", partial(state.call, context.init_func), moved)
            return state

        return self.run_init(run)

    def run_init(self, run: Callable[[], _T]) -> _T:
        """`run()` (instantiate and init) on a thread of its own, waited for until it ends, the
        time limit passes, Ctrl-C arrives or the build's `InitGroup` stops it.

        A run that is given up on stops if its code checks the epoch. In a process that ends
        with its run (the CLI, a wizening child) it does not: the run goes on, on its daemon
        thread, until the process exits, right after reporting. Waiting here, the calling
        thread stays in Python, where Ctrl-C raises KeyboardInterrupt."""
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
                        f"{self._running} did not finish within {timeout:g} s "
                        f"({option('init_timeout')})"
                    )
            if not outcome:
                raise KeyboardInterrupt  # the group stopped this run
        except BaseException:
            if not outcome:
                self._give_up(worker)
            raise
        finished, value = outcome.pop()
        if finished:
            return value  # type: ignore[no-any-return]
        try:
            raise value
        finally:
            # An exception held by a frame it passes through is a cycle: a trial's store (uap:
            # 35 MiB) would wait for the garbage collector.
            del value

    def _give_up(self, worker: threading.Thread) -> None:
        """Stop the run if its code checks the epoch, and let it end before going on."""
        if self.stoppable:
            self.run_engine.increment_epoch()
            worker.join(timeout=5)

    def call(self, what: str, run: Callable[[], Any], code_moved: int = 0) -> Any:
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
                raise Overtaken from None
            raise InitError(f"{what} trapped: {one_line(e)}{_backtrace(e, code_moved)}") from None
        except wasmtime.WasmtimeError as e:
            unknown = re.search(_UNKNOWN_IMPORT, str(e))
            if unknown:
                raise InitError(
                    f"{what} used the import `{unknown.group(1)}`, which nothing provides during "
                    f"init (link WASI with {option('allow_wasi')}, or provide it with "
                    f"{option('preloads')})"
                ) from None
            raise InitError(f"{what} failed: {one_line(e)}") from None

    def _define_preloads(self, store: wasmtime.Store, linker: wasmtime.Linker) -> None:
        for preload in self.options.preloads:
            try:
                with Path(preload.path).open("rb") as f:
                    source = read_module(f)
            except OSError as e:
                raise ConfigError(
                    f"cannot read preload `{preload.name}` ({e.strerror}: {preload.path})"
                ) from None
            except InvalidModule as e:
                raise InvalidModule(f"preload `{preload.name}` ({preload.path}): {e}") from None
            try:
                module = wasmtime.Module(
                    self.run_engine, source if source[:1] == b"\0" else source.decode()
                )
            except (wasmtime.WasmtimeError, UnicodeDecodeError) as e:
                raise InvalidModule(
                    f"preload `{preload.name}` ({preload.path}): {one_line(e)}"
                ) from None
            what = f"instantiating preload `{preload.name}`"
            instance = self.call(what, partial(linker.instantiate, store, module))
            try:
                linker.define_instance(store, preload.name, instance)
            except wasmtime.WasmtimeError as e:  # a name WASI or an earlier preload took
                raise ConfigError(
                    f"preload `{preload.name}` ({preload.path}): {one_line(e)}"
                ) from None


def _validate(engine: wasmtime.Engine, wasm: bytes, what: str = _INVALID) -> None:
    try:
        api.validate_module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise InvalidModule(f"{what}: {one_line(e)}") from None


def _trial_output(allow_wasi: bool) -> CapturedOutput | None:
    """Where a trial's WASI stdout and stderr wait until it is known to count; a module
    without WASI writes none."""
    if not allow_wasi:
        return None
    from .host import CapturedOutput

    return CapturedOutput()


class _IdleValidation:
    """An input's validation on a thread of its own, at idle priority where the OS has one."""

    def __init__(self, features: Features, wasm: bytes, fallback: wasmtime.Engine) -> None:
        # One thread, not wasmtime's pool: the pool's threads would compete with the compile.
        config = engine_config(features, cache=False, stoppable=False, parallel=False)
        self._engine = wasmtime.Engine(config)
        self._fallback = fallback
        self._wasm = wasm
        self._error: InvalidModule | None = None
        self._thread = threading.Thread(
            target=self._run, name="hatch-wizer validate", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        if hasattr(os, "SCHED_IDLE"):  # Linux, where it applies to the calling thread only
            with suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            _validate(self._engine, self._wasm)
        except InvalidModule as e:
            self._error = e

    def finish(self) -> None:
        """Raise the validator's error if the input is invalid: the thread's, if it is done,
        else that of a validation here, at normal priority, on the `fallback` engine. On a
        machine that other work keeps busy an idle thread may wait long for its turn; it is
        then left to end alone."""
        if self._thread.is_alive():
            _validate(self._fallback, self._wasm)
        elif self._error is not None:
            raise self._error


def _wait(event: threading.Event, timeout: float | None) -> bool:
    """`event.wait(timeout)` in short steps: on Windows a long wait does not wake for Ctrl-C."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
        if left <= 0:
            return False
        if event.wait(left):
            return True
