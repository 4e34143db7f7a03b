"""wasmtime engines for the options, and the one-line form of wasmtime's errors."""

from __future__ import annotations

import platform
import re

import wasmtime

from ..options import Features
from . import wasmtime_api as api

__all__ = [
    "engine_config",
    "one_line",
    "uses_reference_types",
    "winch_available",
    "winch_validates",
]


# The wasm stack of code from Cranelift's single-pass register allocator (see engine_config).
SINGLE_PASS_WASM_STACK = 1 << 20
# Proposals Winch cannot compile; a Winch engine with any of them enabled aborts the process.
_NOT_IN_WINCH = ("relaxed_simd", "gc", "function_references", "exceptions", "tail_call", "threads",
                 "wide_arithmetic")  # fmt: skip


def winch_available() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def winch_validates(features: Features, wasm: bytes) -> bool:
    """Whether Winch can compile the module `wasm`: it uses no proposal Winch lacks."""
    engine = wasmtime.Engine(engine_config(features, cache=False, stoppable=True, winch=True))
    try:
        api.validate_module(engine, wasm)
    except wasmtime.WasmtimeError:
        return False
    return True


def engine_config(
    features: Features,
    *,
    cache: bool,
    stoppable: bool,
    winch: bool = False,
    parallel: bool = True,
    opt_level: str = "speed",
    regalloc: str = "backtracking",
) -> wasmtime.Config:
    if winch:
        features = features._replace(**dict.fromkeys(_NOT_IN_WINCH, False))
    config = wasmtime.Config()
    if winch:
        api.set_winch(config)
        api.set_config(config, "wasm_component_model", False)
    # Disabling SIMD while relaxed SIMD stays on aborts the process: keep them consistent.
    config.wasm_relaxed_simd = features.simd and features.relaxed_simd
    config.wasm_simd = features.simd
    config.wasm_relaxed_simd_deterministic = features.relaxed_simd_deterministic
    config.wasm_bulk_memory = features.bulk_memory
    config.wasm_multi_memory = features.multi_memory
    config.wasm_multi_value = features.multi_value
    config.wasm_memory64 = features.memory64
    config.wasm_threads = features.threads
    config.wasm_tail_call = features.tail_call
    config.wasm_exceptions = features.exceptions
    api.set_config(config, "wasm_gc", features.gc)
    api.set_config(config, "wasm_function_references", features.function_references or features.gc)
    api.set_config(config, "wasm_wide_arithmetic", features.wide_arithmetic)
    api.set_config(config, "wasm_custom_page_sizes", features.custom_page_sizes)
    # Turning reference types off aborts the process too; our validator check covers it.
    config.epoch_interruption = stoppable  # init can be stopped, not only left (`run_init`)
    config.parallel_compilation = parallel
    # Nothing unwinds natively through wasm frames here (host functions are Python, wasmtime's
    # own backtraces walk frame pointers): without unwind info there is less to compile.
    api.set_config(config, "native_unwind_info", False)
    if opt_level != "speed":
        config.cranelift_opt_level = opt_level
    if regalloc == "single-pass" and not winch:
        api.set_cranelift_flag(config, "regalloc_algorithm", "single_pass")
        # Its frames spill more: CPython's init exhausts wasmtime's default 512 KiB of wasm
        # stack on this code, and fits in 1 MiB (the init thread has the platform's 8 MiB).
        api.set_config(config, "max_wasm_stack", SINGLE_PASS_WASM_STACK)
    if cache:
        config.cache = True
    return config


def one_line(error: Exception) -> str:
    """wasmtime's error text without its backtrace, on one line."""
    text = str(getattr(error, "message", None) or error)
    if "Caused by:" in text:
        text = text.split("Caused by:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [re.sub(r"^\d+: ", "", line) for line in lines]
    return "; ".join(dict.fromkeys(lines))


def uses_reference_types(wasm: bytes) -> bool:
    # Without the proposal, wasmtime cannot even be configured; approximate the old validator
    # by the reference-type bytes a module would need in its types and tables.
    from ..wasm.parse import parse_module

    module = parse_module(wasm)
    return len(module.tables) > 1 or any(t.elem_type != "funcref" for t in module.tables)
