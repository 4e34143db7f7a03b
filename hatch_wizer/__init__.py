"""Pre-initialize WebAssembly modules in Python, the way Wizer does."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core import instrument, precompile, snapshot, wizen
    from .engine.loader import load_module
    from .errors import WizerError
    from .module.state import InstanceState
    from .options import Features, Preload, Preopen, WizenOptions

# Each name loads its module on first use: a package that only calls `load_module` at run
# time pays for wasmtime and the loader, not for the options, the cache or the pipeline (about
# 16 ms of imports), and a CLI run whose result is cached never loads the pipeline.
_HOMES = {
    "Features": ".options",
    "InstanceState": ".module.state",
    "Preload": ".options",
    "Preopen": ".options",
    "WizenOptions": ".options",
    "WizerError": ".errors",
    "instrument": ".core",
    "load_module": ".engine.loader",
    "precompile": ".core",
    "snapshot": ".core",
    "wizen": ".core",
}

__all__ = [
    "Features",
    "InstanceState",
    "Preload",
    "Preopen",
    "WizenOptions",
    "WizerError",
    "__version__",
    "instrument",
    "load_module",
    "precompile",
    "snapshot",
    "wizen",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
