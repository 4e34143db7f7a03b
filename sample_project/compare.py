"""Check that the installed (wizened) sqlex answers like the original module, and time start-up.

Usage: python compare.py ORIGINAL.wasm   (run with the sqlex wheel installed)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

import sqlex
import wasmtime

T = TypeVar("T")

QUERIES = [
    "SELECT id, name FROM users WHERE age >= 21 AND name ILIKE 'a%' ORDER BY id LIMIT 10;",
    'insert into t(a, "b""c") values (?1, :name, x\'ff\', 0x1F, .5e-3) -- trailing\n',
    "/* block\ncomment */ WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r) "
    "SELECT * FROM r WHERE n <> 3 || 'x' :: text;",
    "update `weird table` set v = v * 2 where k in (1, 2, 3) returning *; #",
]
COLD = "import sqlex, sys; sqlex.Lexer(sys.argv[1]).tokenize('select 1')"


def phases(path: Path) -> tuple[float, float, float]:
    """Seconds to compile, instantiate and initialize the module, as `sqlex.Lexer` does."""
    data = path.read_bytes()
    t0 = time.perf_counter()
    module = wasmtime.Module(sqlex._ENGINE, data)
    t1 = time.perf_counter()
    store = wasmtime.Store(sqlex._ENGINE)
    exports = wasmtime.Instance(store, module, []).exports(store)
    t2 = time.perf_counter()
    if sqlex.INIT_EXPORT in exports:
        exports[sqlex.INIT_EXPORT](store)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def cold_start(path: Path) -> float:
    """Seconds for a fresh interpreter to import sqlex, load the module and answer once."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD, str(path)], check=True)
    return time.perf_counter() - start


def medians(f: Callable[[Path], T], paths: tuple[Path, Path], runs: int) -> list[list[T]]:
    """Run `f` on both paths alternately, so drift on a busy machine hits both alike."""
    results: list[list[T]] = [[], []]
    for _ in range(runs):
        for i, path in enumerate(paths):
            results[i].append(f(path))
    return results


def main() -> None:
    original = Path(sys.argv[1])
    installed = Path(str(files("sqlex") / "sqlex.wasm"))
    before, after = sqlex.Lexer(original), sqlex.Lexer(installed)
    for label, path, lexer in [("original", original, before), ("installed", installed, after)]:
        size = path.stat().st_size
        print(f"{label:9}: {path} ({size} bytes), preinitialized={lexer.preinitialized}")
    for sql in QUERIES:
        assert before.tokenize(sql) == after.tokenize(sql), sql
    print(f"same answers on {len(QUERIES)} queries; first one:")
    print("  ", " ".join(f"{k}:{t!r}" for k, t in after.tokenize(QUERIES[0]) if k != "space"))
    ms = [
        [1000 * statistics.median(column) for column in zip(*runs)]
        for runs in medians(phases, (original, installed), 21)
    ]
    print("median ms       compile  instantiate     init   start-up (inst+init)   total")
    for label, (c, i, n) in zip(["original", "wizened"], ms):
        print(f"{label:14} {c:8.1f} {i:12.1f} {n:8.1f} {i + n:22.1f} {c + i + n:7.1f}")
    (_, i0, n0), (_, i1, n1) = ms
    print(
        f"instantiate + init: {(i0 + n0) / (i1 + n1):.0f}x faster; compile + instantiate + init:"
        f" {sum(ms[0]) / sum(ms[1]):.1f}x faster"
    )
    cold = medians(cold_start, (original, installed), 9)
    a, b = (1000 * statistics.median(c) for c in cold)
    print(f"fresh process to first answer: original {a:.0f} ms, wizened {b:.0f} ms")


if __name__ == "__main__":
    main()
