"""What init reads from this process besides its preopens: stdin and the environment.

The host links these (`host.py`); the rival compile and the result cache ask whether init could
read data from stdin, which neither a second run nor a cache key can account for. This module
never imports wasmtime, so that a cached run does not load it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..options import WizenOptions

__all__ = ["gives_stdin", "init_environ", "init_may_read_stdin", "stdin_is_not_data"]


def gives_stdin(options: WizenOptions) -> bool:
    """Whether init reads this process's stdin (reproducible init reads none: input would make
    the snapshot depend on the build)."""
    return options.inherit_stdio and options.inherit_stdin and not options.reproducible


def init_may_read_stdin(options: WizenOptions) -> bool:
    """Whether init could read data from stdin: WASI is linked, stdin is given, and it may hold
    data (see `stdin_is_not_data`)."""
    return options.allow_wasi and gives_stdin(options) and not stdin_is_not_data()


def stdin_is_not_data() -> bool:
    """Whether init could read nothing from stdin that a run did not see: it is closed,
    /dev/null, or a terminal without input waiting (a read there waits for someone to type;
    builds don't). A pipe or a file may hold data."""
    try:
        mine, null = os.fstat(0), Path(os.devnull).stat()
    except OSError:
        return True
    if stat.S_ISCHR(mine.st_mode) and mine.st_rdev == null.st_rdev:
        return True
    return os.isatty(0) and not _input_waiting()


def _input_waiting() -> bool:
    """Whether a read of stdin would return at once: typed-ahead lines, or end of input."""
    import select  # only for a terminal

    try:
        return bool(select.select([0], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def init_environ(options: WizenOptions) -> list[tuple[str, str]]:
    """The environment init sees, sorted: this process's when inherited, then `options.env`."""
    env = dict(os.environ) if options.inherit_env else {}
    env.update(options.env)
    return sorted(env.items())
