"""What shipping NAME.cwasm buys, and what its baseline-CPU code costs (not part of CI).

    python -m benches.precompile [--runs N]

For QuickJS (the sample's qjs.wasm: the reactor with `qjs_init` as init; and the benchmark's
qjs workload, whose init also evaluates benches/workloads/prelude.js), wizened by hatch-wizer:

- fresh process to the first call, through `hatch_wizer.load_module`: wizened only (no .cwasm,
  so the .wasm is compiled) and wizened + precompiled (the .cwasm is loaded); and a process that
  only imports wasmtime, the floor;
- run time of a JS loop (arithmetic, object allocation, a sort) on the shipped code (for the
  CPU level of `CPU_LEVELS`) against code compiled for this machine's CPU (wasmtime's default,
  AVX2 and all);
- run time of a wasm SIMD kernel compiled for this machine's CPU, for the shipped CPU level, and
  for the architecture's bare baseline (no CPU features: SSE2 on x86-64).

Runs alternate between the variants, so drift on a busy machine hits them alike; medians.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import distribution, version
from pathlib import Path

import wasmtime

from benches.workloads import SOURCES, qjs_with_init
from hatch_wizer import WizenOptions, load_module, precompile, wizen
from hatch_wizer.engine.precompile import CPU_LEVELS, host_target

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_QJS = ROOT / "sample_project/src/sqlex/qjs.wasm"
FIRST_CALL = """\
import sys, wasmtime
from hatch_wizer import load_module
engine = wasmtime.Engine()
module = load_module(engine, sys.argv[1])
linker = wasmtime.Linker(engine)
linker.define_wasi()
store = wasmtime.Store(engine)
store.set_wasi(wasmtime.WasiConfig())
exports = linker.instantiate(store, module).exports(store)
print(exports["qjs_get_context"](store))
"""
FLOOR = "import wasmtime; wasmtime.Engine()"
JS_LOOP = (
    "(function () { let s = 0; for (let i = 0; i < 3000000; i++) s = (s + i * i) % 1000003;"
    " const o = []; for (let i = 0; i < 200000; i++) o.push({k: i, v: 'x' + i});"
    " o.sort((a, b) => b.k - a.k); return (s + o[5].k) | 0; })()"
)

# i32x4 multiplies, popcnt, swizzle and float rounding over 64 KiB, 300 times.
SIMD_KERNEL = """
(module (memory 2)
  (func (export "run") (param $n i32) (result i32)
    (local $i i32) (local $p i32) (local $v v128)
    (loop $outer
      (local.set $p (i32.const 0))
      (loop $inner
        (local.set $v (v128.load (local.get $p)))
        (local.set $v (i32x4.add (i32x4.mul (local.get $v) (v128.const i32x4 3 5 7 11))
                                 (i32x4.splat (local.get $i))))
        (local.set $v (v128.or (local.get $v) (i8x16.popcnt (local.get $v))))
        (local.set $v (i8x16.swizzle (local.get $v)
                                     (i8x16.splat (i32.and (local.get $p) (i32.const 15)))))
        (local.set $v (v128.xor (local.get $v)
          (i32x4.trunc_sat_f32x4_s (f32x4.floor (f32x4.convert_i32x4_s (local.get $v))))))
        (v128.store (local.get $p) (local.get $v))
        (br_if $inner (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 16)))
                                (i32.const 65536))))
      (br_if $outer (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                              (local.get $n))))
    (i32x4.extract_lane 0 (v128.load (i32.const 48)))))
"""


def fresh(code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def js_loop_seconds(engine: wasmtime.Engine, module: wasmtime.Module) -> float:
    """One run of JS_LOOP in a new instance of a wizened QuickJS."""
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    x = linker.instantiate(store, module).exports(store)
    context = x["qjs_get_context"](store)
    source = JS_LOOP.encode()
    buffer = x["malloc"](store, len(source) + 8)
    x["memory"].write(store, source + b"\0<b>\0", buffer)
    start = time.perf_counter()
    value = x["JS_Eval"](store, context, buffer, len(source), buffer + len(source) + 1, 0)
    elapsed = time.perf_counter() - start
    assert value == 1199712, value  # an int, not an exception
    return elapsed


def measure(name: str, wasm: bytes, runs: int, tmp: Path) -> list[str]:
    t = time.perf_counter()
    options = WizenOptions(allow_wasi=True, reproducible=True, inherit_stdio=False, cache=False)
    wizened = wizen(wasm, options)
    wizen_s = time.perf_counter() - t
    t = time.perf_counter()
    cwasm = precompile(wizened, WizenOptions(cache=False))
    precompile_s = time.perf_counter() - t
    shipped = tmp / name / "qjs.wasm"  # with its .cwasm
    compiled = tmp / name / "plain" / "qjs.wasm"  # without
    compiled.parent.mkdir(parents=True)
    shipped.write_bytes(wizened)
    shipped.with_suffix(".cwasm").write_bytes(cwasm.data)
    shutil.copyfile(shipped, compiled)
    fallbacks: list[str] = []
    load_module(wasmtime.Engine(), shipped, on_fallback=fallbacks.append)
    assert not fallbacks, fallbacks

    first: dict[str, list[float]] = {"floor": [], "wizened": [], "precompiled": []}
    for _ in range(runs):
        first["floor"].append(fresh(FLOOR))
        first["wizened"].append(fresh(FIRST_CALL, str(compiled)))
        first["precompiled"].append(fresh(FIRST_CALL, str(shipped)))

    engine = wasmtime.Engine()
    variants = {
        "native": wasmtime.Module(engine, wizened),  # compiled for this CPU
        "level": load_module(engine, shipped),
        "bare": compiled_for(engine, wizened, ()),
    }
    loop: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for variant, module in variants.items():
            loop[variant].append(js_loop_seconds(engine, module))

    ms = {k: 1000 * statistics.median(v) for k, v in (first | loop).items()}
    return [
        f"| {name} | {len(wizened) / 2**20:.1f} MiB | {len(cwasm.data) / 2**20:.1f} MiB"
        f" | {wizen_s:.2f} s | {precompile_s:.2f} s | {ms['floor']:.0f} ms"
        f" | {ms['wizened']:.0f} ms | **{ms['precompiled']:.0f} ms**"
        f" | {ms['native']:.0f} ms | {ms['level']:.0f} ms | {ms['bare']:.0f} ms |"
    ]


def compiled_for(engine: wasmtime.Engine, wasm: bytes, flags: tuple[str, ...]) -> wasmtime.Module:
    """`wasm` compiled for this OS and architecture with only the CPU features `flags`."""
    config = wasmtime.Config()
    config.target = host_target()
    for flag in flags:
        config.cranelift_flag_enable(flag)
    artifact = wasmtime.Module(wasmtime.Engine(config), wasm).serialize()
    return wasmtime.Module.deserialize(engine, artifact)


def simd_row(runs: int) -> str:
    wasm = wasmtime.wat2wasm(SIMD_KERNEL)
    level, features = CPU_LEVELS.get(host_target().split("-")[0], ("baseline", ()))
    engine = wasmtime.Engine()
    variants = {
        "native": wasmtime.Module(engine, wasm),
        level: compiled_for(engine, wasm, features),
        "bare": compiled_for(engine, wasm, ()),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    results = set()
    for _ in range(runs):
        for name, module in variants.items():
            store = wasmtime.Store(engine)
            run = wasmtime.Instance(store, module, []).exports(store)["run"]
            start = time.perf_counter()
            results.add(run(store, 300))
            times[name].append(time.perf_counter() - start)
    assert len(results) == 1, results
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    return (
        f"wasm SIMD kernel: {ms['native']:.0f} ms for this CPU, {ms[level]:.0f} ms for"
        f" {level} (shipped), {ms['bare']:.0f} ms for the bare baseline"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    dist = distribution("qjs-wasi-reactor.wasm")
    reactor = Path(str(dist.locate_file("qjs-wasi-reactor/qjs-wasi-reactor.wasm")))
    with tempfile.TemporaryDirectory(prefix="hatch-wizer-bench-") as name:
        tmp = Path(name)
        workload = qjs_with_init(reactor, SOURCES / "prelude.js", tmp / "qjs-prelude.wasm")
        rows = [
            "| module | wizened | .cwasm | wizen | precompile | python + wasmtime"
            " | first call, wizened | first call, + .cwasm | JS loop, this CPU"
            " | JS loop, shipped level | JS loop, bare baseline |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            *measure("sample qjs.wasm", SAMPLE_QJS.read_bytes(), args.runs, tmp),
            *measure("qjs + prelude.js", workload.read_bytes(), args.runs, tmp),
        ]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    machine = platform.machine()
    print(f"wasmtime-py {version('wasmtime')}, {machine}, commit {commit}, median of {args.runs}")
    print("\n".join(rows))
    print(simd_row(args.runs))


if __name__ == "__main__":
    main()
