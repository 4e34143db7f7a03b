"""A real C program (tests/c/ctors.c: constructors, a hash map, a prime table) wizened end to end.

Every check compares the wizened module with the original run the Wizer way: instantiate,
call `wizer-initialize`, then query. tests/c/build.sh rebuilds tests/data/ctors.wasm.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import wasmtime

from hatch_wizer.options import WizenOptions

if TYPE_CHECKING:
    from collections.abc import Callable

DATA = Path(__file__).parent / "data"
C_DIR = Path(__file__).parent / "c"
CTORS_WASM = DATA / "ctors.wasm"

INIT = "wizer-initialize"
RESUME = "wizer.resume"
# Prime indices (the sieve keeps the 25,997 primes below 300,000) and element symbols
# packed little-endian into an i32; out-of-range and unknown ones return -1.
PRIME_INDICES = (0, 1, 2, 99, 9_999, 25_996, 25_997, -1)
SYMBOLS = ("H", "He", "Fe", "U", "Og", "Xx")


def pack_symbol(symbol: str) -> int:
    return int.from_bytes(symbol.encode().ljust(4, b"\0"), "little")


@dataclass
class Run:
    """One instance of a module, with WASI whose stdout goes to a file."""

    store: wasmtime.Store
    exports: Any
    stdout: Path

    def call(self, name: str, *args: int) -> Any:
        return self.exports[name](self.store, *args)

    def run_command(self, entry: str) -> str:
        try:
            self.call(entry)
        except wasmtime.ExitTrap as e:
            assert e.code == 0, f"{entry} exited with {e.code}"
        return self.stdout.read_text()


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@pytest.fixture
def instantiate(engine: wasmtime.Engine, tmp_path: Path) -> Callable[[bytes], Run]:
    counter = iter(range(1_000))

    def make(wasm: bytes) -> Run:
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        stdout = tmp_path / f"stdout-{next(counter)}.txt"
        wasi.stdout_file = str(stdout)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
        return Run(store, instance.exports(store), stdout)

    return make


@pytest.fixture(scope="module")
def original() -> bytes:
    return CTORS_WASM.read_bytes()


@pytest.fixture(scope="module")
def core() -> Any:
    return pytest.importorskip(
        "hatch_wizer.core", reason="hatch_wizer.core (the wizening engine) is not written yet"
    )


@pytest.fixture(scope="module")
def wizened(core: Any, original: bytes) -> bytes:
    return bytes(core.wizen(original, WizenOptions(renames=(("_start", RESUME),))))


def queries(run: Run) -> dict[str, int]:
    results = {f"lookup({i})": run.call("lookup", i) for i in PRIME_INDICES}
    results |= {f"weight({s})": run.call("weight", pack_symbol(s)) for s in SYMBOLS}
    for name in ("element_count", "ctor_runs", "init_runs", "checksum"):
        results[name] = run.call(name)
    return results


def export_names(engine: wasmtime.Engine, wasm: bytes) -> set[str]:
    return {e.name for e in wasmtime.Module(engine, wasm).exports}


def test_fixture_behaves_as_documented(instantiate: Callable[[bytes], Run], original: bytes):
    """Guards the fixture itself, so a failure below is the wizening's."""
    run = instantiate(original)
    assert run.call("element_count") == 0
    run.call(INIT)
    results = queries(run)
    assert results["lookup(0)"] == 2
    assert results["lookup(9999)"] == 104_729
    assert results["lookup(25996)"] == 299_993
    assert results["lookup(25997)"] == results["lookup(-1)"] == -1
    assert results["weight(Fe)"] == 55_845
    assert results["weight(Xx)"] == -1
    assert (results["element_count"], results["ctor_runs"], results["init_runs"]) == (92, 2, 1)


def test_queries_match_original_after_init(
    instantiate: Callable[[bytes], Run], original: bytes, wizened: bytes
):
    reference = instantiate(original)
    reference.call(INIT)
    assert queries(instantiate(wizened)) == queries(reference)


def test_renamed_start_skips_constructors_and_prints_the_same(
    instantiate: Callable[[bytes], Run], original: bytes, wizened: bytes
):
    reference = instantiate(original)
    reference.call(INIT)
    expected = reference.run_command(RESUME)
    assert expected.startswith("2 constructor calls, in order 1,2; init ran 1 time(s)\n")
    assert instantiate(wizened).run_command("_start") == expected
    # The un-wizened command prints the same, constructors and init running inside `main`.
    assert instantiate(original).run_command("_start") == expected


def test_init_export_removed_and_rename_applied(engine: wasmtime.Engine, wizened: bytes):
    names = export_names(engine, wizened)
    assert INIT not in names
    assert RESUME not in names
    assert {"_start", "memory", "lookup", "weight", "checksum"} <= names


def test_keep_init_func_keeps_the_export(core: Any, engine: wasmtime.Engine, original: bytes):
    out = core.wizen(original, WizenOptions(keep_init_func=True))
    assert {INIT, RESUME, "_start"} <= export_names(engine, bytes(out))


def test_init_state_is_in_the_data_and_memory_grew(
    engine: wasmtime.Engine, instantiate: Callable[[bytes], Run], original: bytes, wizened: bytes
):
    wasmtime.Module.validate(engine, wizened)
    (memory,) = [e for e in wasmtime.Module(engine, wizened).exports if e.name == "memory"]
    reference = instantiate(original)
    reference.call(INIT)
    live = reference.exports["memory"]
    # The sieve and the hash map need more than the 2 pages the program starts with.
    assert memory.type.limits.min == live.size(reference.store) > 2
    # The snapshot costs about what the non-zero bytes of memory do, not the whole memory;
    # short zero runs between them (the prime table's high bytes) are cheaper kept than split.
    # (The Rust Wizer 11's output is 445,880 bytes: 36,893 + 1.16 x 351,233 non-zero.)
    contents = live.read(reference.store)
    nonzero = len(contents) - contents.count(0)
    assert len(wizened) < len(original) + nonzero * 1.2


def test_wizening_is_deterministic(core: Any, original: bytes, wizened: bytes):
    again = core.wizen(original, WizenOptions(renames=(("_start", RESUME),)))
    assert bytes(again) == wizened


def test_wizening_with_wasi_allowed_gives_the_same_program(
    core: Any, instantiate: Callable[[bytes], Run], original: bytes, wizened: bytes
):
    out = bytes(core.wizen(original, WizenOptions(renames=(("_start", RESUME),), allow_wasi=True)))
    assert queries(instantiate(out)) == queries(instantiate(wizened))


def test_cli_writes_the_same_module(original: bytes, wizened: bytes, tmp_path: Path):
    pytest.importorskip("hatch_wizer.build.cli", reason="hatch_wizer.build.cli is not written yet")
    out = tmp_path / "out.wasm"
    argv = [str(CTORS_WASM), "-o", str(out), "-r", f"_start={RESUME}"]
    script = (
        "import sys\nfrom hatch_wizer.build.cli import entrypoint\n"
        f"sys.argv = ['hatch-wizer', *{argv!r}]\nsys.exit(entrypoint())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == wizened


@pytest.mark.slow
def test_fixture_rebuilds_byte_for_byte(tmp_path: Path):
    if shutil.which("clang") is None or not Path("/usr/lib/wasm32-wasi/libc.a").exists():
        pytest.skip("needs Debian's clang, lld and wasi-libc")
    out = tmp_path / "ctors.wasm"
    subprocess.run(["bash", str(C_DIR / "build.sh"), str(out)], check=True, capture_output=True)
    assert out.read_bytes() == CTORS_WASM.read_bytes()
