"""What init is linked with: WASI's stdio, environment and preopens, and our clock and random
functions over WASI's (see `wasi.py`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Final

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


# A held stream moves to a temp file past this size: a trial is a small module's init, which
# mostly writes little, and `tempfile` (with shutil, random) is ~3 ms of a cold CLI run.
HELD_IN_MEMORY: Final = 16 << 20


class _Held:
    """One stream's bytes: in memory, then, past HELD_IN_MEMORY, in an unnamed temp file."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)
            return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HELD_IN_MEMORY:
            import tempfile

            # Closed by replay(), or with this object when the trial is overtaken.
            self.file = tempfile.TemporaryFile()  # noqa: SIM115
            self.file.writelines(self.chunks)
            self.chunks = []

    def replay(self, fd: int) -> None:
        with contextlib.suppress(OSError), open(fd, "wb", closefd=False) as stream:
            if self.file is None:
                stream.write(b"".join(self.chunks))
                return
            with self.file:
                self.file.seek(0)
                while block := self.file.read(1 << 20):
                    stream.write(block)


class CapturedOutput:
    """What a trial init writes to stdout and stderr, held until the trial is known to count."""

    def __init__(self) -> None:
        self.stdout = _Held()
        self.stderr = _Held()

    def replay(self) -> None:
        """Show it (a closed stdout drops it, as it would have dropped the guest's own writes)."""
        self.stdout.replay(1)
        self.stderr.replay(2)


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
            wasi.stdout_custom = captured.stdout.write
        else:
            wasi.inherit_stdout()
    if options.inherit_stdio and options.inherit_stderr:
        if captured:
            wasi.stderr_custom = captured.stderr.write
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
