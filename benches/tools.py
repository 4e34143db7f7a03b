"""The wizening tools under test: Wizer 11, `wasmtime wizer`, and hatch-wizer (cold and warm)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benches.fetch import Downloads
    from benches.workloads import Workload

__all__ = ["TOOLS", "Tool", "stage_times", "tool_command", "tool_env"]


@dataclass(frozen=True)
class Tool:
    """One way of wizening; `warm` runs reuse one compilation cache, primed by an extra run."""

    key: str
    label: str
    ours: bool
    warm: bool = False


TOOLS = (
    Tool("wizer11", "Wizer 11.0.3", ours=False),
    Tool("wasmtime", "wasmtime wizer 49 (-C cache=n)", ours=False),
    Tool("ours", "hatch-wizer (cold cache)", ours=True),
    Tool("ours-warm", "hatch-wizer (warm cache)", ours=True, warm=True),
    # wizen() in a process that has already imported hatch_wizer: what a build hook pays.
    Tool("ours-lib", "hatch-wizer wizen() in-process (cold)", ours=True),
    # The same with the caches warm: an unchanged module, rebuilt (the result cache hits).
    Tool("ours-lib-warm", "hatch-wizer wizen() in-process (warm cache)", ours=True, warm=True),
)


def tool_command(tool: Tool, downloads: Downloads, wl: Workload, out: Path) -> list[str]:
    """The command line that wizens `wl` into `out` with `tool`."""
    if tool.key == "wizer11":
        cmd = [str(downloads.wizer), str(wl.wasm), "-o", str(out), "-f", wl.init_func]
        if wl.wasi:
            cmd.append("--allow-wasi")
        for guest, host in wl.mapdirs:
            cmd += ["--mapdir", f"{guest}::{host}"]
        return cmd
    if tool.key == "wasmtime":
        cmd = [str(downloads.wasmtime), "wizer", "-C", "cache=n"]
        if wl.exceptions:
            cmd += ["-W", "exceptions=y"]
        if wl.has_unknown_imports:
            cmd += ["-W", "unknown-imports-trap=y"]
        if wl.wasi:
            cmd += ["-S", "cli"]
        for guest, host in wl.mapdirs:
            cmd += ["--dir", f"{host}::{guest}"]
        return [*cmd, "-f", wl.init_func, "-o", str(out), str(wl.wasm)]
    if tool.key.startswith("ours-lib"):
        maps = [f"{guest}::{host}" for guest, host in wl.mapdirs]
        return [sys.executable, "-m", "benches.inproc", str(wl.wasm), str(out), wl.init_func,
                "1" if wl.wasi else "0", *maps]  # fmt: skip
    # The installed `hatch-wizer` command, as a Makefile runs it; -v reports stage times.
    cmd = [str(Path(sys.executable).parent / "hatch-wizer"), "-v", str(wl.wasm), "-o", str(out)]
    cmd += ["-f", wl.init_func]
    if wl.wasi:
        cmd.append("--allow-wasi")
    for guest, host in wl.mapdirs:
        cmd += ["--mapdir", f"{guest}::{host}"]
    return cmd


def tool_env(cache_home: Path) -> dict[str, str]:
    """The environment of one run: wasmtime's cache (and ours) lives under XDG_CACHE_HOME."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(cache_home)
    return env


_STAGE = re.compile(r": (validate|compile|init|snapshot|check): ([0-9.]+) s$", re.MULTILINE)


def stage_times(stderr: str) -> dict[str, float]:
    """hatch-wizer -v's per-stage seconds."""
    return {m.group(1): float(m.group(2)) for m in _STAGE.finditer(stderr)}
