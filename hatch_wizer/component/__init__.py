"""Pre-initialize WebAssembly components: every core instance's state, written back."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from ..options import WizenOptions

__all__ = ["Stages", "wizen_component"]


class Stages(Protocol):
    """How the pipeline reports progress: `say(text)`, and `with stages(name):` for timing."""

    def say(self, text: str) -> None: ...

    def __call__(self, name: str) -> AbstractContextManager[None]: ...


def wizen_component(wasm: bytes, options: WizenOptions, stage: Stages) -> bytes:
    """Run the component's init call and return a component that starts in the result."""
    from ..engine.component import AccessorState, ComponentRuntime
    from ..engine.wave import format_value
    from ..module.state import take_snapshot
    from .check import stand_in_component
    from .instrument import instrument_component
    from .rewrite import rewrite_component

    runtime = ComponentRuntime(options)
    with stage("validate"):
        context, instrumented = instrument_component(bytes(wasm), options)
    with stage("compile"):
        compiled = runtime.compile(instrumented)
    with stage("init"):
        session = runtime.initialize(context, compiled)
    if session.results is not None:
        stage.say(f"init returned {format_value(session.results)}")
    with stage("snapshot"):
        snapshots = []
        for access in context.modules:
            state = AccessorState(session, access)
            state.check_table_writes()
            snapshots.append(take_snapshot(access.context, state))
        out, modules = rewrite_component(context, snapshots)
    with stage("check"):
        for what, module in modules.items():
            runtime.runtime.validate(
                module, f"hatch-wizer produced an invalid {what} (a bug, please report it)"
            )
        runtime.check(stand_in_component(out))
    return out
