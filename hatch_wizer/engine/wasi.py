"""The WASI clock and randomness calls that init sees: fixed and seeded in reproducible mode,
real but counted otherwise, so a snapshot's dependence on its build machine is visible.

wasmtime's WASI cannot inject clocks or entropy, and a host function cannot delegate to it
(WASI needs the caller's memory, which a host-side call lacks), so these calls are implemented
here in full, against the preview 1 spec:
https://github.com/WebAssembly/WASI/blob/main/legacy/preview1/docs.md
The runtime binds them over `define_wasi()`; this module never imports wasmtime.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Final

from ..errors import ConfigError, option

__all__ = [
    "DEFAULT_SEED",
    "WASI_MODULE",
    "Clock",
    "Errno",
    "HostCalls",
    "WasiHost",
    "source_date_epoch",
]

WASI_MODULE: Final = "wasi_snapshot_preview1"
# The seed of `random_get` in reproducible mode: fixed, so equal inputs give equal snapshots.
DEFAULT_SEED: Final = b"hatch-wizer reproducible random_get v1"
# Each reading of a reproducible clock advances it by this much, so that a guest waiting for
# time to pass still finishes, and readings stay strictly increasing, as real clocks are.
TICK_NS: Final = 1_000
RESOLUTION_NS: Final = 1_000


class Clock(IntEnum):
    """WASI `clockid`."""

    REALTIME = 0
    MONOTONIC = 1
    PROCESS_CPUTIME = 2
    THREAD_CPUTIME = 3


class Errno(IntEnum):
    """The WASI `errno` values these calls return."""

    SUCCESS = 0
    FAULT = 21
    INVAL = 28


_REAL_CLOCKS: Final[Mapping[Clock, Callable[[], int]]] = {
    Clock.REALTIME: time.time_ns,
    Clock.MONOTONIC: time.monotonic_ns,
    Clock.PROCESS_CPUTIME: time.process_time_ns,
    Clock.THREAD_CPUTIME: time.thread_time_ns,
}


# Plain classes, not dataclasses: every module that links WASI loads this one, and
# `dataclasses` (with inspect, ast and dis) is ~5 ms of a cold CLI run (see options.py).
class HostCalls:
    """How often init read a clock or asked for random bytes."""

    def __init__(self) -> None:
        self.clock = 0
        self.random = 0

    def warning(self) -> str | None:
        """One line for a build log when init observed the build machine, else None."""
        parts = []
        if self.clock:
            parts.append(f"read the clock {_times(self.clock)}")
        if self.random:
            parts.append(f"asked for random bytes {_times(self.random)}")
        if not parts:
            return None
        return (
            f"warning: init {' and '.join(parts)} (WASI), so the snapshot depends on when and "
            f"where it was built; {option('reproducible')} fixes the clock and seed"
        )


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


class WasiHost:
    """The state behind `clock_time_get`, `clock_res_get` and `random_get` for one init run."""

    def __init__(self, reproducible: bool, epoch_ns: int = 0, seed: bytes = DEFAULT_SEED) -> None:
        self.reproducible = reproducible
        self.epoch_ns = epoch_ns
        self.seed = seed
        self.calls = HostCalls()
        self._clocks: dict[Clock, int] = {}
        self._stream = bytearray()
        self._block = 0

    @classmethod
    def for_build(
        cls, reproducible: bool, environ: Mapping[str, str] | None = None
    ) -> WasiHost:
        """A host whose fixed wall clock honours `SOURCE_DATE_EPOCH` from `environ`."""
        epoch = source_date_epoch(os.environ if environ is None else environ) if reproducible else 0
        return cls(reproducible, epoch_ns=epoch * 1_000_000_000)

    def clock_time(self, clock_id: int) -> int | None:
        """Nanoseconds on clock `clock_id`, or None for an unknown clock."""
        try:
            clock = Clock(clock_id)
        except ValueError:
            return None
        self.calls.clock += 1
        if not self.reproducible:
            return _REAL_CLOCKS[clock]()
        start = self.epoch_ns if clock is Clock.REALTIME else 0
        now = self._clocks.get(clock, start)
        self._clocks[clock] = now + TICK_NS
        return now

    def clock_resolution(self, clock_id: int) -> int | None:
        if clock_id not in Clock._value2member_map_:
            return None
        return RESOLUTION_NS

    def random(self, length: int) -> bytes:
        """`length` random bytes: a SHA-256 counter stream of the seed when reproducible."""
        self.calls.random += 1
        if not self.reproducible:
            return os.urandom(length)
        import hashlib  # reproducible init only: it loads OpenSSL, ~2.5 ms of a cold run

        while len(self._stream) < length:
            self._stream += hashlib.sha256(self.seed + self._block.to_bytes(8, "little")).digest()
            self._block += 1
        out = bytes(self._stream[:length])
        del self._stream[:length]
        return out


def source_date_epoch(environ: Mapping[str, str]) -> int:
    """Seconds of `SOURCE_DATE_EPOCH` (https://reproducible-builds.org/specs/source-date-epoch/),
    or 0, the Unix epoch, when it is unset or empty."""
    text = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) >= (1 << 64) // 1_000_000_000:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not {text!r}"
        )
    return int(text)
