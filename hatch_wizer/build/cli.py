"""The `hatch-wizer` command: Wizer's flags, for Makefiles and shells."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar

from .. import __version__
from ..cache import ResultCache
from ..errors import InvalidModule, UsageError, WizerError
from ..files import read_module, same_file, write_output
from ..options import (
    DEFAULT_INIT_FUNC,
    MAX_DATA_SEGMENTS,
    Features,
    Preload,
    Preopen,
    WizenOptions,
    init_timeout_in_range,
    segment_count_in_range,
)
from .summary import Result, describe

__all__ = ["entrypoint", "load_module_source", "main"]

PROG = "hatch-wizer"
_N = TypeVar("_N", int, float)
BOOL_FLAGS = (
    "--keep-init-func",
    "--inherit-stdio",
    "--inherit-env",
    *("--wasm-" + f.name.replace("_", "-") for f in fields(Features)),
)
EPILOG = """\
exit status: 0 success, 1 the module could not be wizened or written, 2 bad usage,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
`hatch-wizer build --help` wizens the modules listed in pyproject.toml's [tool.wizer]."""
NOT_A_MODULE = "not a WebAssembly module (no \\0asm header) and not WAT text"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not `{text}`")


def _init_timeout(text: str) -> float | None:
    seconds = _number(float, text, "a number of seconds")
    if seconds == 0:
        return None
    if not init_timeout_in_range(seconds):
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, or 0 for no limit, not `{text}`"
        )
    return seconds


def _segment_count(text: str) -> int:
    count = _number(int, text, "a whole number")
    if not segment_count_in_range(count):
        raise argparse.ArgumentTypeError(
            f"expected 1 to {MAX_DATA_SEGMENTS} (the engines' limit), not `{text}`"
        )
    return count


def _number(kind: Callable[[str], _N], text: str, what: str) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not `{text}`") from None


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Pre-initialize a WebAssembly module: run its init function and write the "
        "resulting state into a new module.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input", nargs="?", default="-", help="module (.wasm or .wat); stdin if omitted or -"
    )
    p.add_argument(
        "-o", "--output", default="-", help="output file, device or fifo; stdout if omitted or -"
    )
    p.add_argument(
        "-f",
        "--init-func",
        default=DEFAULT_INIT_FUNC,
        metavar="NAME",
        help=f"the init export (default `{DEFAULT_INIT_FUNC}`); for a component also a call "
        "with WAVE arguments, e.g. 'add-string(\"hello\")' or 'ns:pkg/iface.func(1)'",
    )
    p.add_argument(
        "-r",
        "--rename-func",
        "--func-rename",
        action="append",
        default=[],
        metavar="DST=SRC",
        help="export SRC as DST, replacing any DST export",
    )
    p.add_argument(
        "--keep-init-func",
        type=_bool,
        default=False,
        metavar="BOOL",
        help="keep the init export in the output",
    )
    p.add_argument(
        "--allow-wasi",
        action="store_true",
        help="link WASI during init (preview 1 for modules, preview 2 for components)",
    )
    p.add_argument(
        "--inherit-stdio",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="give init this process's stdin/stdout/stderr (default true)",
    )
    p.add_argument(
        "--inherit-env",
        type=_bool,
        default=False,
        metavar="BOOL",
        help="give init this process's environment (default false)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for init",
    )
    p.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="DIR",
        help="preopen DIR (read-only) under the same name",
    )
    p.add_argument(
        "--mapdir",
        action="append",
        default=[],
        metavar="GUEST::HOST",
        help="preopen host dir HOST (read-only) as GUEST",
    )
    p.add_argument(
        "--dir-rw", action="append", default=[], metavar="DIR", help="like --dir, writable"
    )
    p.add_argument(
        "--mapdir-rw",
        action="append",
        default=[],
        metavar="GUEST::HOST",
        help="like --mapdir, writable",
    )
    p.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="instantiate FILE (.wasm or .wat) first; its exports satisfy imports from NAME",
    )
    for f in fields(Features):
        p.add_argument(
            "--wasm-" + f.name.replace("_", "-"),
            dest="feature_" + f.name,
            type=_bool,
            default=f.default,
            metavar="BOOL",
            help=argparse.SUPPRESS,
        )
    p.add_argument(
        "--init-timeout",
        type=_init_timeout,
        default=600.0,
        metavar="SECONDS",
        help="stop init after this long (default 600; 0 for no limit)",
    )
    p.add_argument(
        "--reproducible",
        action="store_true",
        help="deterministic init: fixed clocks (SOURCE_DATE_EPOCH), seeded random_get, no stdin",
    )
    p.add_argument(
        "--check-determinism",
        action="store_true",
        help="run init twice and fail, naming what differs, unless both runs agree",
    )
    p.add_argument(
        "--max-data-segments",
        type=_segment_count,
        default=MAX_DATA_SEGMENTS,
        metavar="N",
        help=f"data segments the output may hold in all (default and most {MAX_DATA_SEGMENTS})",
    )
    p.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="run init even if an earlier result could be reused; no compilation cache",
    )
    p.add_argument(
        "--compiler",
        choices=("auto", "cranelift", "winch"),
        default="auto",
        help="compiler for the init run (default auto: Winch where it can, else unoptimized "
        "Cranelift; a long init of a small module runs again on optimized Cranelift code once "
        "that is ready; cranelift: optimized)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _normalize_bool_flags(argv: Sequence[str]) -> list[str]:
    """Accept Wizer's `--flag`, `--flag=BOOL` and `--flag BOOL` spellings of boolean flags."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in BOOL_FLAGS:
            following = argv[i + 1].lower() if i + 1 < len(argv) else ""
            if following in ("true", "false"):
                out.append(f"{arg}={following}")
                i += 2
                continue
            out.append(f"{arg}=true")
        else:
            out.append(arg)
        i += 1
    return out


def _pair(text: str, sep: str, flag: str, form: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not found or not left or not right or (sep == "::" and "::" in right):
        raise UsageError(f"{flag} `{text}` must have the form {form}")
    return left, right


def options_from_args(args: argparse.Namespace) -> WizenOptions:
    renames = tuple(_pair(r, "=", "--rename-func", "DST=SRC") for r in args.rename_func)
    preopens = [Preopen(d, Path(d)) for d in args.dir]
    preopens += [Preopen(d, Path(d), writable=True) for d in args.dir_rw]
    for spec, writable in [(m, False) for m in args.mapdir] + [(m, True) for m in args.mapdir_rw]:
        guest, host = _pair(spec, "::", "--mapdir", "GUEST::HOST")
        preopens.append(Preopen(guest, Path(host), writable))
    preloads = []
    for spec in args.preload:
        name, path = _pair(spec, "=", "--preload", "NAME=FILE")
        preloads.append(Preload(name, Path(path)))
    env = tuple(_pair(e, "=", "--env", "NAME=VALUE") for e in args.env)
    features = Features(**{f.name: getattr(args, "feature_" + f.name) for f in fields(Features)})
    return WizenOptions(
        init_func=args.init_func,
        renames=renames,
        keep_init_func=args.keep_init_func,
        allow_wasi=args.allow_wasi,
        inherit_stdio=args.inherit_stdio,
        inherit_env=args.inherit_env,
        env=env,
        preopens=tuple(preopens),
        preloads=tuple(preloads),
        features=features,
        max_data_segments=args.max_data_segments,
        init_timeout=args.init_timeout,
        reproducible=args.reproducible,
        check_determinism=args.check_determinism,
        cache=args.cache,
        compiler=args.compiler,
    )


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
    from ..core import REUSED, wizen

    args = _parser().parse_args(_normalize_bool_flags(argv))
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
    if to_stdout and 1 in closed:
        raise WizerError("stdout is closed: nowhere to write the module (give -o FILE)")
    if args.input == "-" and (0 in closed or sys.stdin.isatty()):
        raise UsageError("no input: give a module file, or pipe one into stdin")
    data = _read_input(args.input, name)
    started = time.perf_counter()
    try:
        wasm = load_module_source(data)
        if to_stdout:
            with _stdout_to_stderr() as stdout:
                out = wizen(wasm, options, report=report)
                with open(stdout, "wb", closefd=False) as f:
                    f.write(out)
        else:
            out = wizen(wasm, options, report=report)
            write_output(Path(args.output), out, None if args.input == "-" else Path(args.input))
    except WizerError as e:
        raise e.about(name) from None
    except OSError as e:
        where = "stdout" if to_stdout else args.output
        raise WizerError(f"cannot write the module to {where}: {e.strerror}") from None
    elapsed = time.perf_counter() - started
    if not args.quiet:
        result = Result(name, len(data), len(out), elapsed, cached=reused)
        _say(f"{PROG}: {describe(result)}")
    return 0


def _read_input(path: str, name: str) -> bytes:
    try:
        if path == "-":
            return read_module(sys.stdin.buffer, _check_start)
        with open(path, "rb") as f:
            return read_module(f, _check_start)
    except WizerError as e:
        raise type(e)(f"{name}: {e}") from None
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
    # SIGTERM stops the run like SIGINT up to the exit, not only while main() runs.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = main(closed=_closed_std_fds())
        # Once the output is written, let the result cache's writers finish, then skip the
        # interpreter's teardown: freeing the engine, compiled code and instance memory is
        # work nobody waits for (tens of milliseconds on large modules), as is a rival compile.
        ResultCache.wait_for_writers()
    except KeyboardInterrupt as e:
        status = _stopped(e)
    _flush(sys.stdout)
    _flush(sys.stderr)
    os._exit(status)
