"""Pre-initialize WebAssembly modules in Python, the way Wizer does."""

from __future__ import annotations

__version__ = "0.1.0"

# Cheap: the pipeline and wasmtime load on the first call of these functions.
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
