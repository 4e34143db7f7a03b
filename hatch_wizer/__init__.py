"""Pre-initialize WebAssembly modules in Python, the way Wizer does."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import WizerError
from .options import Features, Preload, Preopen, WizenOptions

__all__ = [
    "Features",
    "Preload",
    "Preopen",
    "WizenOptions",
    "WizerError",
    "__version__",
    "instrument",
    "snapshot",
    "wizen",
]


def __getattr__(name: str) -> object:
    # The engine pulls in wasmtime; keep `import hatch_wizer` cheap for build hooks.
    if name in ("wizen", "instrument", "snapshot"):
        from . import core

        return getattr(core, name)
    raise AttributeError(name)
