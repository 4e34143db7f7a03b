"""The one line each front end (CLI, `hatch-wizer build`, the hooks) prints per module."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Result", "describe"]


@dataclass(frozen=True)
class Result:
    """What one wizening did, for the one-line summary."""

    name: str
    before: int
    after: int
    seconds: float
    cached: bool = False  # an earlier run's result was reused; init did not run


def describe(result: Result) -> str:
    """`pkg/mod.wasm: 21.4 KiB → 160.2 KiB in 0.84 s`, or `... → 160.2 KiB (cached)`"""
    took = "(cached)" if result.cached else f"in {result.seconds:.2f} s"
    return f"{result.name}: {_size(result.before)} \u2192 {_size(result.after)} {took}"


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"
