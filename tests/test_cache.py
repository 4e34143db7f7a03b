"""The result cache: an unchanged module with unchanged options is reused, anything else runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hatch_wizer import Preopen, WizenOptions, wizen
from hatch_wizer.cache import store
from hatch_wizer.wasm.parse import parse_module
from tests.harness import observe, wasm_of

WAT = """(module
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set $g (i32.const 42))))"""

# Init reads the first byte of /data/x (WASI) into a global, so preopened files decide the output.
READS_A_FILE = """(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (data (i32.const 0) "x")
  (func (export "wizer-initialize")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
                      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
    (i32.store (i32.const 32) (i32.const 64))
    (i32.store (i32.const 36) (i32.const 1))
    (drop (call $read (i32.load (i32.const 16)) (i32.const 32) (i32.const 1) (i32.const 48)))
    (global.set $g (i32.load8_u (i32.const 64)))
    (i32.store (i32.const 64) (i32.const 0))))"""


def wizen_logged(wasm: bytes, options: WizenOptions) -> tuple[bytes, list[str]]:
    lines: list[str] = []
    return wizen(wasm, options, report=lines.append), lines


def ran_init(lines: list[str]) -> bool:
    return any(line.startswith("init:") for line in lines)


def test_unchanged_module_and_options_reuse_the_output() -> None:
    first, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert ran_init(lines)
    again, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert again == first
    assert not ran_init(lines)
    assert any("reused" in line for line in lines)


def test_options_that_change_the_output_are_in_the_key() -> None:
    wizen(wasm_of(WAT), WizenOptions())
    out, lines = wizen_logged(wasm_of(WAT), WizenOptions(keep_init_func=True))
    assert ran_init(lines)
    assert "wizer-initialize" in [e.name for e in parse_module(out).exports]
    # How the output is made is not in the key.
    _, lines = wizen_logged(wasm_of(WAT), WizenOptions(compiler="cranelift", init_timeout=5))
    assert not ran_init(lines)


def test_preopened_files_are_in_the_key(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("A")
    options = WizenOptions(allow_wasi=True, preopens=(Preopen("/data", tmp_path),))
    assert observe(wizen(wasm_of(READS_A_FILE), options), []).globals["g"] == ord("A")
    (tmp_path / "x").write_text("B")
    out, lines = wizen_logged(wasm_of(READS_A_FILE), options)
    assert ran_init(lines)
    assert observe(out, []).globals["g"] == ord("B")


@pytest.mark.parametrize(
    "options",
    [
        WizenOptions(cache=False),
        WizenOptions(check_determinism=True),
        WizenOptions(allow_wasi=True, preopens=(Preopen("/w", Path(), writable=True),)),
    ],
    ids=["no-cache", "check-determinism", "writable-preopen"],
)
def test_runs_that_must_happen_are_never_reused(options: WizenOptions) -> None:
    wizen(wasm_of(WAT), options)
    _, lines = wizen_logged(wasm_of(WAT), options)
    assert ran_init(lines)


def test_an_unusable_cache_directory_is_a_miss_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(tmp_path / "file"))
    first = wizen(wasm_of(WAT))
    out, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert out == first
    assert ran_init(lines)


def finish_cache_writes() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("hatch-wizer cache write"):
            thread.join()


def test_least_recently_used_results_go_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(tmp_path))
    for n in range(3):
        wizen(wasm_of(WAT.replace("42", str(n))))
    finish_cache_writes()
    entries = list((tmp_path / "results").glob("*.wasm"))
    assert len(entries) == 3
    monkeypatch.setattr(store, "SIZE_LIMIT", sum(p.stat().st_size for p in entries) - 1)
    wizen(wasm_of(WAT.replace("42", "0")))  # a hit makes the first the most recently used
    wizen(wasm_of(WAT.replace("42", "3")))
    finish_cache_writes()
    assert len(list((tmp_path / "results").glob("*.wasm"))) == 2
    _, lines = wizen_logged(wasm_of(WAT.replace("42", "0")), WizenOptions())
    assert not ran_init(lines)
    _, lines = wizen_logged(wasm_of(WAT.replace("42", "1")), WizenOptions())
    assert ran_init(lines)
