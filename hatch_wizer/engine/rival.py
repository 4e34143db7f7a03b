"""A rival compile: Cranelift compiles the module on a second core while init runs on Winch's
code, and init starts over on the faster code if it is ready first."""

from __future__ import annotations

import threading

import wasmtime

from ..options import WizenOptions
from .inputs import init_may_read_stdin
from .wasmtime_api import compile_module

__all__ = ["RIVAL_MAX_BYTES", "Overtaken", "Rival", "worth_a_rival"]


# Instrumented modules up to this size start init under Winch while Cranelift compiles them on
# a second core (a few tens of ms); an init still running then restarts on Cranelift's code,
# which runs it ~1.6x faster (uap: 0.53 -> 0.33 s). Bigger modules take seconds to compile.
RIVAL_MAX_BYTES = 1 << 20


class Overtaken(Exception):
    """The rival's code was ready first: the trial init was stopped, to be run again."""


class Rival:
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
            module = compile_module(self.engine, wasm)
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


def worth_a_rival(wasm: bytes, options: WizenOptions) -> bool:
    """Whether to race Cranelift: the module compiles in well under a second, and init can
    run twice unnoticed (it writes no files and reads no stdin a first run would consume; its
    output is captured, and shown only for the run that counts). The determinism check runs
    init twice on one module anyway."""
    if len(wasm) > RIVAL_MAX_BYTES or options.check_determinism:
        return False
    if any(p.writable for p in options.preopens):
        return False
    return not init_may_read_stdin(options)
