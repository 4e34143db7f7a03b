"""Earlier results, reused: an unchanged module with unchanged options is a file read.

The key hashes everything that decides the output and that init can see: the module, the
options, preopened directories and preloads by content (not by host path, so a moved checkout
still hits), the environment when inherited, the clock when reproducible, and this package's
own code. A result is reused as if init had run again; an init that reads the wall clock or
random bytes gets the state of the cached run (`--no-cache` wizens anew).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import __version__
from .files import file_hash, tree_hash, write_atomically
from .options import WizenOptions

__all__ = ["ResultCache", "result_key"]

# Results past this total are dropped, least recently used first (CPython's is 104 MB).
SIZE_LIMIT: Final = 2 * 2**30
# Options that change how the output is made, never what it is.
_NOT_IN_KEY: Final = (
    "cache", "compiler", "opt_level", "parallel_compilation", "init_timeout", "check_determinism",
)


def result_key(wasm: bytes, options: WizenOptions) -> str:
    """sha256 of everything that decides `wizen(wasm, options)`'s output."""
    settings = {
        k: v
        for k, v in dataclasses.asdict(options).items()
        if k not in (*_NOT_IN_KEY, "preopens", "preloads")
    }
    doc = {
        "tool": [__version__, _code_hash()],
        "input": hashlib.sha256(wasm).hexdigest(),
        "options": settings,
        "preopens": [[p.guest, p.writable, tree_hash(p.host)] for p in options.preopens],
        "preloads": [[p.name, file_hash(p.path)] for p in options.preloads],
        "environ": sorted(os.environ.items()) if options.inherit_env else None,
        # Reproducible init reads its wall clock from here.
        "epoch": os.environ.get("SOURCE_DATE_EPOCH") if options.reproducible else None,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@functools.cache
def _code_hash() -> str:
    """This package's sources: a development checkout changes without a version bump."""
    h = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ResultCache:
    """Outputs by `result_key`, in `$HATCH_WIZER_CACHE_DIR` or `$XDG_CACHE_HOME/hatch-wizer`.

    The cache is an optimisation only: a failure to read or write it is a miss, never an error.
    """

    root: Path

    @classmethod
    def for_options(cls, options: WizenOptions) -> ResultCache | None:
        """The user's cache, or None when the run must happen: caching is off, the
        determinism check is wanted, or init may write files (a side effect to keep)."""
        if not options.cache or options.check_determinism:
            return None
        if any(p.writable for p in options.preopens):
            return None
        return cls(_default_root())

    @staticmethod
    def wait_for_writers(key: str = "") -> None:
        """Let the entries being written (only `key`'s, if given) reach the disk."""
        for thread in threading.enumerate():
            if thread.name.startswith(_writer_name(key)):
                thread.join()

    def load(self, key: str) -> bytes | None:
        self.wait_for_writers(key)  # this very entry may be being written
        path = self._path(key)
        try:
            data = path.read_bytes()
            _touch(path)  # recently used: evicted last
        except OSError:
            return None
        return data

    def store(self, key: str, data: bytes) -> None:
        """Write the entry on a thread of its own: the caller writes its output meanwhile
        (file writes release the GIL), and the interpreter waits for it before exiting."""
        threading.Thread(target=self._write, args=(key, data), name=_writer_name(key)).start()

    def _write(self, key: str, data: bytes) -> None:
        with contextlib.suppress(OSError):
            write_atomically(self._path(key), data)
            _touch(self._path(key))
            self._evict()

    def _path(self, key: str) -> Path:
        return self.root / "results" / f"{key}.wasm"

    def _evict(self) -> None:
        entries = [(p.stat(), p) for p in (self.root / "results").glob("*.wasm")]
        total = sum(st.st_size for st, _ in entries)
        for st, path in sorted(entries, key=lambda e: e[0].st_mtime_ns):
            if total <= SIZE_LIMIT:
                break
            path.unlink(missing_ok=True)
            total -= st.st_size


def _touch(path: Path) -> None:
    # File systems stamp writes with a coarse clock (a few ms), too coarse to order uses by.
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _writer_name(key: str) -> str:
    return f"hatch-wizer cache write {key}"


def _default_root() -> Path:
    explicit = os.environ.get("HATCH_WIZER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hatch-wizer"
