"""The same 40 MiB heap wizened as a core module and as a component: the component's state is
read through accessors (latin1 windows of non-zero 4 KiB units), so its snapshot must stay
within 2x the core module's. Run: python -m benches.component_heap [repetitions]."""

from __future__ import annotations

import statistics
import sys
import time

import wasmtime

from hatch_wizer import WizenOptions, wizen

# A heap-like image: 40 MiB where the first 88 bytes of every 256 are pseudo-random.
CORE = """
    (memory (export "memory") 16)
    (global $seed (mut i32) (i32.const 12345))
    (func $rand (result i32)
      (global.set $seed
        (i32.add (i32.mul (global.get $seed) (i32.const 1103515245)) (i32.const 12345)))
      (i32.shr_u (global.get $seed) (i32.const 16)))
    (func $init (export "init")
      (local $i i32)
      (drop (memory.grow (i32.const 640)))
      (loop $l
        (if (i32.lt_u (i32.and (local.get $i) (i32.const 255)) (i32.const 88))
          (then (i32.store8 offset=1048576 (local.get $i) (call $rand))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 41943040)))))
"""


def inputs() -> dict[str, bytes]:
    module = f'(module {CORE} (export "wizer-initialize" (func $init)))'
    component = f"""(component
      (core module $m {CORE})
      (core instance $x (instantiate $m))
      (func (export "wizer-initialize") (canon lift (core func $x "init"))))"""
    return {
        "core module": bytes(wasmtime.wat2wasm(module)),
        "component": bytes(wasmtime.wat2wasm(component)),
    }


def main() -> None:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    medians = {}
    for label, wasm in inputs().items():
        times = []
        stages: list[str] = []
        for _ in range(repetitions):
            stages.clear()
            started = time.perf_counter()
            wizen(wasm, WizenOptions(), report=stages.append)
            times.append(time.perf_counter() - started)
        medians[label] = statistics.median(times)
        print(f"{label}: median {medians[label]:.2f} s ({'; '.join(stages)})")
    print(f"component / core module: {medians['component'] / medians['core module']:.2f}x")


if __name__ == "__main__":
    main()
