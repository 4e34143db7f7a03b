"""The one line each front end (CLI, `hatch-wizer build`, the hooks) prints per module."""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..engine.precompile import Precompiled

__all__ = ["Result", "describe"]


# A NamedTuple, as the CLI's other records: a frozen dataclass costs ~0.3 ms of each run's start.
class Result(NamedTuple):
    """What one wizening did, for the one-line summary."""

    name: str
    before: int
    after: int
    seconds: float
    cached: bool = False  # an earlier run's result was reused; init did not run
    precompiled: "Precompiled | None" = None  # its .cwasm, when asked for


def describe(result: Result) -> str:
    """`pkg/mod.wasm: 21.4 KiB → 160.2 KiB in 0.84 s`, or `... → 160.2 KiB (cached)`; for a
    precompiled module then `, .cwasm 3214.5 KiB for wasmtime 51 on x86_64-unknown-linux-gnu
    (x86-64-v2)`"""
    took = "(cached)" if result.cached else f"in {result.seconds:.2f} s"
    line = f"{result.name}: {_size(result.before)} \u2192 {_size(result.after)} {took}"
    if result.precompiled is None:
        return line
    cwasm = result.precompiled
    needs = f"for wasmtime {cwasm.wasmtime} on {cwasm.target} ({cwasm.cpu})"
    return f"{line}, .cwasm {_size(len(cwasm.data))} {needs}"


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"
