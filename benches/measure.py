"""Measures a tool run (wall time, peak RSS), a module's data section, and a module's start-up."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wasmtime

from hatch_wizer.engine import wasmtime_api as api

if TYPE_CHECKING:
    from benches.workloads import Workload

__all__ = ["ModuleInfo", "Startup", "ToolRun", "module_info", "run_tool", "startup"]


@dataclass(frozen=True)
class ToolRun:
    """One process: wall seconds, peak RSS in bytes, exit status, stdout and stderr's tail."""

    wall: float
    max_rss: int
    returncode: int
    stdout: str
    stderr: str


# Linux carries a parent's peak RSS into a child it forks (through exec), so a child spawned
# by this (large) process would report at least our own peak. GNU time forks from a small
# process, so its figure is the tool's own.
_GNU_TIME = shutil.which("time") if Path("/usr/bin/time").exists() else None


def run_tool(cmd: list[str], env: dict[str, str] | None = None) -> ToolRun:
    """Runs cmd; wall time from here, peak RSS from GNU time (else from wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        full = [str(_GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd] if _GNU_TIME else cmd
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            start = time.perf_counter()
            # No stdin, as in a build: init has nothing to read, so hatch-wizer may run it twice.
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            tail = err.read()[-4000:].decode(errors="replace")
        max_rss = usage.ru_maxrss * 1024
        if _GNU_TIME and rss_file.exists():
            text = rss_file.read_text().strip().splitlines()
            if text and text[-1].isdigit():
                max_rss = int(text[-1]) * 1024
    return ToolRun(wall, max_rss, os.waitstatus_to_exitcode(status), stdout, tail)


# -- The data section ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleInfo:
    """Size and data section of a module."""

    size: int
    data_segments: int  # all segments, passive and empty ones included
    nonempty_segments: int
    data_bytes: int  # payload bytes in all segments


def _uleb(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return pos, result


def _skip_const_expr(buf: bytes, pos: int) -> int:
    while True:
        op = buf[pos]
        pos += 1
        if op == 0x0B:
            return pos
        if op in (0x41, 0x42, 0x23):  # i32.const, i64.const (SLEB), global.get
            while buf[pos] & 0x80:
                pos += 1
            pos += 1
        elif op not in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            raise ValueError(f"unexpected opcode 0x{op:02x} in a data segment offset")


def module_info(wasm: bytes) -> ModuleInfo:
    """Counts the data segments of a core module (https://webassembly.github.io/spec/)."""
    pos, segments, nonempty, payload = 8, 0, 0, 0
    while pos < len(wasm):
        section_id = wasm[pos]
        pos, size = _uleb(wasm, pos + 1)
        end = pos + size
        if section_id == 11:
            p, segments = _uleb(wasm, pos)
            for _ in range(segments):
                p, flags = _uleb(wasm, p)
                if flags == 2:
                    p, _memidx = _uleb(wasm, p)
                if flags in (0, 2):
                    p = _skip_const_expr(wasm, p)
                p, length = _uleb(wasm, p)
                p += length
                payload += length
                nonempty += length > 0
        pos = end
    return ModuleInfo(len(wasm), segments, nonempty, payload)


# -- Start-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    """Median seconds of instantiate (+ _initialize + init) + first call, and the call's result."""

    median: float
    runs: int
    result: int | None


class _Instance:
    """Calls by export name, through the adapter's raw call: wasmtime-py's `Func.__call__`
    costs ~15 µs, that ~2 µs."""

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance, results: dict[str, int]):
        self.store = store
        self.instance = instance
        self.results = results

    def call(self, name: str, *args: int) -> int | None:
        func = api.export(self.store, self.instance, name)
        if not isinstance(func, wasmtime.Func):
            raise LookupError(f"no function export {name!r}")
        return api.call_i32(self.store, func, args, self.results[name])


def _result_counts(module: wasmtime.Module) -> dict[str, int]:
    counts = {}
    for export in module.exports:
        ty: Any = export.type
        if isinstance(ty, wasmtime.FuncType):
            counts[export.name] = len(ty.results)
    return counts


class _Prepared:
    """One module compiled and pre-linked, ready to be started again and again."""

    def __init__(self, engine: wasmtime.Engine, wasm: Path, workload: Workload, run_init: bool):
        self.engine = engine
        self.workload = workload
        self.run_init = run_init
        module = wasmtime.Module.from_file(engine, str(wasm))
        self.needs_wasi = any(i.module.startswith("wasi_") for i in module.imports)
        linker = wasmtime.Linker(engine)
        if self.needs_wasi:
            linker.define_wasi()
        linker.define_unknown_imports_as_traps(module)
        self.pre = linker.instantiate_pre(module)
        self.counts = _result_counts(module)

    def once(self) -> tuple[float, int | None]:
        """New store, instantiate, (_initialize, init,) first call: seconds and the result."""
        wl = self.workload
        start = time.perf_counter()
        store = wasmtime.Store(self.engine)
        if self.needs_wasi:
            wasi = wasmtime.WasiConfig()
            if self.run_init:
                for guest, host in wl.mapdirs:
                    wasi.preopen_dir(str(host), guest, fs_mutable=False)
            store.set_wasi(wasi)
        inst = _Instance(store, self.pre.instantiate(store), self.counts)
        if self.run_init:
            if "_initialize" in self.counts and wl.init_func != "_initialize":
                inst.call("_initialize")
            inst.call(wl.init_func)
        result = inst.call(wl.first_call, *wl.first_args)
        elapsed = time.perf_counter() - start
        del inst, store
        return elapsed, result


def startup(
    engine: wasmtime.Engine,
    modules: dict[str, tuple[Path, bool]],
    workload: Workload,
    *,
    budget: float = 3.0,
    max_runs: int = 300,
    min_runs: int = 7,
) -> dict[str, Startup]:
    """Start-up of several modules ({key: (wasm, run_init)}), each compiled once, measured
    round-robin (one start of each per round) so that load changes hit them all alike."""
    prepared = {key: _Prepared(engine, wasm, workload, run_init)
                for key, (wasm, run_init) in modules.items()}  # fmt: skip
    times: dict[str, list[float]] = {key: [] for key in prepared}
    results: dict[str, int | None] = {}
    spent = 0.0
    rounds = 0
    while rounds < max_runs and (spent < budget * len(prepared) or rounds < min_runs):
        for key, prep in prepared.items():
            elapsed, results[key] = prep.once()
            times[key].append(elapsed)
            spent += elapsed
        rounds += 1
    return {key: Startup(statistics.median(t), len(t), results[key]) for key, t in times.items()}
