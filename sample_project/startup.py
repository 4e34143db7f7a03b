"""Fresh-process time to the first JS answer, three ways: the original QuickJS module (compile,
then init), the wizened one (compile), and wizened + precompiled (load the .cwasm).

Usage: python startup.py ORIGINAL_QJS.wasm   (run with the sqlex wheel installed)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

FIRST = "import sys; from sqlex.js import JS; print(JS(sys.argv[1]).evaluate('6 * 7'))"
RUNS = 7


def first_answer(path: Path) -> float:
    """Seconds for a fresh interpreter to import sqlex.js, load the module and answer once."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FIRST, str(path)], check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    assert out.stdout.strip() == b"42", out
    return elapsed


def main() -> None:
    original = Path(sys.argv[1])
    installed = Path(str(files("sqlex") / "qjs.wasm"))
    assert installed.with_suffix(".cwasm").is_file(), "the wheel has no qjs.cwasm"
    with tempfile.TemporaryDirectory() as tmp:
        wizened = Path(tmp, "qjs.wasm")  # the same module with no .cwasm beside it
        shutil.copyfile(installed, wizened)
        ways = [("original", original), ("wizened", wizened), ("wizened + precompiled", installed)]
        times: dict[str, list[float]] = {label: [] for label, _ in ways}
        for _ in range(RUNS):  # alternately, so drift on a busy machine hits all alike
            for label, path in ways:
                times[label].append(first_answer(path))
    print(f"fresh process to the first JS answer (median of {RUNS}):")
    for label, path in ways:
        print(f"  {label:22} {1000 * statistics.median(times[label]):7.0f} ms  ({path.name})")


if __name__ == "__main__":
    main()
