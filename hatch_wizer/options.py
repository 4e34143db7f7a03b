"""The options of one wizening: a frozen value shared by the library, the CLI and the hooks.

The records are NamedTuples, not frozen dataclasses, like the CLI's other records: importing
`dataclasses` (with inspect, ast and dis) and creating these four as dataclasses took ~7 ms of
a cold CLI run's ~19 above `import wasmtime` (benches/cli_overhead.py). Change one with
`_replace()`, list its fields with `_fields`.
"""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

import math
from pathlib import Path
from typing import Final, NamedTuple

from .errors import ConfigError

__all__ = [
    "COMPILERS",
    "DEFAULT_INIT_FUNC",
    "LEGACY_INIT_FUNC",
    "MAX_DATA_SEGMENTS",
    "OPT_LEVELS",
    "REGALLOC_ALGORITHMS",
    "UNKNOWN_IMPORT_POLICIES",
    "Features",
    "Preload",
    "Preopen",
    "WizenOptions",
    "init_timeout_in_range",
    "segment_count_in_range",
]

DEFAULT_INIT_FUNC = "wizer-initialize"
LEGACY_INIT_FUNC = "wizer.initialize"
# The engines' limit on a module's data segments (wasmparser's MAX_WASM_DATA_SEGMENTS).
MAX_DATA_SEGMENTS: Final = 100_000


def init_timeout_in_range(seconds: float) -> bool:
    """A time limit is a positive, finite number of seconds (no limit is spelt otherwise)."""
    return 0 < seconds < math.inf


def segment_count_in_range(count: int) -> bool:
    return 1 <= count <= MAX_DATA_SEGMENTS


# What init sees of imports nothing provides (no WASI, no preload): "trap" links functions that
# trap when called (Wizer 11; `wasmtime wizer -W unknown-imports-trap`), "reject" refuses the
# module before init, naming them all (`wasmtime wizer`'s default), "default" links functions
# that return zeros (`-W unknown-imports-default`).
UNKNOWN_IMPORT_POLICIES = ("trap", "reject", "default")
# Cranelift's optimization levels, as `wasmtime -O opt-level` names them.
OPT_LEVELS = ("0", "1", "2", "s")
# Cranelift's register allocators, as `wasmtime -O regalloc-algorithm` names them.
REGALLOC_ALGORITHMS = ("backtracking", "single-pass")
# The init run's compiler choices (see `WizenOptions.compiler`).
COMPILERS = ("auto", "cranelift", "winch")


class Preopen(NamedTuple):
    """A host directory made visible to WASI during init under `guest`."""

    guest: str
    host: Path
    writable: bool = False


class Preload(NamedTuple):
    """A helper module instantiated first; its exports satisfy imports from module `name`."""

    name: str
    path: Path


class Features(NamedTuple):
    """Wasm proposals enabled while validating and running init (all on by default)."""

    simd: bool = True
    relaxed_simd: bool = True
    bulk_memory: bool = True
    reference_types: bool = True
    multi_memory: bool = True
    multi_value: bool = True
    memory64: bool = True
    threads: bool = True
    tail_call: bool = True
    exceptions: bool = True
    gc: bool = True
    function_references: bool = True
    wide_arithmetic: bool = True
    custom_page_sizes: bool = False
    # Not a proposal: relaxed SIMD's deterministic profile, so init gives one answer everywhere.
    relaxed_simd_deterministic: bool = True


class WizenOptions(NamedTuple):
    """Everything that decides the output bytes of `wizen()`.

    `renames` holds `(dst, src)` pairs: export `src` is renamed to `dst`, replacing any
    previous `dst` export (Wizer's `-r dst=src`).
    """

    init_func: str = DEFAULT_INIT_FUNC
    renames: tuple[tuple[str, str], ...] = ()
    keep_init_func: bool = False
    allow_wasi: bool = False
    # A standard stream is given to init when inherit_stdio and its own flag are both on.
    inherit_stdio: bool = True
    inherit_stdin: bool = True
    inherit_stdout: bool = True
    inherit_stderr: bool = True
    inherit_env: bool = False
    env: tuple[tuple[str, str], ...] = ()
    preopens: tuple[Preopen, ...] = ()
    preloads: tuple[Preload, ...] = ()
    unknown_imports: str = "trap"
    # The initial working directory a component sees (wasi:cli/environment); preview 1 has
    # none, so modules are unaffected, as under `wasmtime wizer -S cwd`.
    wasi_cwd: str | None = None
    features: Features = Features()
    # Data segments the output may hold in all, up to the engines' limit.
    max_data_segments: int = MAX_DATA_SEGMENTS
    # Seconds init may run before it is given up on; None means no limit.
    init_timeout: float | None = 600.0
    # Reproducible init: fixed clocks (SOURCE_DATE_EPOCH), seeded random_get, no stdin.
    reproducible: bool = False
    # Run init twice and fail unless both runs leave the same state.
    check_determinism: bool = False
    # Reuse an earlier result for the same input and options (cache/), and wasmtime's
    # compiled code (both in per-user cache directories).
    cache: bool = True
    # The compiler for the init run: "auto" takes Winch (fast to compile) where it supports
    # the module, else Cranelift without optimizations; a small module's init that outlasts
    # its optimized Cranelift compile (on another core) runs again on that faster code. Or
    # force "cranelift" (optimized) or "winch".
    compiler: str = "auto"
    # Cranelift's optimization level for the init run ("0", "1", "2" or "s"); None lets the
    # compiler choice above decide. Init's speed only: the output is the same.
    opt_level: str | None = None
    # Cranelift's register allocator for the init run: "single-pass" compiles about twice as
    # fast (CPython: 15 s instead of 24), for slower code, but Wasmtime does not yet call it
    # production-ready, so it is asked for by name. Init's speed only: the output is the same.
    regalloc_algorithm: str = "backtracking"
    # Compile on all cores (wasmtime's parallel compilation); off, on one.
    parallel_compilation: bool = True
    # Also compile the output ahead of time (for a CPU level this platform shares) into NAME.cwasm
    # beside NAME.wasm, for `load_module()`. Front ends write it; `wizen()` itself ignores it.
    precompile: bool = False

    def check(self) -> None:
        """Raise ConfigError for a value out of range. `wizen()` checks its options; the front
        ends check their flags and keys first, naming them."""
        if not segment_count_in_range(self.max_data_segments):
            raise ConfigError(
                f"max_data_segments must be between 1 and {MAX_DATA_SEGMENTS} (the engines' "
                f"limit), not {self.max_data_segments}"
            )
        if self.init_timeout is not None and not init_timeout_in_range(self.init_timeout):
            raise ConfigError(
                "init_timeout must be a positive number of seconds, or None for no limit, "
                f"not {self.init_timeout}"
            )
        for name, allowed in (
            ("unknown_imports", UNKNOWN_IMPORT_POLICIES),
            ("compiler", COMPILERS),
            ("regalloc_algorithm", REGALLOC_ALGORITHMS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.opt_level is not None and self.opt_level not in OPT_LEVELS:
            raise ConfigError(
                f"opt_level must be one of {', '.join(OPT_LEVELS)} or None, not {self.opt_level!r}"
            )
