"""File helpers for the front ends: bounded reads of modules, outputs written the way `-o`
names them, and atomic writes (the result cache's hashes are in `cache/key.py`)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from .errors import InvalidModule, WizerError

__all__ = [
    "CWASM_SUFFIX",
    "MAX_MODULE_BYTES",
    "create_beside",
    "read_module",
    "same_file",
    "write_atomically",
    "write_output",
]

# A module's pre-compiled code is `NAME.cwasm`, beside its `NAME.wasm` (`load_module`).
CWASM_SUFFIX: Final = ".cwasm"
# The largest module engines agree to load: V8's and SpiderMonkey's limit, and wasmparser's
# MAX_WASM_MODULE_SIZE, which wasmtime applies to the modules inside a component (a top-level
# module has no limit of its own there: 1 GiB + 100 B validates and compiles).
MAX_MODULE_BYTES: Final = 1 << 30
# Reads of a module this long apiece: signal handlers run between two of them.
_CHUNK: Final = 4 << 20
# A link in one of these directories names an open file descriptor, not a path.
_DESCRIPTORS: Final = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")


def read_module(source: BinaryIO, check_start: Callable[[bytes], None] | None = None) -> bytes:
    """All of `source`, refused once it passes MAX_MODULE_BYTES (a regular file before it is
    read). It is read in chunks, so that SIGINT or SIGTERM stops even an endless read (of
    /dev/zero, say); `check_start(first_chunk)` can refuse what is plainly no module at once."""
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError):  # no descriptor: a stream of unknown size
        size = 0
    if size > MAX_MODULE_BYTES:
        raise _too_big()
    parts: list[bytes] = []
    total = 0
    while part := source.read(_CHUNK):
        if not parts and check_start is not None:
            check_start(part)
        parts.append(part)
        total += len(part)
        if total > MAX_MODULE_BYTES:
            raise _too_big()
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_big() -> InvalidModule:
    return InvalidModule(
        f"more than {MAX_MODULE_BYTES >> 30} GiB, the largest module WebAssembly engines load"
    )


def write_output(path: Path, data: bytes, source: Path | None = None) -> None:
    """Write an output to what `path` names, as a shell's `>` would, but never half a file.

    A device, a fifo or a socket, or a link to an open descriptor (`/dev/stdout`,
    `/proc/self/fd/N`), gets the bytes as a stream. A regular file or a new path is replaced
    atomically (`write_atomically`); a symlink to one stays, and the file it points to (or
    would point to) is replaced, unless that is the input `source`."""
    target = _replaceable(path)
    if target is None:
        with open(path, "wb") as f:
            f.write(data)
        return
    if source is not None and same_file(source, target):
        raise WizerError(f"the output {path} leads to the input {source}; inputs are kept")
    write_atomically(target, data)


def same_file(a: Path, b: Path) -> bool:
    """Whether both paths lead to one file (and it exists)."""
    try:
        return a.samefile(b)
    except OSError:
        return False  # one is missing


def _replaceable(path: Path) -> Path | None:
    """The file that an atomic write of `path` replaces, or None if `path` takes a stream."""
    try:
        mode: int | None = path.stat().st_mode
    except FileNotFoundError:
        mode = None  # a new file, perhaps at the end of a dangling link
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if mode is not None and not stat.S_ISREG(mode):
        return None
    for _ in range(40):  # as many links as Linux follows in a row
        path = Path(os.path.realpath(path.parent), path.name)
        if _DESCRIPTORS.fullmatch(path.parent.as_posix()):
            return None
        if not path.is_symlink():
            return path
        path = path.parent / path.readlink()
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temp file beside `path`, then rename it: a failure or an interruption
    never leaves a plausible-looking output. The file gets the mode a plain write would give:
    an existing file's, else 0666 less the umask (mkstemp's 0600 would surprise, say, a web
    server serving the output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_beside(path)
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.chmod(stat.S_IMODE(path.stat().st_mode))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_beside(path: Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new file named like `.NAME.RANDOM.tmp` next to `path`, open for writing, created
    with `mode` less the umask (O_EXCL: never an existing file, nor the target of a link)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:
            continue
