"""Wizening in a child process, so that an init whose code cannot be interrupted can be stopped.

A process that stays after its wizening (a build hook, a program calling `wizen()`) wizens
modules past STOPPABLE_MAX_BYTES that Cranelift compiles in a child, whose code has no epoch
checks (see `runtime`): such an init cannot be interrupted, only left spinning on its thread,
and it ends with the child: at its time limit (the child's own `run_init` gives up,
reports the error and exits), on Ctrl-C or SIGTERM (the parent kills the child as it unwinds),
when the build's `InitGroup` stops, and when the parent dies (the child's request pipe
closes). The CLI needs no child: it ends with its run itself (`interrupts.end_process_with_run`).

The child is a fresh interpreter (never a fork of one that may run wasmtime threads) started
with the parent's `sys.path`, environment and working directory; it inherits the standard
streams, so the guest reads and writes them as it would in the parent. It sends back each stage
line, then the output bytes or the WizerError that ended the run. Waiting for a child needs no
wasmtime in the parent; only deciding whether Winch could compile the module does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import IO, Any, Final, NoReturn

from ..errors import InitError, WizerError
from ..options import WizenOptions
from .interrupts import INIT_GROUP, end_process_with_run, process_ends_with_run

# `pickle` and `subprocess` are imported where a child starts: a small module never needs them,
# and they are a tenth of the CLI's import time above wasmtime's (benches/cli_overhead.py).

__all__ = ["STOPPABLE_MAX_BYTES", "Say", "in_child", "serve", "wizen_in_child"]

# Modules (and components) up to this size are wizened in the process, compiled with epoch
# checks so that a time limit, Ctrl-C or a failing build can stop their init. Past it the checks
# cost more than they are worth: CPython's compile takes 4.7 s and 125 MiB more with them
# (40.3 vs 45.0 s, 2,133 vs 2,258 MiB), and code with them runs loops 15-20 % slower (uap's
# init: 329 vs 273 ms). Such modules are wizened in a child instead, whose start (~0.1 s) is
# small next to their compile. Big modules that Winch compiles stay: its code checks the epoch.
STOPPABLE_MAX_BYTES: Final = 1 << 20

Say = Callable[[str], None]
# The work a child does: `work(*args, say=...)` returns the output bytes.
Work = Callable[..., bytes]

# What the child runs: it reads the parent's `sys.path` first, so that it imports this package
# (and wasmtime) from where the parent did, then serves the request.
_BOOT: Final = (
    "import os, pickle, sys; requests = os.fdopen(int(sys.argv[1]), 'rb'); "
    "sys.path[:] = pickle.load(requests); "
    "from hatch_wizer.engine.child import serve; serve(requests, int(sys.argv[2]))"
)


def in_child(wasm: bytes, options: WizenOptions) -> bool:
    """Whether `wasm` is wizened in a child: this process outlives the run, `wasm` is big,
    WebAssembly (other bytes fail at once, in the process), Cranelift would compile it (Winch's
    code always checks the epoch, at little cost), and this platform can hand a child its pipes
    (POSIX) and start the same interpreter."""
    from ..wasm.parse import MAGIC, is_component

    if process_ends_with_run() or len(wasm) <= STOPPABLE_MAX_BYTES or wasm[:4] != MAGIC:
        return False
    if os.name != "posix" or not sys.executable:
        return False
    from .compile import winch_available, winch_validates  # wasmtime: only for big modules

    winch = options.compiler != "cranelift" and winch_available() and not is_component(wasm)
    return not (winch and winch_validates(options.features, wasm))


def wizen_in_child(work: Work, args: tuple[Any, ...], say: Say) -> bytes:
    """`work(*args, say=say)` in a child process, waited for until it ends, Ctrl-C arrives or
    the build's `InitGroup` stops it. `work` must be a module-level function (it is pickled
    by name), its arguments plain values."""
    import subprocess

    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(request_read), str(reply_write)],
            pass_fds=(request_read, reply_write),
        )
    finally:
        os.close(request_read)
        os.close(reply_write)
    group = INIT_GROUP.get()
    # Kept open until the end: the child ends itself when this pipe closes.
    with os.fdopen(request_write, "wb") as requests, os.fdopen(reply_read, "rb") as replies:
        try:
            with group.member(child.kill) if group else nullcontext():
                _send(requests, sys.path)
                _send(requests, (work, args))
                reply = _answer(replies, say)
        finally:
            child.kill()  # gone already unless this run was given up on
            child.wait()
    if reply is None:
        if group is not None and child.returncode == -signal.SIGKILL:
            raise KeyboardInterrupt  # the group stopped this run
        raise InitError(f"the process that ran init {_ended(child.returncode)}")
    return reply


def _send(stream: IO[bytes], message: object) -> None:
    import pickle

    try:
        pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
        stream.flush()
    except BrokenPipeError:
        pass  # the child ended early; its replies say how


def _answer(replies: IO[bytes], say: Say) -> bytes | None:
    """The child's output bytes, after passing on its stage lines; None if it sent none."""
    import pickle

    while True:
        try:
            kind, value = pickle.load(replies)
        except (EOFError, pickle.UnpicklingError):  # ended, maybe mid-message
            return None
        if kind == "say":
            say(value)
        elif kind == "error":
            raise value
        else:
            return value  # type: ignore[no-any-return]


def _ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal past SIGRTMIN has no name of its own
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if returncode == -signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"ended with exit status {returncode} and no result"


def serve(requests: IO[bytes], reply_fd: int) -> NoReturn:
    """The child's side: run the parent's request, send its lines and result, and exit."""
    import pickle
    import traceback

    end_process_with_run()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops this process itself
    work, args = pickle.load(requests)
    threading.Thread(target=_exit_with_parent, args=(requests,), daemon=True).start()
    replies = os.fdopen(reply_fd, "wb")
    lock = threading.Lock()

    def send(message: tuple[str, object]) -> None:
        with lock:
            pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()

    status = 0
    try:
        send(("output", work(*args, say=lambda text: send(("say", text)))))
    except WizerError as e:
        send(("error", e))
    except BaseException:
        traceback.print_exc()  # a bug: shown, and reported by the parent as an early end
        status = 1
    # Exit at once: an init given up on may still spin on its thread.
    sys.stderr.flush()
    os._exit(status)


def _exit_with_parent(requests: IO[bytes]) -> None:
    """End the child when the parent closes the request pipe or dies without a word."""
    requests.read()
    os._exit(1)
