"""What wizening a big module in a child process costs: wall time and the peak RSS of the whole
process tree, against the same run in the process (with and without epoch checks).

    python -m benches.child_cost                       # a generated 3 MiB module, 5 rounds
    python -m benches.child_cost --mib 5 --rounds 7
    python -m benches.child_cost --wasm python.wasm -- -f wizer.initialize --allow-wasi ...

Each round runs `hatch-wizer --no-cache m.wasm -o out.wasm` once per mode, the modes taking
turns so that a loaded machine weighs on them alike:
- `cli`: as shipped: the CLI ends with its run, so it wizens in its own process, on code
  without epoch checks (an init it gives up on ends with its exit);
- `child`: as a build hook or a `wizen()` caller does, which outlive their runs: modules over
  1 MiB are wizened in a child process (no epoch checks);
- `here+epoch`: in the process, with epoch checks (what a hook would pay without the child).
Peak RSS is the largest sum of VmRSS over the CLI and its children, sampled every 10 ms.
Every mode's output must have the same sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

# How each mode starts the CLI: `child` as installed; the others with the choice made for them.
_MODES = {
    "cli": "",
    "child": "c.process_ends_with_run = lambda: False",
    "here+epoch": (
        "c.in_child = lambda wasm, options: False; r.process_ends_with_run = lambda: False"
    ),
}
_BOOT = (
    "import sys; import hatch_wizer.engine.child as c, hatch_wizer.engine.runtime as r; {patch}\n"
    "from hatch_wizer.build.cli import entrypoint; sys.argv[0] = 'hatch-wizer'; entrypoint()"
)


def big_module(mib: float) -> bytes:
    """`mib` MiB of data and an init that sums it (so init has work that reads memory)."""
    size = int(mib * (1 << 20))
    pages = size // (1 << 16) + 2
    data = "Z" * size
    return wasmtime.wat2wasm(f"""(module
  (memory (export "memory") {pages})
  (global (export "sum") (mut i32) (i32.const 0))
  (data (i32.const 0) "{data}")
  (func (export "wizer-initialize") (local $p i32)
    (loop $next
      (global.set 0 (i32.add (global.get 0) (i32.load8_u (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $p) (i32.const {size}))))))""")


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and of its children (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if stat.parent.name != str(pid) and int(fields[1]) != pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run_once(mode: str, wasm: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    """(seconds, peak tree RSS in MiB, output sha256) of one CLI run."""
    code = _BOOT.format(patch=_MODES[mode])
    cmd = [sys.executable, "-c", code, "--no-cache", "-q", str(wasm), "-o", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kib(proc.pid))
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{mode}: hatch-wizer failed with status {proc.returncode}")
    return seconds, peak // 1024, hashlib.sha256(out.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", type=Path, help="the module (default: a generated one)")
    parser.add_argument("--mib", type=float, default=3.0, help="the generated module's size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default=",".join(_MODES))
    parser.add_argument("extra", nargs="*", help="more hatch-wizer arguments (after --)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="child-cost-") as tmp:
        wasm = args.wasm
        if wasm is None:
            wasm = Path(tmp) / "big.wasm"
            wasm.write_bytes(big_module(args.mib))
        print(f"{wasm.name}: {wasm.stat().st_size / (1 << 20):.1f} MiB, {args.rounds} rounds")
        results: dict[str, list[tuple[float, int, str]]] = {m: [] for m in modes}
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                result = run_once(mode, wasm, Path(tmp) / f"out-{mode}.wasm", args.extra)
                results[mode].append(result)
                print(f"  {mode:11} {result[0]:7.3f} s {result[1]:6} MiB  {result[2]}", flush=True)
    print("mode         wall s (min / median / max)     peak tree RSS MiB (min-max)")
    for mode, rows in results.items():
        secs = sorted(r[0] for r in rows)
        rss = sorted(r[1] for r in rows)
        print(f"{mode:11}  {secs[0]:.3f} / {secs[len(secs) // 2]:.3f} / {secs[-1]:.3f}"
              f"            {rss[0]}-{rss[-1]}")  # fmt: skip
    if len({r[2] for rows in results.values() for r in rows}) != 1:
        raise SystemExit("the modes' outputs differ")


if __name__ == "__main__":
    main()
