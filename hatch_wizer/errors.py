"""The one exception family of hatch-wizer: every failure a user can cause is a WizerError.

A message refers to an option by its `WizenOptions` field, through `option()`, never by a
spelling: `str()` names it as the `hatch-wizer` flag, and a pyproject build renders it as the
`[tool.wizer]` key where the module's option lives (`project.wizen_module`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

__all__ = [
    "ConfigError",
    "InitError",
    "InvalidModule",
    "UnsupportedModule",
    "UnsupportedWasmtime",
    "UsageError",
    "WizerError",
    "option",
    "render",
]

# Unit separators around a field name: a byte no export name, path or WAT text puts there.
_MARK: Final = "\x1f"

_E = TypeVar("_E", bound="WizerError")


def option(field: str) -> str:
    """A reference to the option `field` (`init_func`, `features.simd`) inside a message."""
    return f"{_MARK}{field}{_MARK}"


def render(text: str, name: Callable[[str], str] | None = None) -> str:
    """`text` with each `option()` reference replaced by `name(field)` (default: the flag)."""
    if name is None:
        from .names import flag  # here, as names imports options, which imports this module

        name = flag
    parts = text.split(_MARK)  # every other part is a field: "text", field, "text", ...
    parts[1::2] = map(name, parts[1::2])
    return "".join(parts)


class WizerError(Exception):
    """Base class; `str()` is a one-line message fit for a terminal."""

    @property
    def message(self) -> str:
        """The message with its option references unrendered."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return render(self.message)

    def about(self: _E, subject: str, name: Callable[[str], str] | None = None) -> _E:
        """The same error as `subject: message`; `name` names its options for good."""
        message = self.message if name is None else render(self.message, name)
        return type(self)(f"{subject}: {message}")


class InvalidModule(WizerError):
    """The input is not a valid WebAssembly module (bad bytes, failed validation)."""


class UnsupportedModule(WizerError):
    """The module is valid but uses something a snapshot cannot represent."""


class UnsupportedWasmtime(WizerError):
    """The installed wasmtime-py is outside the supported range or lacks what hatch-wizer uses."""


class InitError(WizerError):
    """Running the module's initialization failed (trap, missing export, forbidden effect)."""


class ConfigError(WizerError):
    """Bad configuration: a CLI flag, a `[tool.wizer]` key or a hook option."""


class UsageError(ConfigError):
    """Bad command-line syntax (exit code 2)."""
