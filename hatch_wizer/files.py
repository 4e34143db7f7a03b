"""File helpers for the front ends and the result cache: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["file_hash", "tree_hash", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temp file beside `path`, then rename it: a failure or an interruption
    never leaves a plausible-looking output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
