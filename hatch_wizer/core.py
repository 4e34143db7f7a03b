"""The wizening pipeline: validate, instrument, run init on wasmtime, snapshot, rewrite.

Each entry point imports the pipeline when called, so that importing the package stays cheap:
a CLI run whose result is cached never loads the parser, the instrumentation or wasmtime, and
one under `--no-cache` never loads the cache.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Final, Protocol

from .errors import InitError, UnsupportedModule, option, render
from .names import flag
from .options import WizenOptions

if TYPE_CHECKING:
    from .component.instrument import ComponentContext
    from .engine.component import Session
    from .engine.precompile import Precompiled
    from .engine.wasi import WasiHost
    from .module.instrumentation import ModuleContext
    from .module.state import InstanceState, Snapshot

__all__ = [
    "REUSED",
    "Report",
    "Stages",
    "instrument",
    "precompile",
    "snapshot",
    "wait_for_cache_writers",
    "wizen",
]

Report = Callable[[str], None]
# How a stage line begins when `wizen()` returns a cached result instead of running init.
REUSED: Final = "reused the result of an earlier run"


class Stages(Protocol):
    """How the pipeline reports progress: `say(text)`, and `with stages(name):` for timing."""

    def say(self, text: str) -> None: ...

    def __call__(self, name: str) -> AbstractContextManager[None]: ...


def instrument(wasm: bytes, options: WizenOptions | None = None) -> tuple[ModuleContext, bytes]:
    """Parse, check and instrument `wasm`; run the returned bytes, then call `snapshot()`."""
    from .module.instrumentation import instrument_module
    from .wasm.parse import parse_module

    options = options or WizenOptions()
    options.check()
    return instrument_module(parse_module(wasm), options)


def snapshot(
    context: ModuleContext, state: InstanceState, *, release_memory: bool = False
) -> bytes:
    """The pre-initialized module, from an instance of `instrument()`'s output after init.

    With `release_memory`, the instance's memory pages are given back to the system as they
    are copied into the output (where the runtime can), and the instance is not to be used
    afterwards: a dense memory and its output then never both exist in full."""
    from .module.rewrite import rewrite
    from .module.state import take_snapshot

    return rewrite(context, take_snapshot(context, state, release_memory=release_memory))


def wizen(
    wasm: bytes,
    options: WizenOptions | None = None,
    *,
    report: Report | None = None,
    names: Callable[[str], str] = flag,
) -> bytes:
    """Run `wasm`'s initialization and return a module that starts in the resulting state.

    `wasm` may also be a component: its init export's call (`options.init_func`, a name or a
    WAVE call like `add(1, "x")`) runs, and every core instance's state is written back.

    Unless `options.cache` is off, an earlier result for the same input and options is
    reused (see `cache/`).

    `report` gets one line per stage, options in them named by `names` (the flags unless a
    front end names them otherwise; see `errors.option()`)."""
    options = options or WizenOptions()
    options.check()
    stage = _StageReporter(report, names)
    if not options.cache:  # nor the cache's imports (hashlib, json: ~4 ms of a cold CLI run)
        return _wizen_here_or_in_child(wasm, options, stage)
    from .cache import ResultCache, result_key

    cache = ResultCache.for_options(options, stage.say)
    key = result_key(wasm, options) if cache else ""
    if cache and (out := cache.load(key)) is not None:
        stage.say(f"{REUSED} from {cache.root} (see {option('cache')})")
        return out
    out = _wizen_here_or_in_child(wasm, options, stage)
    if cache:
        cache.store(key, out)
    return out


def wait_for_cache_writers() -> None:
    """Let the results `wizen()` is storing reach the disk, before an exit that would not
    wait for them (`os._exit`). Runs that never loaded the cache stored nothing."""
    store = sys.modules.get(f"{__package__}.cache.store")
    if store is not None:
        store.ResultCache.wait_for_writers()


def precompile(
    wasm: bytes, options: WizenOptions | None = None, *, report: Report | None = None
) -> Precompiled:
    """`wasm` (a wizened module) compiled ahead of time: the bytes of its `NAME.cwasm`, which
    `load_module()` loads on machines of this OS and architecture with this wasmtime."""
    from .engine.precompile import precompile as compile_ahead
    from .wasm.parse import is_component

    if is_component(wasm):
        raise UnsupportedModule("precompile: components are not supported yet, only modules")
    stage = _StageReporter(report)
    with stage("precompile"):
        out = compile_ahead(wasm, cache=(options or WizenOptions()).cache)
    stage.say(f"precompiled: needs wasmtime {out.wasmtime} on {out.target}, {out.cpu} CPU")
    return out


def _wizen_here_or_in_child(wasm: bytes, options: WizenOptions, stage: _StageReporter) -> bytes:
    """Big modules are wizened in a child process, where an init that outlives its time limit
    or Ctrl-C ends with the process, unless this process ends with its run anyway, as the CLI
    does (see `engine/child.py`)."""
    from .engine.child import in_child, wizen_in_child

    wasm = bytes(wasm)  # a caller's bytearray or memoryview: copied once, not at each stage
    if not in_child(wasm, options):
        return _wizen(wasm, options, stage)
    return wizen_in_child(_wizen_in_child, (wasm, options), stage.say)


def _wizen_in_child(wasm: bytes, options: WizenOptions, *, say: Report) -> bytes:
    """The child's side of `_wizen_here_or_in_child`: it sends its stage lines with their
    option references intact, for the parent to name as its caller does."""
    return _wizen(wasm, options, _StageReporter(say, names=option))


def _wizen(wasm: bytes, options: WizenOptions, stage: Stages) -> bytes:
    from .engine.runtime import Runtime  # the engine: the only layer that imports wasmtime
    from .module.instrumentation import instrument_module
    from .wasm.parse import check_header, is_component, parse_module

    if is_component(wasm):
        return _wizen_component(wasm, options, stage)
    check_header(wasm)
    runtime = Runtime(options, len(wasm))
    with runtime.validating(wasm):
        with stage("validate"):
            module = parse_module(wasm)
            context, instrumented = instrument_module(module, options, export_globals=False)
        for note in context.notes:
            stage.say(note)
        with stage("compile"):
            compiled = runtime.compile(instrumented)
        del instrumented  # a 100 MB module need not stay in memory through init and snapshot
    compiler = runtime.compiler
    stage.say(f"compiled with {compiler}")
    with stage("init"):
        state = runtime.initialize(context, compiled)
    if runtime.compiler != compiler:
        stage.say(f"init ran again on {runtime.compiler}'s code, ready before init ended")
    _warn_if_init_read_the_machine(stage, options, state.wasi)
    if options.check_determinism:
        with stage("determinism check"):
            from .module.determinism import differences

            found = differences(context, state, runtime.initialize(context, compiled))
            _check_determinism(found, options)
    with stage("snapshot"):
        out = snapshot(context, state, release_memory=True)
    with stage("check"):
        runtime.validate(out, "hatch-wizer produced an invalid module (a bug; please report it)")
    return out


def _wizen_component(wasm: bytes, options: WizenOptions, stage: Stages) -> bytes:
    """Run the component's init call and return a component that starts in the result."""
    from .component.check import stand_in_component
    from .component.instrument import instrument_component
    from .component.rewrite import rewrite_component
    from .engine.component import ComponentRuntime
    from .engine.wave import format_value

    runtime = ComponentRuntime(options, len(wasm))
    with stage("validate"):
        context, instrumented = instrument_component(wasm, options)
    with stage("compile"):
        compiled = runtime.compile(instrumented)
    with stage("init"):
        session = runtime.initialize(context, compiled)
    if session.results is not None:
        stage.say(f"init returned {format_value(session.results)}")
    _warn_if_init_read_the_machine(stage, options, session.wasi)
    if options.check_determinism:
        with stage("determinism check"):
            found = _component_differences(context, session, runtime.initialize(context, compiled))
            _check_determinism(found, options)
    with stage("snapshot"):
        snapshots = _component_snapshots(context, session)
        # Each step lets go of what the next one holds: the live instance's memories are in
        # the snapshots, the snapshots' data in the output (a dense memory: 3 copies, not 6).
        del session
        out, modules = rewrite_component(context, snapshots)
        del snapshots
    with stage("check"):
        for what, module in modules.items():
            runtime.runtime.validate(
                module, f"hatch-wizer produced an invalid {what} (a bug, please report it)"
            )
        runtime.check(stand_in_component(out))
    return out


def _component_snapshots(context: ComponentContext, session: Session) -> list[Snapshot]:
    """The state of each module the component instantiates, read through its accessors; the
    copy of one module's memories goes once its snapshot holds their data."""
    from .engine.component import AccessorState
    from .module.state import take_snapshot

    snapshots = []
    for access in context.modules:
        state = AccessorState(session, access)
        state.check_table_writes()
        snapshots.append(take_snapshot(access.context, state))
    return snapshots


def _warn_if_init_read_the_machine(
    stage: Stages, options: WizenOptions, wasi: WasiHost | None
) -> None:
    """Outside reproducible mode, one line when init read the build machine's clock or
    entropy (through WASI), which its snapshot then depends on."""
    warning = wasi.calls.warning() if wasi and not options.reproducible else None
    if warning:
        stage.say(warning)


def _check_determinism(found: list[str], options: WizenOptions) -> None:
    """Fail, naming the first of the `found` differences between two init runs' states."""
    from .module.determinism import describe

    if found:
        raise InitError(
            f"init is not deterministic: two runs differ in {describe(found)}"
            + ("" if options.reproducible else f" (try {option('reproducible')})")
        )


def _component_differences(context: ComponentContext, first: Session, second: Session) -> list[str]:
    """What differs between two init runs of a component, module by module."""
    from .engine.component import AccessorState
    from .module.determinism import differences

    return [
        f"{found} of {access.where}"
        for access in context.modules
        for found in differences(
            access.context, AccessorState(first, access), AccessorState(second, access)
        )
    ]


class _StageReporter:
    """Reports each stage and its duration to the caller's callback."""

    def __init__(self, report: Report | None, names: Callable[[str], str] = flag) -> None:
        self.report = report
        self.names = names

    def say(self, text: str) -> None:
        if self.report is not None:
            self.report(render(text, self.names))

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.say(f"{name}: {time.perf_counter() - start:.2f} s")
