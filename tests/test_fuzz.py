"""Differential fuzzing: random valid modules from `wasm-tools smith`, each given an init export
that calls into them, must behave after wizening exactly like the original after init.

Compared: every exported function's results or trap (called in order, twice, with fixed
arguments), every exported global's raw bits and every byte of every memory (all are exported:
`--export-everything`), before and after those calls. Where the Rust Wizer is installed, it must
accept what we accept (except where we are knowingly more permissive) and its output must behave
like ours.

CI runs a short, fixed set of cases; `HATCH_WIZER_FUZZ_CASES=2000` runs more,
`HATCH_WIZER_FUZZ_SEED` picks another set, `HATCH_WIZER_FUZZ_REPORT=file.json` saves the counts.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from hatch_wizer import WizenOptions, WizerError, wizen
from hatch_wizer.engine.runtime import MAX_TABLE_ELEMENTS
from hatch_wizer.engine.wasmtime_api import read_global
from hatch_wizer.wasm.parse import ExternKind, Module, parse_module
from tests.harness import trap_unknown_imports, user_engine

CASES = int(os.environ.get("HATCH_WIZER_FUZZ_CASES", "300"))
SEED = int(os.environ.get("HATCH_WIZER_FUZZ_SEED", "0"))
REPORT = os.environ.get("HATCH_WIZER_FUZZ_REPORT")
INIT = "wizer-initialize"
ROOT = Path(__file__).resolve().parent.parent
RUST_WIZER_PATHS = [
    os.environ.get("HATCH_WIZER_RUST_WIZER", ""),
    str(ROOT / "benches/.work/npm/node_modules/@bytecodealliance/wizer-linux-x64/wizer"),
]
# Where the Rust Wizer is knowingly stricter than we are, by its error message.
RUST_STRICTER = {
    "table mutation, segment drops": re.compile(
        r"unsupported `(table\.(set|grow|fill|copy|init)|elem\.drop|data\.drop)` instruction"
    ),
    "mutable reference globals": re.compile(
        r"unsupported mutable global containing a reference type"
    ),
    # It leaves the exception-handling proposal off; we enable every proposal wasmtime runs.
    "proposal off in the Rust Wizer": re.compile(
        r"proposal not enabled|not supported without the \S+ handling feature"
        r"|exceptions support is not enabled"
    ),
}
# What we knowingly cannot snapshot, by our error message (the Rust Wizer rejects it too).
OUR_LIMITS = re.compile(r"mutable global \d+ has reference type \(a typed or GC reference\)")
NUMERIC = {"i32", "i64", "f32", "f64"}
NULLABLE = {"funcref", "externref"}

# Generated modules: small memories with a maximum (so growth stays small), termination ensured
# by a fuel global, no proposals our engine leaves off by default.
SMITH_BASE = [
    "--ensure-termination",
    "--export-everything=true",
    "--max-memories=2",
    "--max-memory32-bytes=131072",
    "--max-memory64-bytes=131072",
    "--memory-max-size-required=true",
    "--max-table-elements=40",
    "--max-tables=2",
    "--max-funcs=10",
    "--max-globals=10",
    "--max-data-segments=6",
    "--max-element-segments=4",
    "--max-type-size=30",
    "--gc-enabled=false",
    "--threads-enabled=false",
    "--shared-everything-threads-enabled=false",
    "--custom-page-sizes-enabled=false",
    "--custom-descriptors-enabled=false",
    "--wide-arithmetic-enabled=false",
    "--compact-imports-enabled=false",
]
IMPORTS_WAT = """(module
  (import "env" "f" (func (param i32) (result i32)))
  (import "env" "g" (func))
  (import "host" "h" (func (param i64 f64) (result f32))))"""


def wasm_tools() -> str | None:
    found = shutil.which("wasm-tools", path=str(Path(sys.executable).parent))
    return found or shutil.which("wasm-tools")


def rust_wizer() -> str | None:
    for path in RUST_WIZER_PATHS:
        if path and os.access(path, os.X_OK):
            return path
    return None


pytestmark = pytest.mark.skipif(wasm_tools() is None, reason="wasm-tools is not installed")


# --- generating cases ------------------------------------------------------------------------------


@dataclass
class Case:
    number: int
    wasm: bytes
    flags: list[str]


def smith_flags(rng: random.Random, imports: Path) -> list[str]:
    flags = list(SMITH_BASE)
    flags.append(f"--fuel={rng.choice([50, 300, 2000])}")
    for feature in ("memory64", "tail-call", "relaxed-simd", "exceptions", "multi-value"):
        flags.append(f"--{feature}-enabled={str(rng.random() < 0.3).lower()}")
    flags.append(f"--canonicalize-nans={str(rng.random() < 0.5).lower()}")
    flags.append(f"--disallow-traps={str(rng.random() < 0.5).lower()}")
    if rng.random() < 0.25:
        flags.append(f"--available-imports={imports}")
    else:
        flags.append("--max-imports=0")
    return flags


def generate(number: int, work: Path) -> Case | None:
    rng = random.Random(f"{SEED}:{number}")
    imports = work / "imports.wasm"
    if not imports.exists():
        imports.write_bytes(bytes(wasmtime.wat2wasm(IMPORTS_WAT)))
    flags = smith_flags(rng, imports)
    seed = rng.randbytes(rng.randint(32, 3000))
    smith = subprocess.run(
        [str(wasm_tools()), "smith", *flags, "-t"], input=seed, capture_output=True, timeout=60
    )
    if smith.returncode != 0:
        return None  # smith could not build a module from these bytes (exit 2); try the next
    text = smith.stdout.decode()
    wasm = bytes(wasmtime.wat2wasm(text))
    wasmtime.Module.validate(ENGINE, wasm)  # smith must only use what the engine runs
    module = parse_module(wasm)
    wat = add_init(text, module, rng)
    return Case(number, bytes(wasmtime.wat2wasm(wat)), flags)


def add_init(text: str, module: Module, rng: random.Random) -> str:
    """Append an init export that calls up to four of the module's functions."""
    callable_ = [
        (index, t)
        for index, t in enumerate(module.func_types)
        if (ty := module.types[t]) is not None and all(p in NUMERIC | NULLABLE for p in ty.params)
    ]
    body = []
    for index, t in rng.sample(callable_, min(len(callable_), rng.randint(1, 4))):
        ty = module.types[t]
        assert ty is not None
        args = " ".join(constant(p, rng) for p in ty.params)
        drops = " drop" * len(ty.results)
        body.append(f"{args} call {index}{drops}")
    init = f'(func (export "{INIT}") {" ".join(body)})'
    end = text.rstrip().rindex(")")
    return text[:end] + init + ")\n"


def constant(valtype: str, rng: random.Random) -> str:
    if valtype in NULLABLE:
        return f"ref.null {valtype[:-3]}"
    value = rng.choice([0, 1, 7, -1, 65535, 65536, 1 << 31, rng.getrandbits(32)])
    if valtype.startswith("f"):
        return f"{valtype}.const {value}"
    return f"{valtype}.const {value & ((1 << int(valtype[1:])) - 1)}"


# --- observing behaviour -----------------------------------------------------------------------------


ENGINE = user_engine(fuel=True)  # generated start functions can call imports that loop back


def args_for(module: Module, func: int) -> tuple[Any, ...] | None:
    ty = module.types[module.func_types[func]]
    if ty is None or not all(p in NUMERIC | NULLABLE for p in ty.params):
        return None  # v128 parameters abort wasmtime-py; exotic references cannot be made
    values: dict[str, Any] = {"i32": 7, "i64": -3, "f32": 1.5, "f64": -0.25}
    return tuple(values.get(p) for p in ty.params)


def normal(value: Any) -> Any:
    if isinstance(value, float):
        return ("float", struct.pack("<d", value).hex())
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, wasmtime.Func):
        return "func"
    if isinstance(value, wasmtime.Val):
        return ("val", value.value is None)
    return value


def global_bits(store: wasmtime.Store, g: Any) -> Any:
    kind, value = read_global(store, g)
    if kind == 4:  # v128
        return value.to_bytes(16, "little").hex()
    if kind < 4:
        return value
    return ("ref", kind)  # identity is not comparable across instances


def state(store: wasmtime.Store, exports: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in exports.items():
        if isinstance(item, wasmtime.Global):
            out[name] = global_bits(store, item)
        elif isinstance(item, wasmtime.Memory):
            out[name] = bytes(item.read(store))
        elif isinstance(item, wasmtime.Table):
            out[name] = ("table", item.size(store))
    return out


def outcome(run: Any) -> Any:
    try:
        return ("ok", normal(run()))
    except wasmtime.Trap as e:
        return ("trap", str(e.trap_code))
    except wasmtime.WasmtimeError as e:
        return ("error", str(e).strip().splitlines()[-1].strip())


def observe(wasm: bytes, init: list[str]) -> list[Any]:
    """What a user of `wasm` sees after calling `init`: state, call results, state again."""
    module = parse_module(wasm)
    store = wasmtime.Store(ENGINE)
    store.set_fuel(10_000_000)
    store.set_limits(table_elements=MAX_TABLE_ELEMENTS)  # as during init: huge grows fail
    linker = wasmtime.Linker(ENGINE)
    compiled = wasmtime.Module(ENGINE, wasm)
    trap_unknown_imports(linker, compiled)
    made: list[wasmtime.Instance] = []
    started = outcome(lambda: made.append(linker.instantiate(store, compiled)))
    if started[0] != "ok":
        return [("instantiate", started)]
    instance = made[0]
    exports = dict(instance.exports(store))
    seen: list[Any] = []
    for name in init:
        seen.append((name, outcome(lambda name=name: exports[name](store))))
    seen.append(state(store, exports))
    funcs = [e for e in module.exports if e.kind == ExternKind.FUNC and e.name != INIT]
    for _ in range(2):
        for export in funcs:
            args = args_for(module, export.index)
            if args is not None:
                call = exports[export.name]
                seen.append((export.name, outcome(lambda call=call, args=args: call(store, *args))))
    seen.append(state(store, exports))
    return seen


# --- the differential check --------------------------------------------------------------------------


@dataclass
class Tally:
    cases: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    rust: collections.Counter[str] = field(default_factory=collections.Counter)
    mismatches: list[str] = field(default_factory=list)

    def mismatch(self, case: Case, what: str, work: Path) -> None:
        kept = work / f"mismatch-{case.number}.wasm"
        kept.write_bytes(case.wasm)
        self.mismatches.append(f"case {case.number} ({kept}): {what}")


def check(case: Case, tally: Tally, work: Path, rust: str | None) -> None:
    tally.cases += 1
    reference = observe(case.wasm, [INIT])
    init_ok = reference[0][0] == INIT and reference[0][1][0] == "ok"
    ours: bytes | None = None
    try:
        ours = wizen(case.wasm, WizenOptions(cache=False, init_timeout=60))
    except WizerError as e:
        message = str(e)
        if init_ok and OUR_LIMITS.search(message):
            tally.outcomes["init succeeds, we reject a known limitation"] += 1
        elif init_ok:
            tally.mismatch(case, f"we reject a module whose init succeeds: {message}", work)
            return
        else:
            tally.outcomes["init fails, both reject"] += 1
    except Exception as e:  # a crash: exactly what this test is for
        tally.mismatch(case, f"wizen raised {type(e).__name__}: {e}", work)
        return
    if ours is not None:
        if not init_ok:
            tally.mismatch(case, f"we accept a module whose init fails: {reference[:1]}", work)
            return
        actual = observe(ours, [])
        if actual != reference[1:]:
            tally.mismatch(case, f"behaviour differs: {first_difference(reference[1:], actual)}", work)
            return
        tally.outcomes["wizened, same behaviour"] += 1
    if rust is not None:
        compare_rust(case, ours, tally, work, rust)


def compare_rust(case: Case, ours: bytes | None, tally: Tally, work: Path, rust: str) -> None:
    source = work / "case.wasm"
    source.write_bytes(case.wasm)
    target = work / "rust.wasm"
    target.unlink(missing_ok=True)
    result = subprocess.run(
        [rust, str(source), "-o", str(target), "-f", INIT],
        capture_output=True,
        timeout=120,
        env={**os.environ, "RUST_BACKTRACE": "0"},
    )
    error = result.stderr.decode(errors="replace").strip()
    if result.returncode == 0 and ours is not None:
        if observe(target.read_bytes(), []) != observe(ours, []):
            tally.mismatch(case, "the Rust Wizer's output behaves differently from ours", work)
            return
        tally.rust["both accept, same behaviour"] += 1
    elif result.returncode == 0:
        tally.mismatch(case, "the Rust Wizer accepts what we reject", work)
    elif ours is None:
        tally.rust["both reject"] += 1
    elif stricter := [k for k, pattern in RUST_STRICTER.items() if pattern.search(error)]:
        tally.rust[f"only we accept: {stricter[0]}"] += 1
    else:
        tally.mismatch(case, f"the Rust Wizer rejects what we accept: {error[-300:]}", work)


def first_difference(expected: list[Any], actual: list[Any]) -> str:
    for i, (e, a) in enumerate(zip(expected, actual)):
        if e != a:
            if isinstance(e, dict) and isinstance(a, dict):
                keys = [k for k in e.keys() | a.keys() if e.get(k) != a.get(k)]
                return f"step {i}: state of {keys[:5]}"
            return f"step {i}: expected {str(e)[:200]}, got {str(a)[:200]}"
    return f"{len(expected)} steps expected, {len(actual)} seen"


@pytest.fixture
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hatch-wizer-fuzz-") as d:
        yield Path(d)


def test_wizened_modules_behave_like_the_original(work: Path) -> None:
    rust = rust_wizer()
    tally = Tally()
    number = 0
    while tally.cases < CASES:
        case = generate(number, work)
        number += 1
        if case is not None:
            check(case, tally, work, rust)
            if tally.cases % 250 == 0:
                print(f"fuzz: {tally.cases} cases, {len(tally.mismatches)} mismatches", flush=True)
    summary = {
        "cases": tally.cases,
        "seed": SEED,
        "outcomes": dict(tally.outcomes),
        "rust_wizer": dict(tally.rust) if rust else "not installed",
        "mismatches": len(tally.mismatches),
    }
    print(json.dumps(summary))
    if REPORT:
        Path(REPORT).write_text(json.dumps({**summary, "details": tally.mismatches}, indent=1))
    assert not tally.mismatches, "\n".join(tally.mismatches[:20])


def test_null_gc_references_in_tables_are_snapshotted() -> None:
    # Found by this fuzzer: null exnref and anyref table entries counted as live GC references.
    from tests.harness import assert_same_behaviour

    assert_same_behaviour(
        """(module
          (table $x (export "x") 3 exnref)
          (table $a (export "a") 2 anyref)
          (global $g (export "g") (mut i32) (i32.const 0))
          (func (export "wizer-initialize") (global.set $g (i32.const 1)))
          (func (export "null_x") (result i32) (ref.is_null (table.get $x (i32.const 2))))
          (func (export "null_a") (result i32) (ref.is_null (table.get $a (i32.const 1)))))""",
        [("null_x", ()), ("null_a", ())],
        WizenOptions(cache=False),
    )
