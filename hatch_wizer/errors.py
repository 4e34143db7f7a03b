"""The one exception family of hatch-wizer: every failure a user can cause is a WizerError."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InitError",
    "InvalidModule",
    "UnsupportedModule",
    "UsageError",
    "WizerError",
]


class WizerError(Exception):
    """Base class; `str()` is a one-line message fit for a terminal."""


class InvalidModule(WizerError):
    """The input is not a valid WebAssembly module (bad bytes, failed validation)."""


class UnsupportedModule(WizerError):
    """The module is valid but uses something a snapshot cannot represent."""


class InitError(WizerError):
    """Running the module's initialization failed (trap, missing export, forbidden effect)."""


class ConfigError(WizerError):
    """Bad configuration: a CLI flag, a `[tool.wizer]` key or a hook option."""


class UsageError(ConfigError):
    """Bad command-line syntax (exit code 2)."""
