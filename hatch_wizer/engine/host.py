"""What init is linked with: WASI's stdio, environment and preopens, and our clock and random
functions over WASI's (see `wasi.py`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import wasmtime

from ..errors import ConfigError, InitError
from ..options import WizenOptions
from .inputs import gives_stdin, init_environ
from .wasi import WASI_MODULE, Errno, WasiHost
from .wasmtime_api import preopen_dir

__all__ = [
    "CapturedOutput",
    "define_wasi_host",
    "reject_unprovided",
    "unprovided_imports",
    "wasi_config",
]


class CapturedOutput:
    """What a trial init writes to stdout and stderr, held in memory until the trial is known
    to count (a trial is a small module's init, which writes little)."""

    def __init__(self) -> None:
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []

    def replay(self) -> None:
        """Show it (a closed stdout drops it, as it would have dropped the guest's own writes)."""
        for chunks, fd in ((self.stdout, 1), (self.stderr, 2)):
            if chunks:
                with contextlib.suppress(OSError), open(fd, "wb", closefd=False) as stream:
                    stream.write(b"".join(chunks))


def wasi_config(
    options: WizenOptions, captured: CapturedOutput | None = None
) -> wasmtime.WasiConfig:
    wasi = wasmtime.WasiConfig()
    if options.reproducible and options.inherit_env:
        raise ConfigError(
            "inheriting the environment (inherit-env) would make a reproducible build depend "
            "on the build machine; pass variables with env, or turn reproducible off"
        )
    if gives_stdin(options):
        wasi.inherit_stdin()
    if options.inherit_stdio and options.inherit_stdout:
        if captured:
            wasi.stdout_custom = captured.stdout.append
        else:
            wasi.inherit_stdout()
    if options.inherit_stdio and options.inherit_stderr:
        if captured:
            wasi.stderr_custom = captured.stderr.append
        else:
            wasi.inherit_stderr()
    wasi.env = init_environ(options)
    for preopen in sorted(options.preopens, key=lambda p: p.guest):
        if not Path(preopen.host).is_dir():
            raise ConfigError(f"preopen `{preopen.guest}`: {preopen.host} is not a directory")
        preopen_dir(wasi, str(preopen.host), preopen.guest, preopen.writable)
    return wasi


def unprovided_imports(
    store: wasmtime.Store, linker: wasmtime.Linker, module: wasmtime.Module
) -> list[str]:
    """`module::name` of every import of `module` that `linker` does not define."""
    missing = []
    for item in module.imports:
        try:
            found = linker.get(store, item.module, item.name or "")
        except wasmtime.WasmtimeError:
            found = None
        if found is None:
            missing.append(f"{item.module}::{item.name}")
    return missing


def reject_unprovided(what: str, missing: list[str]) -> None:
    """The strict unknown-imports policy (`wasmtime wizer`'s default): fail before init."""
    if missing:
        names = ", ".join(f"`{name}`" for name in missing)
        raise InitError(
            f"{what} imports {names}, which nothing provides during init (unknown imports "
            "are rejected: -W unknown-imports-trap=n); provide them with --preload or WASI "
            "(-S cli), or let init run with stubs that trap if called (-W unknown-imports-trap)"
        )


def define_wasi_host(linker: wasmtime.Linker, host: WasiHost) -> None:
    """Shadow WASI's clock and random calls with `host`'s (fixed when reproducible, counted)."""
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

    def store(caller: wasmtime.Caller, address: int, data: bytes) -> int:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return Errno.FAULT
        address &= 0xFFFFFFFF  # pointers arrive as signed i32
        if address + len(data) > memory.data_len(caller):
            return Errno.FAULT
        if data:
            memory.write(caller, data, address)
        return Errno.SUCCESS

    def clock_time_get(caller: wasmtime.Caller, clock: int, precision: int, out: int) -> int:
        now = host.clock_time(clock)
        return Errno.INVAL if now is None else store(caller, out, now.to_bytes(8, "little"))

    def clock_res_get(caller: wasmtime.Caller, clock: int, out: int) -> int:
        res = host.clock_resolution(clock)
        return Errno.INVAL if res is None else store(caller, out, res.to_bytes(8, "little"))

    def random_get(caller: wasmtime.Caller, buf: int, length: int) -> int:
        length &= 0xFFFFFFFF
        memory = caller.get("memory")
        if isinstance(memory, wasmtime.Memory) and (buf & 0xFFFFFFFF) + length > memory.data_len(
            caller
        ):
            return Errno.FAULT  # before drawing bytes: a bad buffer must not cost entropy
        return store(caller, buf, host.random(length))

    linker.allow_shadowing = True
    for name, params, func in (
        ("clock_time_get", [i32, i64, i32], clock_time_get),
        ("clock_res_get", [i32, i32], clock_res_get),
        ("random_get", [i32, i32], random_get),
    ):
        ty = wasmtime.FuncType(params, [i32])
        linker.define_func(WASI_MODULE, name, ty, func, access_caller=True)
    linker.allow_shadowing = False
