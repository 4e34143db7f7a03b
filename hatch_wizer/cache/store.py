"""Results on disk, verified before reuse: a damaged or planted entry is never shipped.

Each entry is one file, `results/<key>.wasm`, that begins with its index: one JSON line with
the key it was made for, the output's size and its sha256; the output follows. An entry is
reused only if it is a regular file (a link is not followed), owned by this user, not writable
by others, and its index matches both its key and its bytes. Anything else is deleted, and the
run goes on as a miss with one warning. Directories are created 0700 and entries 0600; a cache
directory that belongs to someone else or that others may write is not used at all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ..engine.inputs import init_may_read_stdin
from ..errors import option
from ..files import create_beside
from ..options import WizenOptions

__all__ = ["SIZE_LIMIT", "ResultCache"]

# Results past this total are dropped, least recently used first (CPython's is 104 MB).
SIZE_LIMIT: Final = 2 * 2**30
# The first field of an entry's index, and the longest index line read.
_FORMAT: Final = "hatch-wizer result"
_MAX_INDEX: Final = 512
# Entries open without following a link, or waiting for a writer should one be a fifo.
_OPEN_ENTRY: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
# Permission bits that let others change a file or replace a directory's entries.
_OTHERS_WRITE: Final = stat.S_IWGRP | stat.S_IWOTH

Say = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


class _BadEntry(Exception):
    """An entry that must not be reused; the message says why."""


class ResultCache:
    """Outputs by `result_key`, in `$HATCH_WIZER_CACHE_DIR` or `$XDG_CACHE_HOME/hatch-wizer`.

    The cache is an optimisation only: a failure to read or write it is a miss, never an error.
    `say` gets the warnings (a bad entry, a directory not private to the user).
    """

    # A plain class, not a dataclass: every cached CLI run loads this module, and `dataclasses`
    # (with inspect, ast and dis) is ~5 ms of its start (see options.py).
    def __init__(self, root: Path, say: Say = _quiet) -> None:
        self.root = root
        self.say = say

    @classmethod
    def for_options(cls, options: WizenOptions, say: Say = _quiet) -> ResultCache | None:
        """The user's cache, or None when the run must happen: caching is off, the
        determinism check is wanted, init may write files (a side effect to keep) or read
        data from stdin (which no key holds), or the cache directory is not private."""
        if not options.cache or options.check_determinism:
            return None
        if any(p.writable for p in options.preopens):
            return None
        if init_may_read_stdin(options):
            say(
                "result cache not used: init could read data from stdin (stdin from "
                f"/dev/null, or {option('inherit_stdio')} off, lets it be used)"
            )
            return None
        root = _default_root()
        if root is None:  # no home directory to hold it: a miss
            return None
        try:
            refusal = _private_dirs(root)
        except OSError:  # no usable directory: a miss
            return None
        if refusal:
            say(f"warning: result cache not used: {refusal}; set HATCH_WIZER_CACHE_DIR elsewhere")
            return None
        return cls(root, say)

    @staticmethod
    def wait_for_writers(key: str = "") -> None:
        """Let the entries being written (only `key`'s, if given) reach the disk."""
        for thread in threading.enumerate():
            if thread.name.startswith(_writer_name(key)):
                thread.join()

    def load(self, key: str) -> bytes | None:
        """The output stored for `key`, verified; None on a miss or a bad entry (deleted)."""
        self.wait_for_writers(key)  # this very entry may be being written
        path = self._path(key)
        try:
            return _read_entry(path, key)
        except _BadEntry as e:
            with contextlib.suppress(OSError):
                path.unlink()
            self.say(f"warning: deleted a bad result cache entry {path} ({e}); running init")
        except OSError:
            pass
        return None

    def store(self, key: str, data: bytes) -> None:
        """Write the entry on a thread of its own: the caller writes its output meanwhile
        (file writes release the GIL), and the interpreter waits for it before exiting."""
        threading.Thread(target=self._write, args=(key, data), name=_writer_name(key)).start()

    def _write(self, key: str, data: bytes) -> None:
        with contextlib.suppress(OSError):
            _write_private(self._path(key), _index_line(key, data), data)
            self._evict()

    def _path(self, key: str) -> Path:
        return self.root / "results" / f"{key}.wasm"

    def _evict(self) -> None:
        entries = [(p.lstat(), p) for p in (self.root / "results").glob("*.wasm")]
        total = sum(st.st_size for st, _ in entries)
        for st, path in sorted(entries, key=lambda e: e[0].st_mtime_ns):
            if total <= SIZE_LIMIT:
                break
            path.unlink(missing_ok=True)
            total -= st.st_size


def _index_line(key: str, data: bytes) -> bytes:
    index = {"format": _FORMAT, "key": key, "size": len(data)}
    index["sha256"] = hashlib.sha256(data).hexdigest()
    return json.dumps(index, sort_keys=True).encode() + b"\n"


def _read_entry(path: Path, key: str) -> bytes | None:
    """The verified output in the entry at `path`; raises _BadEntry for one not to reuse."""
    try:
        fd = os.open(path, _OPEN_ENTRY)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _BadEntry("a symlink") from None
        raise
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _BadEntry("not a regular file")
        if st.st_uid != os.geteuid():
            raise _BadEntry(f"owned by uid {st.st_uid}")
        if st.st_mode & _OTHERS_WRITE:
            raise _BadEntry("writable by other users")
        line = f.readline(_MAX_INDEX)
        size, digest = _parse_index(line, key)
        if st.st_size != len(line) + size:
            raise _BadEntry(f"{st.st_size - len(line)} bytes where its index says {size}")
        data = f.read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise _BadEntry("its bytes do not match the digest in its index")
        _touch(fd)  # recently used: evicted last
    return data


def _parse_index(line: bytes, key: str) -> tuple[int, str]:
    """(size, sha256) from an entry's index line made for `key`."""
    try:
        index = json.loads(line)
        form, made_for, size, digest = index["format"], index["key"], index["size"], index["sha256"]
    except (ValueError, TypeError, KeyError):
        raise _BadEntry("no valid index") from None
    if form != _FORMAT or not isinstance(size, int) or size < 0 or not isinstance(digest, str):
        raise _BadEntry("no valid index")
    if made_for != key:
        raise _BadEntry("made for another key")
    return size, digest


def _write_private(path: Path, *parts: bytes) -> None:
    """Write `parts` to a new 0600 file beside `path`, then rename it over `path`: a reader
    sees the old entry or the whole new one."""
    fd, tmp = create_beside(path, 0o600)
    try:
        with open(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            _touch(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _private_dirs(root: Path) -> str | None:
    """Create the cache's directories (0700) if need be; why they must not be used, or None.
    A foreign or shared directory could hold entries planted under keys we will look up."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    results = root / "results"
    with contextlib.suppress(FileExistsError):
        results.mkdir(mode=0o700)
    for path, st in ((root, root.stat()), (results, results.lstat())):
        if stat.S_ISLNK(st.st_mode):
            return f"{path} is a symlink"
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
        if st.st_uid != os.geteuid():
            return f"{path} belongs to uid {st.st_uid}, not to this user"
        if st.st_mode & _OTHERS_WRITE:
            return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _touch(fd: int) -> None:
    # File systems stamp writes with a coarse clock (a few ms), too coarse to order uses by.
    now = time.time_ns()
    os.utime(fd, ns=(now, now))


def _writer_name(key: str) -> str:
    return f"hatch-wizer cache write {key}"


def _default_root() -> Path | None:
    explicit = os.environ.get("HATCH_WIZER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no $HOME, and a uid without a passwd entry (a container's)
            return None
    return Path(base) / "hatch-wizer"
