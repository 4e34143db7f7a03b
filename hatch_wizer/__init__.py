"""Pre-initialize WebAssembly modules in Python, the way Wizer does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Cheap: the pipeline and wasmtime load on the first call of these functions.
from .core import instrument, snapshot, wizen
from .errors import WizerError
from .options import Features, Preload, Preopen, WizenOptions

if TYPE_CHECKING:
    from .module.state import InstanceState

__all__ = [
    "Features",
    "InstanceState",
    "Preload",
    "Preopen",
    "WizenOptions",
    "WizerError",
    "__version__",
    "instrument",
    "snapshot",
    "wizen",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the state module brings the pipeline, which a CLI run whose result
    # is cached never needs.
    if name == "InstanceState":
        from .module.state import InstanceState

        return InstanceState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
