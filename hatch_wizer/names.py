"""How each front end names an option: its `hatch-wizer` flag and its `[tool.wizer]` key.

One row per `WizenOptions` field (a feature is `features.<name>`). `config.py` accepts exactly
the keys listed here, and messages refer to options by field (`errors.option()`), so the CLI
names the flag and a pyproject build the TOML key. A new option is one row here (plus its
converter in `config.py` unless it is a boolean switch).
"""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

from collections.abc import Mapping
from typing import Final, NamedTuple

from .options import Features

__all__ = ["OPTIONS", "Names", "flag"]


# A NamedTuple, as the CLI's other records: a frozen dataclass costs ~0.3 ms of each run's start.
class Names(NamedTuple):
    """The spellings of one option."""

    flag: str  # as `hatch-wizer` takes it (the one a message cites when several map to it)
    key: str | None = None  # as [tool.wizer] takes it; None: the option has no key


def _dashed(name: str) -> str:
    return name.replace("_", "-")


OPTIONS: Final[Mapping[str, Names]] = {
    "init_func": Names("--init-func", "init-func"),
    "renames": Names("--rename-func", "renames"),
    "keep_init_func": Names("--keep-init-func", "keep-init-func"),
    "allow_wasi": Names("--allow-wasi", "allow-wasi"),
    "inherit_stdio": Names("--inherit-stdio", "inherit-stdio"),
    "inherit_stdin": Names("-S inherit-stdin", "inherit-stdin"),
    "inherit_stdout": Names("-S inherit-stdout", "inherit-stdout"),
    "inherit_stderr": Names("-S inherit-stderr", "inherit-stderr"),
    "inherit_env": Names("--inherit-env", "inherit-env"),
    "env": Names("--env", "env"),
    "preopens": Names("--dir/--mapdir", "preopens"),
    "preloads": Names("--preload", "preload"),
    "max_data_segments": Names("--max-data-segments", "max-data-segments"),
    "init_timeout": Names("--init-timeout", "init-timeout"),
    "reproducible": Names("--reproducible", "reproducible"),
    "check_determinism": Names("--check-determinism", "check-determinism"),
    "cache": Names("--no-cache", "cache"),
    "unknown_imports": Names("--unknown-imports", "unknown-imports"),
    "wasi_cwd": Names("-S cwd", "wasi-cwd"),
    "compiler": Names("--compiler", "compiler"),
    "opt_level": Names("-O opt-level", "opt-level"),
    "regalloc_algorithm": Names("-O regalloc-algorithm", "regalloc-algorithm"),
    "parallel_compilation": Names("-C parallel-compilation", "parallel-compilation"),
    "precompile": Names("--precompile", "precompile"),
    **{
        f"features.{name}": Names(f"--wasm-{_dashed(name)}", f"wasm-{_dashed(name)}")
        for name in Features._fields
    },
}


def flag(field: str) -> str:
    """The flag of `field`, or the field itself if no row names it (a message stays readable)."""
    names = OPTIONS.get(field)
    return names.flag if names else field
