"""The result cache's key: sha256 over everything that decides an output and that init sees.

Preopened directories are keyed as init sees them, by content rather than by host path (so a
moved checkout still hits): every entry's name and type, a file's size and bytes (read in
chunks), a link's target and a special file's kind. Links are never followed: init cannot
follow one out of its preopen, and one that stays inside leads to an entry the tree holds anyway.
Timestamps and inode numbers are left out (init could read them, but then a fresh checkout of
unchanged files would never hit).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .. import __version__
from ..engine.inputs import init_environ
from ..options import WizenOptions

__all__ = ["file_hash", "result_key", "tree_hash"]

# Options that change how the output is made, never what it is.
_NOT_IN_KEY: Final = (
    "cache", "compiler", "opt_level", "regalloc_algorithm", "parallel_compilation", "init_timeout",
    "check_determinism", "precompile",
)
# Files are hashed this much at a time, so a huge one costs time but no memory.
_CHUNK: Final = 1 << 20
# Files are opened without waiting for a writer, should one be (or have just become) a fifo.
_OPEN: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


def result_key(wasm: bytes, options: WizenOptions) -> str:
    """sha256 of everything that decides `wizen(wasm, options)`'s output."""
    settings = {
        k: v
        for k, v in options._asdict().items()
        if k not in (*_NOT_IN_KEY, "preopens", "preloads", "env")
    }
    settings["features"] = options.features._asdict()  # by name, not as a JSON array
    doc = {
        "tool": [__version__, _code_hash()],
        "engine": _engine_release(),
        "input": hashlib.sha256(wasm).hexdigest(),
        "options": settings,
        "preopens": [[p.guest, p.writable, tree_hash(p.host)] for p in options.preopens],
        "preloads": [[p.name, file_hash(p.path)] for p in options.preloads],
        "environ": init_environ(options),
        # Reproducible init reads its wall clock from here.
        "epoch": os.environ.get("SOURCE_DATE_EPOCH") if options.reproducible else None,
    }
    features = options.features
    if features.relaxed_simd and not features.relaxed_simd_deterministic:
        doc["host"] = _host_cpu()  # a cache shared by two machines gives each its own
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@functools.cache
def _code_hash() -> str:
    """This package's sources: a development checkout changes without a version bump."""
    h = hashlib.sha256()
    package = Path(__file__).parent.parent
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@functools.cache
def _engine_release() -> str:
    """The wasmtime that runs init: another release may run it differently (a miscompile
    fixed, other WASI behaviour or limits), so its results are not this one's. Found without
    importing wasmtime, which a reused result never loads."""
    import importlib.util

    spec = importlib.util.find_spec("wasmtime")
    if spec is None or spec.origin is None:
        return "missing"  # the run fails without it, naming the range it needs
    return _release_of(Path(spec.origin).parent)


def _release_of(package: Path) -> str:
    """The release of the wasmtime-py package at `package`: its installed metadata's name
    (`wasmtime-51.0.0.dist-info`: importlib.metadata, ~25 ms to import, would read the same),
    or for a copy without one (vendored), its files."""
    with os.scandir(package.parent) as entries:
        found = sorted(
            e.name.removesuffix(".dist-info")
            for e in entries
            if e.name.startswith("wasmtime-") and e.name.endswith(".dist-info")
        )
    return " ".join(found) or f"files {tree_hash(package)}"


@functools.cache
def _host_cpu() -> str:
    """What relaxed SIMD's answers depend on outside its deterministic profile: wasmtime lowers
    those instructions by the CPU features it detects (FMA or not), which it does not tell
    Python, so the CPU's own list stands in for them (Linux; elsewhere only the machine)."""
    import platform

    features = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            features = next((ln for ln in info if ln.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {features.strip()}"


def file_hash(path: Path | bytes, *, follow_links: bool = True) -> str:
    """sha256 of a regular file's bytes, read in chunks; "missing" if it cannot be opened (the
    engine reports the real error), "unreadable (ERRNO)" if a read fails (as init's would: a
    /sys or /proc file), "not a file" for anything else."""
    flags = _OPEN if follow_links else _OPEN | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return "missing"
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a file"
        h = hashlib.sha256()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        try:
            while n := f.readinto(buf):
                h.update(view[:n])
        except OSError as e:
            return f"unreadable ({e.errno})"
        return h.hexdigest()


def tree_hash(root: Path) -> str:
    """sha256 over a directory tree as init sees it (see the module's docstring); the hash of
    an empty tree if `root` is no directory (the engine reports that)."""
    h = hashlib.sha256()
    for record in _records(os.fsencode(root)):
        h.update(record)
    return h.hexdigest()


def _records(root: bytes) -> Iterator[bytes]:
    """One `type NUL path NUL detail NUL` record per entry under `root`, in name order, each
    directory's entries before its subdirectories'; names, link targets and details hold no
    NUL, so records cannot run together."""
    pending = [b""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(root + b"/" + rel if rel else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if rel:  # an unreadable directory: init sees the failure too
                yield b"?\0" + rel + b"\0" + str(e.errno).encode() + b"\0"
            continue
        subdirs = []
        for entry in entries:
            path = rel + b"/" + entry.name if rel else entry.name
            kind, detail = _entry(entry)
            yield kind + b"\0" + path + b"\0" + detail + b"\0"
            if kind == b"d":
                subdirs.append(path)
        pending += reversed(subdirs)  # popped in name order


def _entry(entry: os.DirEntry[bytes]) -> tuple[bytes, bytes]:
    """An entry's type and what init can read of it, without following a link."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as e:
        return b"?", str(e.errno).encode()
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return b"d", b""
    if stat.S_ISLNK(mode):
        try:
            return b"l", os.readlink(entry.path)  # noqa: PTH115 (Path would normalize it)
        except OSError as e:
            return b"?", str(e.errno).encode()
    if stat.S_ISREG(mode):
        digest = file_hash(entry.path, follow_links=False)
        return b"f", f"{st.st_size} {digest}".encode()
    # A fifo, socket or device: its kind and device number (what it would read is not a file's).
    return b"s", f"{stat.S_IFMT(mode):o} {st.st_rdev}".encode()
