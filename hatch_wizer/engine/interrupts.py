"""Stopping inits that run on worker threads, which signals do not reach."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["INIT_GROUP", "InitGroup", "end_process_with_run", "process_ends_with_run"]


class InitGroup:
    """Inits that stop together, such as the modules of one build wizened side by side.

    `stop()` interrupts the inits under way and refuses those yet to start: each raises
    KeyboardInterrupt, as on Ctrl-C."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._running: set[Callable[[], None]] = set()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for interrupt in running:
            interrupt()

    @contextmanager
    def member(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """While an init runs: `interrupt()` is how the group stops it."""
        with self._lock:
            if self._stopped:
                raise KeyboardInterrupt
            self._running.add(interrupt)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(interrupt)


# The group of the inits that this thread runs, if any.
INIT_GROUP: ContextVar[InitGroup | None] = ContextVar("hatch_wizer_init_group", default=None)


_ends_with_run = False  # set once, by a process that exits when its wizening is over


def end_process_with_run() -> None:
    """Declare that this process exits as soon as its wizening ends, fails or is stopped: the
    CLI, a wizening child. An init it gives up on (time limit, Ctrl-C) is then left on its
    daemon thread until the exit, which stops it: its code needs no epoch checks, which make
    loops 15-20 % slower, and no module needs a child process of its own (see `child`)."""
    global _ends_with_run
    _ends_with_run = True


def process_ends_with_run() -> bool:
    return _ends_with_run
