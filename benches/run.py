"""Runs every workload through every tool and writes results.json, results.md and ratios.png.

bash benches/run.sh [--workloads regex,uap] [--tools wizer11,ours] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime

from benches import cli_overhead, report, scan_speed
from benches.fetch import fetch
from benches.measure import module_info, run_tool, startup
from benches.tools import TOOLS, stage_times, tool_command, tool_env
from benches.workloads import ALL_NAMES, build_all
from hatch_wizer.engine import wasmtime_api as api

HERE = Path(__file__).parent
WORK = HERE / ".work"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benches.run", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(ALL_NAMES))
    parser.add_argument("--tools", default=",".join(t.key for t in TOOLS))
    parser.add_argument("--runs", type=int, default=5, help="wizening runs per tool (median)")
    parser.add_argument("--startup-budget", type=float, default=3.0, help="seconds per module")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--startup-only", action="store_true",
        help="with --merge: measure start-up again from the outputs of the last run",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="update the measured workloads/tools in an existing OUT/results.json",
    )  # fmt: skip
    return parser.parse_args(argv)


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _machine() -> dict[str, Any]:
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "core_dirty": bool(_git("status", "--porcelain", "--", "../hatch_wizer")),
        "python": platform.python_version(),
        "wasmtime-py": api.installed_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    args.merge = args.merge or args.startup_only
    names = tuple(n for n in args.workloads.split(",") if n)
    tools = [t for t in TOOLS if t.key in args.tools.split(",")]
    downloads = fetch(WORK)
    workloads = build_all(WORK, downloads, names)
    args.out.mkdir(parents=True, exist_ok=True)
    engine = wasmtime.Engine()  # start-up is measured with one default engine for all modules
    results: dict[str, Any] = {"machine": _machine(), "runs": args.runs, "workloads": []}
    previous: dict[str, Any] = {}
    if args.merge and (args.out / "results.json").exists():
        results = json.loads((args.out / "results.json").read_text())
        results["machine"]["date"] += f", {_machine()['date']}"
        results["machine"]["commit"] = _machine()["commit"]  # older rows name their own
        previous = {wl["name"]: wl for wl in results["workloads"]}
    for wl in workloads:
        print(f"== {wl.name}: {wl.what}", flush=True)
        entry: dict[str, Any] = {
            "name": wl.name,
            "what": wl.what,
            "input": module_info(wl.wasm.read_bytes()).__dict__,
            "first_call": f"{wl.first_call}{wl.first_args or '()'}",
            "tools": dict(previous.get(wl.name, {}).get("tools", {})),
        }
        if wl.name in previous:
            index = [w["name"] for w in results["workloads"]].index(wl.name)
            results["workloads"][index] = entry
        else:
            results["workloads"].append(entry)
        if not args.startup_only:
            for key, row in _measure_tools(tools, downloads, wl, args.runs).items():
                entry["tools"][key] = row
                done = f"{row['wall_s']:.3f} s" if row["ok"] else f"FAILED: {row.get('error')}"
                print(f"   {key}: {done}", flush=True)
            _save(results, args.out)  # an interrupted run keeps the workloads it measured
        # Start-up: the original (with init) and each distinct output, measured round-robin.
        modules: dict[str, tuple[Path, bool]] = {"original": (wl.wasm, True)}
        key_of_hash: dict[str, str] = {}
        for key, row in entry["tools"].items():
            out = WORK / "out" / wl.name / f"{key}.wasm"
            if row.get("ok") and out.exists():
                row["sha256"] = digest = hashlib.sha256(out.read_bytes()).hexdigest()
                if digest not in key_of_hash:
                    key_of_hash[digest] = key
                    modules[key] = (out, False)
        starts = startup(engine, modules, wl, budget=args.startup_budget)
        original = starts["original"]
        entry["original_startup_ms"] = original.median * 1e3
        entry["startup_rounds"] = original.runs
        entry["expected_result"] = original.result
        print(f"   original: instantiate + init + first call {original.median * 1e3:.3f} ms"
              f" -> {original.result}", flush=True)  # fmt: skip
        for key, row in entry["tools"].items():
            if row.get("ok") and "sha256" in row:
                st = starts[key_of_hash[row["sha256"]]]
                row["startup_ms"] = st.median * 1e3
                row["same_result"] = st.result == original.result
            print("  ", key, _summary(row), flush=True)
        _save(results, args.out)
    if not args.startup_only:
        results["scan_gbps"] = {c: scan_speed.measure(c) for c in ("cranelift", "winch")}
        if "ours" in args.tools.split(","):
            results["cli_overhead"] = cli_overhead.measure(rounds=21)
    report.write_all(results, args.out)
    print(f"wrote {args.out}/results.json, results.md, ratios.png")
    return 0


def _save(results: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _measure_tools(tools: list[Any], downloads: Any, wl: Any, runs: int) -> dict[str, Any]:
    """Each tool's row for `wl`. The tools take turns, one run each per round (in reverse
    order every other round), so that the machine's drift over the minutes a workload takes
    moves every tool alike instead of the one whose runs it falls on."""
    measured = [_ToolRuns(tool, downloads, wl) for tool in tools]
    for round_ in range(runs):
        for one in measured if round_ % 2 == 0 else measured[::-1]:
            one.run()
    return {one.tool.key: one.row() for one in measured}


class _ToolRuns:
    """One tool's runs on one workload, taken one at a time."""

    def __init__(self, tool: Any, downloads: Any, wl: Any) -> None:
        self.tool = tool
        self.out = WORK / "out" / wl.name / f"{tool.key}.wasm"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.unlink(missing_ok=True)
        self.cmd = tool_command(tool, downloads, wl, self.out)
        self.error: str | None = None
        self.walls: list[float] = []
        self.rss: list[int] = []
        self.stages: list[dict[str, float]] = []
        self.warm_home = WORK / "cache-warm" / wl.name / tool.key
        if tool.warm:
            shutil.rmtree(self.warm_home, ignore_errors=True)
            self.warm_home.mkdir(parents=True)
            first = run_tool(self.cmd, tool_env(self.warm_home))  # fills the cache; not measured
            if first.returncode != 0:
                self.error = _error_text(first.stderr)

    def run(self) -> None:
        if self.error is not None:
            return
        # The previous run's output (maybe another tool's) may still be being written back:
        # it reaches the disk first, untimed, so that no run pays for another's I/O.
        os.sync()
        with tempfile.TemporaryDirectory(dir=WORK) as cold_home:
            home = self.warm_home if self.tool.warm else Path(cold_home)
            r = run_tool(self.cmd, tool_env(home))
        if r.returncode != 0 or not self.out.exists():
            self.error = _error_text(r.stderr)
            return
        self.walls.append(r.wall)
        self.rss.append(r.max_rss)
        if self.tool.key.startswith("ours-lib"):
            timed = json.loads(r.stdout.strip().splitlines()[-1])
            self.walls[-1] = timed["seconds"]
            self.stages.append(timed["stages"])
        elif self.tool.ours:
            self.stages.append(stage_times(r.stderr))

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"label": self.tool.label, "command": self.cmd, "ok": False}
        if self.tool.ours:
            row["commit"] = _git("rev-parse", "--short", "HEAD")
        if self.error is not None:
            row["error"] = self.error
            return row
        row.update(
            ok=True,
            wall_s=statistics.median(self.walls),
            wall_all_s=self.walls,
            max_rss_mib=max(self.rss) / 2**20,
            output=module_info(self.out.read_bytes()).__dict__,
        )
        if self.stages:
            stages = self.stages
            med = {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]}
            row["stages_s"] = med
            engine_side = med.get("compile", 0.0) + med.get("init", 0.0)
            row["python_side_fraction"] = max(0.0, 1 - engine_side / row["wall_s"])
        return row


def _error_text(stderr: str) -> str:
    """The error and its causes, without a Rust backtrace."""
    lines = [line.strip() for line in stderr.split("Stack backtrace:")[0].splitlines()]
    return " / ".join(line for line in lines if line and line != "Caused by:")[:400] or "?"


def _summary(row: dict[str, Any]) -> str:
    if not row["ok"]:
        return f"FAILED: {row.get('error')}"
    return (
        f"{row['wall_s'] * 1e3:9.1f} ms  {row['max_rss_mib']:7.1f} MiB"
        f"  {row['output']['size']:>11,} B  {row['output']['data_segments']:>6} segs"
        f"  start-up {row['startup_ms']:.3f} ms  same result: {row['same_result']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
