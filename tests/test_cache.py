"""The result cache: an unchanged module with unchanged options is reused, anything else runs."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from hatch_wizer import Preopen, WizenOptions, wizen
from hatch_wizer.cache import key, result_key, store
from hatch_wizer.engine import inputs
from hatch_wizer.options import Features
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


def test_another_wasmtime_release_runs_init_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # A result that one engine made is not reused under another: an upgrade that fixes a
    # miscompile must not ship what the old code computed.
    wizen(wasm_of(WAT), WizenOptions())
    monkeypatch.setattr(key, "_engine_release", lambda: "wasmtime-0.0.1")
    _, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert ran_init(lines)
    _, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert not ran_init(lines)


def test_the_wasmtime_release_is_read_without_importing_it(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert key._engine_release() == f"wasmtime-{version('wasmtime')}"
    probe = "import sys; from hatch_wizer.cache import key; key._engine_release(); "
    probe += "print('wasmtime' in sys.modules, 'importlib.metadata' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert found.stdout.split() == ["False", "False"], found.stderr
    # A copy without installed metadata (vendored) is known by its files.
    package = tmp_path / "site" / "wasmtime"
    package.mkdir(parents=True)
    (package / "_bindings.py").write_text("one")
    vendored = key._release_of(package)
    (package / "_bindings.py").write_text("two")
    assert key._release_of(package) != vendored
    (tmp_path / "site" / "wasmtime-9.0.0.dist-info").mkdir()
    assert key._release_of(package) == "wasmtime-9.0.0"


def test_relaxed_simd_outside_its_deterministic_profile_is_keyed_by_the_host_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its answers then depend on the CPU features wasmtime lowers by (FMA or not): a cache
    # shared by two machines must not hand one's result to the other.
    assert key._host_cpu().startswith(platform.machine())
    loose = WizenOptions(features=Features(relaxed_simd_deterministic=False))
    keys = {}
    for cpu in ["x86_64 flags: fma", "x86_64 flags: sse2"]:
        monkeypatch.setattr(key, "_host_cpu", lambda cpu=cpu: cpu)
        keys[cpu] = (result_key(b"wasm", loose), result_key(b"wasm", WizenOptions()))
    (loose_a, strict_a), (loose_b, strict_b) = keys.values()
    assert loose_a != loose_b
    assert strict_a == strict_b


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


def test_no_home_directory_is_a_miss_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    for name in ("HATCH_WIZER_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Path, "home", no_home)
    out, lines = wizen_logged(wasm_of(WAT), WizenOptions())
    assert out == wizen(wasm_of(WAT), WizenOptions(cache=False))
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


# Init lists /data (WASI fd_readdir) and keeps the listing's length in a global.
LISTS_A_DIRECTORY = """(module
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (drop (call $readdir (i32.const 3) (i32.const 1024) (i32.const 4096) (i64.const 0) (i32.const 16)))
    (global.set $g (i32.load (i32.const 16)))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 8192))))"""


def quiet_wasi(*preopens: Preopen) -> WizenOptions:
    # No stdio: whatever the test runner's stdin is, these runs may be cached.
    return WizenOptions(allow_wasi=True, inherit_stdio=False, preopens=preopens)


@pytest.mark.parametrize(
    "appear",
    [
        lambda d: (d / "sub").mkdir(),
        lambda d: (d / "link").symlink_to("nowhere"),
        lambda d: os.mkfifo(d / "fifo"),
    ],
    ids=["subdirectory", "symlink", "fifo"],
)
def test_any_new_entry_in_a_preopen_is_in_the_key(tmp_path: Path, appear: Callable[[Path], None]) -> None:
    (tmp_path / "x").write_text("A")
    options = quiet_wasi(Preopen("/data", tmp_path))
    listed = observe(wizen(wasm_of(LISTS_A_DIRECTORY), options), []).globals["g"]
    _, lines = wizen_logged(wasm_of(LISTS_A_DIRECTORY), options)
    assert not ran_init(lines)  # unchanged: reused
    appear(tmp_path)
    out, lines = wizen_logged(wasm_of(LISTS_A_DIRECTORY), options)
    assert ran_init(lines)
    assert observe(out, []).globals["g"] > listed


def test_a_link_target_and_a_file_type_are_in_the_key(tmp_path: Path) -> None:
    options = quiet_wasi(Preopen("/data", tmp_path))
    (tmp_path / "link").symlink_to("a")
    keys = {result_key(b"", options)}
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("b")
    keys.add(result_key(b"", options))
    (tmp_path / "link").unlink()
    (tmp_path / "link").write_text("b")
    keys.add(result_key(b"", options))
    (tmp_path / "link").write_text("c")
    keys.add(result_key(b"", options))
    assert len(keys) == 4


def test_a_link_out_of_a_preopen_is_not_read(tmp_path: Path) -> None:
    # Init cannot follow it out of its preopen, so keying must not either (a 3 GiB sparse file
    # took 18 s and 3 GB of memory when it did).
    huge = tmp_path / "huge"
    with huge.open("wb") as f:
        f.truncate(3 << 30)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "huge").symlink_to(huge)
    options = quiet_wasi(Preopen("/data", tmp_path / "tree"))
    result_key(b"", options)  # the package's own code is hashed once, first
    start = time.perf_counter()
    result_key(b"", options)
    assert time.perf_counter() - start < 0.5


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_file_whose_read_fails_is_keyed_by_the_error() -> None:
    # /proc/self/mem is a regular file whose read at offset 0 fails (EIO), as /sys files can:
    # the key says so, where the OSError went up as a one-line error naming no file.
    assert key.file_hash(Path("/proc/self/mem")) == "unreadable (5)"


def test_a_big_file_in_a_preopen_is_hashed_in_chunks(tmp_path: Path) -> None:
    with (tmp_path / "big").open("wb") as f:
        f.truncate(64 << 20)
    options = quiet_wasi(Preopen("/data", tmp_path))
    tracemalloc.start()
    try:
        result_key(b"", options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# Init reads up to 16 bytes of stdin (WASI fd_read) into memory at 64.
READS_STDIN = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wizer-initialize")
    (i32.store (i32.const 32) (i32.const 64))
    (i32.store (i32.const 36) (i32.const 16))
    (drop (call $read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 48)))
    (i64.store (i32.const 32) (i64.const 0))
    (i64.store (i32.const 48) (i64.const 0))))"""


def wizen_cli(module: Path, out: Path, stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    """`hatch-wizer module --allow-wasi -o out` with `stdin` piped in, or /dev/null if None."""
    cmd = [sys.executable, "-m", "hatch_wizer", str(module), "--allow-wasi", "-o", str(out)]
    null = subprocess.DEVNULL if stdin is None else None
    result = subprocess.run(cmd, input=stdin, stdin=null, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_init_that_may_read_stdin_is_never_cached(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(wasm_of(READS_STDIN))
    for text in (b"AAAA", b"BBBB"):
        out = tmp_path / f"{text.decode()}.wasm"
        wizen_cli(module, out, text + b"\n")
        assert observe(out.read_bytes(), []).memories["memory"][64:69] == text + b"\n"


def test_init_with_stdin_from_dev_null_is_cached(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(wasm_of(READS_STDIN))
    wizen_cli(module, tmp_path / "a.wasm", None)
    result = wizen_cli(module, tmp_path / "b.wasm", None)
    assert b"reused" in result.stderr
    assert (tmp_path / "a.wasm").read_bytes() == (tmp_path / "b.wasm").read_bytes()


@pytest.mark.parametrize("typed", [b"", b"AAAA\n"], ids=["idle", "typed-ahead"])
def test_a_terminal_is_data_once_input_waits(typed: bytes) -> None:
    main, terminal = os.openpty()
    saved = os.dup(0)
    try:
        os.write(main, typed)
        time.sleep(0.05)  # the line discipline hands the line over
        os.dup2(terminal, 0)
        empty = inputs.stdin_is_not_data()
    finally:
        os.dup2(saved, 0)
        for fd in (saved, main, terminal):
            os.close(fd)
    assert empty == (not typed)


def test_only_big_inputs_keep_their_compiled_code_in_wasmtimes_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module under `COMPILE_CACHE_MIN_BYTES` compiles in less time than wasmtime's cache
    costs a first run; a bigger one's code is kept for runs the result cache misses."""
    from hatch_wizer.engine.runtime import COMPILE_CACHE_MIN_BYTES

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where wasmtime's cache goes
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    compiled = tmp_path / "wasmtime/modules"

    def entries() -> int:  # compiled modules (each has a .stats file beside it)
        return sum(p.is_file() and p.suffix != ".stats" for p in compiled.rglob("*"))

    small = wasm_of(WAT)
    wizen(small, WizenOptions())
    assert entries() == 0
    # Over the limit by a data segment; its bytes are the memory's state after init.
    data = "\\01" * COMPILE_CACHE_MIN_BYTES
    big = wasm_of(WAT.replace("(global", f'(memory 17) (data (i32.const 0) "{data}") (global', 1))
    assert len(big) > COMPILE_CACHE_MIN_BYTES
    out = wizen(big, WizenOptions())
    assert entries() == 1
    assert observe(out, []).globals["g"] == 42
