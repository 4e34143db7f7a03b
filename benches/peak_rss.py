"""Peak RSS of one CLI wizening of a large memory, against the output's size.

    python -m benches.peak_rss                      # dense 512 MiB
    python -m benches.peak_rss --mib 64 --content sparse
    python -m benches.peak_rss -- --wasm-multi-memory false   # more arguments for hatch-wizer

Builds a WAT module whose init grows its memory to `--mib` MiB and fills it (`dense`: every
byte non-zero, from an LCG, so nothing compresses or merges away; `sparse`: 20,000 bytes at
LCG-random addresses), runs `hatch-wizer --no-cache m.wasm -o out.wasm` in a child process and
prints its peak RSS (GNU time's %M, else the child's ru_maxrss), the output's size and sha256
(to check that a change leaves outputs byte-identical) and the ratio peak / output.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

PAGE = 1 << 16


def dense_wat(mib: int) -> str:
    """Every byte of a memory of `mib` MiB written non-zero, 4 bytes per LCG step."""
    pages = mib * (1 << 20) // PAGE
    return f"""(module
  (memory (export "memory") 1)
  (func (export "wizer-initialize")
    (local $p i32) (local $x i32)
    (drop (memory.grow (i32.const {pages - 1})))
    (local.set $x (i32.const 0x1234567))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (i32.store (local.get $p) (i32.or (local.get $x) (i32.const 0x01010101)))
      (br_if $next (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4)))
                             (i32.const {pages * PAGE})))))
  (func (export "run") (result i32)
    (i32.add (i32.load (i32.const 0x123450)) (i32.load (i32.const {pages * PAGE - 4})))))
"""


def sparse_wat(mib: int) -> str:
    """20,000 single bytes at LCG-random addresses of a memory of `mib` MiB (a power of 2)."""
    pages = mib * (1 << 20) // PAGE
    return f"""(module
  (memory (export "memory") 1)
  (func (export "wizer-initialize")
    (local $i i32) (local $x i32)
    (drop (memory.grow (i32.const {pages - 1})))
    (local.set $x (i32.const 0x2545f491))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (i32.store8 (i32.and (i32.shr_u (local.get $x) (i32.const 4)) (i32.const {pages * PAGE - 1}))
                  (i32.or (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                             (i32.const 20000)))))
  (func (export "run") (result i32) (memory.size)))
"""


def peak_rss(cmd: list[str], work: Path) -> tuple[int, float]:
    """The command's peak RSS in bytes and its wall time; it must succeed.

    GNU time forks from a small process: a child of this one would start its ru_maxrss at our
    own size."""
    gnu_time = Path("/usr/bin/time")
    rss_file = work / "rss"
    full = [str(gnu_time), "-f", "%M", "-o", str(rss_file), *cmd] if gnu_time.exists() else cmd
    started = time.perf_counter()
    subprocess.run(full, check=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if gnu_time.exists():
        return int(rss_file.read_text().split()[-1]) * 1024, wall
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="memory size in MiB (default 512)")
    parser.add_argument("--content", choices=("dense", "sparse"), default="dense")
    parser.add_argument("--runs", type=int, default=1, help="runs; the largest peak counts")
    args, extra = parser.parse_known_args()
    make = dense_wat if args.content == "dense" else sparse_wat
    hatch_wizer = shutil.which("hatch-wizer", path=str(Path(sys.executable).parent))
    with tempfile.TemporaryDirectory(prefix="peak-rss-") as tmp:
        work = Path(tmp)
        module, out = work / "m.wasm", work / "out.wasm"
        module.write_bytes(wasmtime.wat2wasm(make(args.mib)))
        cmd = [hatch_wizer or "hatch-wizer", "-q", "--no-cache", str(module), "-o", str(out)]
        cmd += [arg for arg in extra if arg != "--"]
        results = [peak_rss(cmd, work) for _ in range(args.runs)]
        peak, size = max(rss for rss, _ in results), out.stat().st_size
        with out.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    wall = min(w for _, w in results)
    print(
        f"{args.content} {args.mib} MiB: peak RSS {peak / 2**20:,.0f} MiB, output "
        f"{size:,} B ({size / 2**20:,.1f} MiB), peak / output {peak / size:.2f}, "
        f"wall {wall:.2f} s, sha256 {digest[:16]}"
    )


if __name__ == "__main__":
    main()
