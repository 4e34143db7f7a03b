"""The `hatch-wizer` command: Wizer's flags, for Makefiles and shells."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from .. import __version__
from ..core import wait_for_cache_writers
from ..engine.interrupts import end_process_with_run
from ..errors import InvalidModule, UsageError, WizerError
from ..files import CWASM_SUFFIX, read_module, same_file, write_output
from ..options import WizenOptions
from .flags import add_option_flags, apply, normalize_bool_flags
from .summary import Result, describe

__all__ = ["entrypoint", "load_module_source", "main"]

PROG = "hatch-wizer"
EPILOG = """\
exit status: 0 success, 1 the module could not be wizened or written, 2 bad usage,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
`hatch-wizer build --help` wizens the modules listed in pyproject.toml's [tool.wizer]."""
NOT_A_MODULE = "not a WebAssembly module (no \\0asm header) and not WAT text"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter at the terminal's width, found as `shutil.get_terminal_size` finds
    it: argparse makes one per flag, and its own would import shutil, and with it zlib, bz2
    and lzma (~1.5 ms of every run)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.RawDescriptionHelpFormatter(prog, width=columns - 2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=f"{PROG} [OPTIONS] [INPUT]",
        description="Pre-initialize a WebAssembly module: run its init function and write the "
        "resulting state into a new module.",
        epilog=EPILOG,
        formatter_class=_help_formatter,
    )
    p.add_argument(
        "input", nargs="?", default="-", help="module (.wasm or .wat); stdin if omitted or -"
    )
    p.add_argument(
        "-o", "--output", default="-", help="output file, device or fifo; stdout if omitted or -"
    )
    add_option_flags(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def options_from_args(args: argparse.Namespace) -> WizenOptions:
    return apply(WizenOptions(), getattr(args, "changes", None) or [])


def load_module_source(data: bytes) -> bytes:
    """Binary modules as they are; anything else is compiled as WAT text."""
    if data[:4] == b"\0asm":
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidModule(NOT_A_MODULE) from None
    if not text.lstrip().startswith(("(", ";;")):
        raise InvalidModule(NOT_A_MODULE)
    from ..engine.wat import wat_to_wasm  # lazy: wasmtime loads only for WAT

    return wat_to_wasm(text)


def _check_start(data: bytes) -> None:
    """Refuse at once what starts like neither a binary module nor WAT text, though it may
    never end (`/dev/zero`); `load_module_source` checks the whole of what passes."""
    if data[:4] == b"\0asm":
        return
    start = data.lstrip(b" \t\r\n")
    if start and not start.startswith((b"(", b";;")):
        raise InvalidModule(NOT_A_MODULE)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[int]:
    """While the module goes to stdout, send anything else written there (guest output) to
    stderr; yields a descriptor of the real stdout."""
    _flush(sys.stdout)
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        _flush(sys.stdout)
        os.dup2(saved, 1)
        os.close(saved)


def _closed_std_fds() -> set[int]:
    """Which of stdin, stdout and stderr were closed (`>&-`); each then gets /dev/null, so that
    no file this run opens takes its number and receives what is meant for that stream."""
    closed = set()
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:  # else print(file=sys.stderr) writes to stdout
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
    return closed


def _is_stdout(output: str) -> bool:
    """`-` or a name of this process's stdout stream (`/dev/stdout` onto a pipe, say): the
    module goes there, and guest output to stderr."""
    if output == "-":
        return True
    try:
        named, ours = Path(output).stat(), os.fstat(1)
    except OSError:
        return False
    return os.path.samestat(named, ours) and not stat.S_ISREG(ours.st_mode)


def _say(line: str) -> None:
    """A line on stderr, if it can take one: a closed or broken stderr fails no run."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _flush(stream: TextIO | None) -> None:
    with contextlib.suppress(OSError, ValueError):
        if stream is not None:
            stream.flush()


def run(argv: Sequence[str], closed: Collection[int] = ()) -> int:
    """One module, from the command line; `closed` holds the standard streams that were
    closed when the process started."""
    from ..core import REUSED, precompile, wizen

    args = _parser().parse_args(normalize_bool_flags(argv))
    options = options_from_args(args)
    name = "stdin" if args.input == "-" else args.input
    to_stdout = _is_stdout(args.output)
    reused = False

    def report(line: str) -> None:
        nonlocal reused
        reused = reused or line.startswith(REUSED)
        if not args.quiet:
            _say(f"{PROG}: {name}: {line}")

    if args.input != "-" and not to_stdout and same_file(Path(args.input), Path(args.output)):
        raise UsageError(f"the output {args.output} would overwrite the input; inputs are kept")
    output = Path(args.output)
    if options.precompile and (to_stdout or not output.name):  # `-o .`: no name to take a suffix
        raise UsageError("--precompile needs -o FILE: the .cwasm is written beside it")
    cwasm = output.with_suffix(CWASM_SUFFIX) if output.name else output
    if options.precompile and args.input != "-" and same_file(Path(args.input), cwasm):
        raise UsageError(f"the output {cwasm} would overwrite the input; inputs are kept")
    if to_stdout and 1 in closed:
        raise WizerError("stdout is closed: nowhere to write the module (give -o FILE)")
    if args.input == "-" and (0 in closed or sys.stdin.isatty()):
        raise UsageError("no input: give a module file, or pipe one into stdin")
    data = _read_input(args.input, name)
    started = time.perf_counter()
    try:
        wasm = load_module_source(data)
        precompiled = None
        if to_stdout:
            with _stdout_to_stderr() as stdout, _collector_paused():
                out = wizen(wasm, options, report=report)
                with _writing("the module to stdout"), open(stdout, "wb", closefd=False) as f:
                    f.write(out)
        else:
            with _collector_paused():
                out = wizen(wasm, options, report=report)
            precompiled = precompile(out, options, report=report) if options.precompile else None
            source = None if args.input == "-" else Path(args.input)
            with _writing(f"the module to {args.output}"):
                write_output(output, out, source)
            if precompiled:
                with _writing(cwasm):
                    write_output(cwasm, precompiled.data, source)
    except _WriteFailed:
        raise
    except WizerError as e:
        raise e.about(name) from None
    except OSError as e:  # from the run, not a write: say which file
        where = f" ({e.filename})" if e.filename else ""
        raise WizerError(f"{name}: {e.strerror or e}{where}") from None
    elapsed = time.perf_counter() - started
    if not args.quiet:
        result = Result(name, len(data), len(out), elapsed, reused, precompiled)
        _say(f"{PROG}: {describe(result)}")
    return 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cycle collection while one module is wizened: the snapshot makes ~100k small objects
    (uap), whose collections would each walk what the imports made (uap: ~20 ms of ~400). The
    few cycles a run leaves wait for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _WriteFailed(WizerError):
    """A write of an output failed; the message names the output, not the input."""


@contextlib.contextmanager
def _writing(what: object) -> Iterator[None]:
    """An OSError while writing `what` as one line that names it."""
    try:
        yield
    except OSError as e:
        raise _WriteFailed(f"cannot write {what}: {e.strerror or e}") from None


def _read_input(path: str, name: str) -> bytes:
    try:
        if path == "-":
            return read_module(sys.stdin.buffer, _check_start)
        with open(path, "rb") as f:
            return read_module(f, _check_start)
    except WizerError as e:
        raise e.about(name) from None
    except OSError as e:
        raise WizerError(f"cannot read {name}: {e.strerror}") from None


class _Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C, so temp files go and no partial output stays behind."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise _Terminated


def _stopped(stop: KeyboardInterrupt) -> int:
    """Exit status of a run stopped by a signal: 128 + its number, as the shell reports a
    process that the signal ended."""
    terminated = isinstance(stop, _Terminated)
    _say(f"{PROG}: {'terminated' if terminated else 'interrupted'}")
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def main(argv: Sequence[str] | None = None, closed: Collection[int] = ()) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is not threading.main_thread():
        return _main(argv, closed)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv, closed)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str], closed: Collection[int]) -> int:
    try:
        if argv[:1] == ["build"]:
            from .project import main_build  # the build machinery: not for one module

            return main_build(argv[1:])
        return run(argv, closed)
    except UsageError as e:
        _say(f"{PROG}: error: {e}")
        return 2
    except WizerError as e:
        _say(f"{PROG}: error: {e}")
        return 1
    except KeyboardInterrupt as e:
        return _stopped(e)


def entrypoint() -> NoReturn:
    # This process exits when the run is over, which stops an init given up on: its code needs
    # no epoch checks, and big modules no child process.
    end_process_with_run()
    # SIGTERM stops the run like SIGINT up to the exit, not only while main() runs.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = main(closed=_closed_std_fds())
        # Once the output is written, let the result cache's writers finish, then skip the
        # interpreter's teardown: freeing the engine, compiled code and instance memory is
        # work nobody waits for (tens of milliseconds on large modules), as is a rival compile.
        wait_for_cache_writers()
    except KeyboardInterrupt as e:
        status = _stopped(e)
    _flush(sys.stdout)
    _flush(sys.stderr)
    os._exit(status)
