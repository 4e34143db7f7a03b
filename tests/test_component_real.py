"""A real component from a real toolchain: componentize-py (a Python app).

componentize-py is in the `test` extras, so CI runs this; it skips where the tool is missing.
The app imports decimal, fractions, json and statistics and its init builds a 20,001-entry
table. Measured on the 2-core dev box (shared with benchmarks, so +-30 %), componentize-py
0.25.1, wasmtime-py 50.0.1:

| | before | after |
|---|--:|--:|
| component (varies a little per build) | 18,747,601 B | 18,008,891 B |
| instantiate + first `lookup` (compiled) | 168-181 ms | 1.7-7.4 ms |

Wizening takes 8-11 s: validate 0.74 (instrumenting, with the table-write scan of
`barrier.py`), compile 6-9 (Cranelift, the instrumented component), init 0.21, snapshot 0.38,
check 0.41 (modules validated, the component compiled with stand-ins). The componentize-py
build takes 15 s; the whole test about 30 s, with wasmtime's cache cold or warm.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import component as wc

from hatch_wizer import WizenOptions, wizen

from .test_component import validate

pytestmark = pytest.mark.slow

WIT = """package local:app;

world app {
  export wizer-initialize: func();
  export lookup: func(word: string) -> string;
}
"""

# componentize-py only ships the modules imported while it builds (its own pre-init), so the
# imports are at the top; the init export then builds the data, which is what start-up saves.
APP = """import decimal
import fractions
import json
import statistics

import wit_world

TABLE = {}


def build():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    for i in range(20000):
        w = words[i % len(words)] + str(i)
        TABLE[w] = json.dumps({"n": i, "rev": w[::-1], "third": str(fractions.Fraction(i, 3))})
    TABLE["mean"] = str(statistics.mean(decimal.Decimal(i) for i in range(100)))


class WitWorld(wit_world.WitWorld):
    def wizer_initialize(self) -> None:
        build()

    def lookup(self, word: str) -> str:
        if not TABLE:
            build()
        return TABLE.get(word, "missing") + f" size={len(TABLE)}"
"""


def _start_and_call(
    engine: wasmtime.Engine, component: wc.Component, word: str
) -> tuple[Any, float]:
    started = time.perf_counter()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wc.Linker(engine)
    linker.add_wasip2()
    instance = linker.instantiate(store, component)
    func = instance.get_func(store, "lookup")
    assert func is not None
    result = func(store, word)
    func.post_return(store)
    return result, time.perf_counter() - started


def _componentize_py() -> str | None:
    """The tool installed beside this Python (the venv's bin dir), else on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    return str(beside) if beside.exists() else shutil.which("componentize-py")


def test_componentize_py_app(tmp_path: Path) -> None:
    tool = _componentize_py()
    if tool is None:
        pytest.skip("componentize-py is not installed")
    (tmp_path / "wit").mkdir()
    (tmp_path / "wit" / "app.wit").write_text(WIT)
    (tmp_path / "app.py").write_text(APP)
    subprocess.run(
        [tool, "-d", "wit", "-w", "app", "componentize", "app", "-o", "app.wasm"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    original = (tmp_path / "app.wasm").read_bytes()
    lines: list[str] = []
    started = time.perf_counter()
    options = WizenOptions(allow_wasi=True, reproducible=True)
    out = wizen(original, options, report=lines.append)
    print("\n".join(lines))
    print(
        f"wizened in {time.perf_counter() - started:.1f} s: {len(original):,} B -> {len(out):,} B"
    )
    validate(out, tmp_path)
    # Its runtime seeds hash maps from wasi:random during init: reproducible, a second build
    # (not the cached result) gives the same bytes.
    assert wizen(original, options._replace(cache=False)) == out

    config = wasmtime.Config()
    config.cache = True
    engine = wasmtime.Engine(config)
    before = wc.Component(engine, original)
    after = wc.Component(engine, out)
    assert "wizer-initialize" not in after.type.exports(engine)
    for word in ("kappa19999", "mean", "nothing"):
        expected, slow = _start_and_call(engine, before, word)
        actual, fast = _start_and_call(engine, after, word)
        assert actual == expected
        print(f"{word}: start + first call {slow * 1000:.1f} ms -> {fast * 1000:.1f} ms")
        assert fast < slow
