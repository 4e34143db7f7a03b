"""The CLI's cold overhead on a small module, side by side with its floor, `import wasmtime`.

    python -m benches.cli_overhead              # 15 rounds
    python -m benches.cli_overhead --rounds 30 --imports

Each round runs `python -c "import wasmtime"` and `hatch-wizer --no-cache small.wasm -o
out.wasm` (the installed command) once, taking turns, and prints the fastest and the median of
each and their difference (the target: at most 15 ms). `--imports` adds the modules the CLI
imports beyond the floor's, ours and the standard library's, by their fastest self time under
`python -X importtime` over the rounds: on a loaded machine the fastest of many runs is the
closest to the cost itself. (importtime inflates each module's time a little.)

The floor's time includes the interpreter's teardown (~6 ms here), which the CLI skips by
ending with `os._exit` once its output is written.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime

SMALL = """(module (memory (export "memory") 1) (global (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set 0 (i32.const 5))
    (i32.store (i32.const 8) (i32.const 9))))"""
_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| +(\S+)")


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stderr


def measure(rounds: int = 15, imports: bool = False) -> dict[str, Any]:
    """Fastest and median of the floor and of the CLI, in ms (`benches/run.py` records it);
    with `imports`, each module's fastest self import time (us) and the floor's modules."""
    cli = str(Path(sys.executable).parent / "hatch-wizer")
    floor_cmd = [sys.executable, "-c", "import wasmtime"]
    with tempfile.TemporaryDirectory(prefix="cli-overhead-") as tmp:
        small = Path(tmp) / "small.wasm"
        small.write_bytes(wasmtime.wat2wasm(SMALL))
        cli_cmd = [cli, "--no-cache", "-q", str(small), "-o", str(Path(tmp) / "out.wasm")]
        floor: list[float] = []
        ours: list[float] = []
        selfs: dict[str, int] = {}
        floor_modules = set()
        if imports:
            stderr = _timed([sys.executable, "-X", "importtime", "-c", "import wasmtime"])[1]
            floor_modules = {name for _, name in _IMPORT.findall(stderr)}
        for round_ in range(rounds):
            pair = [(floor, floor_cmd), (ours, cli_cmd)]
            for times, cmd in pair if round_ % 2 == 0 else pair[::-1]:
                times.append(_timed(cmd)[0])
            if imports:
                stderr = _timed([sys.executable, "-X", "importtime", *cli_cmd])[1]
                for us, name in _IMPORT.findall(stderr):
                    selfs[name] = min(selfs.get(name, 1 << 62), int(us))
    return {
        "rounds": rounds,
        "floor_fastest_ms": min(floor) * 1e3,
        "floor_median_ms": statistics.median(floor) * 1e3,
        "ours_fastest_ms": min(ours) * 1e3,
        "ours_median_ms": statistics.median(ours) * 1e3,
        "self_us": selfs,
        "floor_modules": sorted(floor_modules),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--imports", action="store_true", help="list our modules' import times")
    args = parser.parse_args(argv)
    m = measure(args.rounds, args.imports)
    print(f"{'':28} fastest  median  (ms, {args.rounds} rounds)")
    labels = (("python -c 'import wasmtime'", "floor"), ("hatch-wizer --no-cache", "ours"))
    for label, key in labels:
        print(f"{label:28} {m[key + '_fastest_ms']:7.1f} {m[key + '_median_ms']:7.1f}")
    print(f"{'difference':28} {m['ours_fastest_ms'] - m['floor_fastest_ms']:7.1f} "
          f"{m['ours_median_ms'] - m['floor_median_ms']:7.1f}")  # fmt: skip
    selfs, floor_modules = m["self_us"], set(m["floor_modules"])
    extra = {n: us for n, us in selfs.items() if n not in floor_modules}
    mine = {n: us for n, us in extra.items() if n.startswith("hatch_wizer")}
    others = {n: us for n, us in extra.items() if n not in mine}
    for title, modules in (("our modules'", mine), ("other modules' (beyond the floor's)", others)):
        if modules:
            total = sum(modules.values()) / 1e3
            print(f"\n{title} fastest self import times: {total:.1f} ms in all")
            for name, us in sorted(modules.items(), key=lambda item: -item[1]):
                print(f"  {us / 1e3:6.2f} ms  {name}")


if __name__ == "__main__":
    main()
