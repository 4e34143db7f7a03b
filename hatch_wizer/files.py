"""File helpers for the front ends and the result cache: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

__all__ = ["file_hash", "tree_hash", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temp file beside `path`, then rename it: a failure or an interruption
    never leaves a plausible-looking output. The file gets the mode a plain write would give:
    an existing file's, else 0666 less the umask (mkstemp's 0600 would surprise, say, a web
    server serving the output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
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


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new file named like `.NAME.RANDOM.tmp` next to `path`, created with mode 0666 so
    that the umask applies."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, or "missing" (the engine reports the real error)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def tree_hash(root: Path) -> str:
    """sha256 over a directory's relative file names and contents."""
    h = hashlib.sha256()
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(file_hash(path).encode())
    return h.hexdigest()
