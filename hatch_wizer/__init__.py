"""Pre-initialize WebAssembly modules in Python, the way Wizer does."""

from __future__ import annotations

__version__ = "0.1.0"

# `core` imports the pure modules only (wasmtime loads on the first `wizen()`), so this stays
# cheap for build hooks. Importing it first matters: the submodules `instrument` and `snapshot`
# would otherwise shadow the functions of the same names as attributes of the package.
from .core import instrument, snapshot, wizen
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
