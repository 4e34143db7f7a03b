"""The memory scan alone: how fast the scanner that instrumentation adds finds non-zero runs.

    python -m benches.scan_speed

Prints GB/s over a 256 MiB memory for three contents (all zero, 20,000 scattered bytes, every
byte non-zero), compiled by Cranelift and by Winch, median of 5 scans. The pages are written
first, so the figure is the scan, not the kernel's first-touch page faults.
"""

from __future__ import annotations

import random
import statistics
import time

import wasmtime

from hatch_wizer import instrument
from hatch_wizer.engine.runtime import Runtime
from hatch_wizer.module.layout import data_segment_overhead
from hatch_wizer.options import WizenOptions

SIZE = 256 << 20


def _contents() -> dict[str, bytes]:
    sparse = bytearray(SIZE)
    rng = random.Random(1)
    for _ in range(20_000):
        sparse[rng.randrange(SIZE)] = 1 + rng.randrange(255)
    return {"zero": bytes(SIZE), "sparse": bytes(sparse), "dense": b"\x01" * SIZE}


def measure(compiler: str, runs: int = 5) -> dict[str, float]:
    """GB/s of one scan call over the whole memory, per content."""
    wat = f'(module (memory (export "m") {SIZE >> 16}) (func (export "wizer-initialize")))'
    options = WizenOptions(cache=False, compiler=compiler)
    context, instrumented = instrument(bytes(wasmtime.wat2wasm(wat)), options)
    runtime = Runtime(options)
    state = runtime.initialize(context, runtime.compile(instrumented))
    memory = state.export("m")
    split = data_segment_overhead(0, SIZE, 1, False)
    speeds = {}
    for name, data in _contents().items():
        memory.write(state.store, data, 0)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            state.scan_runs(context.scanners[0], 0, SIZE, split)
            times.append(time.perf_counter() - started)
        speeds[name] = SIZE / statistics.median(times) / 1e9
    return speeds


if __name__ == "__main__":
    for compiler in ("cranelift", "winch"):
        speeds = measure(compiler)
        print(f"{compiler}: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in speeds.items()))
