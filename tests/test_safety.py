"""Safe defaults: init reaches only what it is given, outputs stay in their build directory,
inputs are never modified, and an interrupted run leaves nothing half-written behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.build.cli import main
from hatch_wizer.options import Preopen
from tests.harness import WHEEL_HOOK, hatch_pyproject, trap_unknown_imports, wasm_of

# Init opens `path` (at memory 100) relative to preopen fd 3 with `oflags` and, when that works,
# writes 3 bytes to it. Globals: the errno of path_open, and the
# bytes read from the file.
OPEN_WAT = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "{path}")
  (data (i32.const 200) "new")
  (global (export "errno") (mut i32) (i32.const -1))
  (global (export "read") (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (global.set 0 (call $open (i32.const 3) (i32.const {lookup}) (i32.const 100)
      (i32.const {length}) (i32.const {oflags}) (i64.const {rights}) (i64.const {rights}) (i32.const 0)
      (i32.const 0)))
    (if (i32.eqz (global.get 0)) (then
      (i32.store (i32.const 8) (i32.const 200)) (i32.store (i32.const 12) (i32.const 3))
      (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
      (i32.store (i32.const 8) (i32.const 300)) (i32.store (i32.const 12) (i32.const 64))
      (drop (call $read (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
      (global.set 1 (i32.load (i32.const 16)))))))"""
CREAT = 1
FD_READ, FD_WRITE = 1 << 1, 1 << 6
SYMLINK_FOLLOW = 1
ELOOP, EPERM, ENOENT, ENOTCAPABLE = 32, 63, 44, 76


def init_open(
    path: str,
    preopen: Preopen,
    oflags: int = 0,
    lookup: int = SYMLINK_FOLLOW,
    rights: int = FD_READ | FD_WRITE,
) -> tuple[int, int]:
    """(errno of path_open, bytes fd_read got) as the wizened module remembers them."""
    wat = OPEN_WAT.format(
        path=path, length=len(path.encode()), oflags=oflags, lookup=lookup, rights=rights
    )
    options = WizenOptions(allow_wasi=True, preopens=(preopen,), inherit_stdio=False, cache=False)
    out = wizen(wasm_of(wat), options)
    store, exports = instantiate(out)
    return exports["errno"].value(store), exports["read"].value(store)


def instantiate(wasm: bytes) -> tuple[wasmtime.Store, dict[str, Any]]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    module = wasmtime.Module(engine, wasm)
    trap_unknown_imports(linker, module)
    return store, dict(linker.instantiate(store, module).exports(store))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """`box/` is preopened; `secret.txt` sits next to it; `box/link` points at the secret."""
    box = tmp_path / "box"
    (box / "sub").mkdir(parents=True)
    (box / "inside.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("secret")
    (box / "link").symlink_to(tmp_path / "secret.txt")
    (box / "sub" / "uplink").symlink_to("../../secret.txt")
    (box / "dirlink").symlink_to(tmp_path)
    return tmp_path


def test_preopens_are_read_only_by_default(tree: Path) -> None:
    errno, _ = init_open("made.txt", Preopen("/box", tree / "box"), oflags=CREAT)
    assert errno == EPERM
    assert not (tree / "box" / "made.txt").exists()
    errno, _ = init_open("inside.txt", Preopen("/box", tree / "box"))  # to read and write
    assert errno == EPERM
    errno, read = init_open("inside.txt", Preopen("/box", tree / "box"), rights=FD_READ)
    assert errno == 0 and read == 6  # reading works; the write of 3 bytes did nothing
    assert (tree / "box" / "inside.txt").read_text() == "inside"


def test_writable_preopens_must_be_asked_for(tree: Path) -> None:
    errno, _ = init_open("made.txt", Preopen("/box", tree / "box", writable=True), oflags=CREAT)
    assert errno == 0
    assert (tree / "box" / "made.txt").read_text() == "new"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "sub/../../secret.txt", "link", "sub/uplink", "dirlink/secret.txt",
     "/secret.txt", "//secret.txt"],
)  # fmt: skip
@pytest.mark.parametrize("writable", [False, True])
def test_no_file_outside_the_preopens_is_reachable(tree: Path, path: str, writable: bool) -> None:
    for lookup in (0, SYMLINK_FOLLOW):
        errno, read = init_open(path, Preopen("/box", tree / "box", writable), lookup=lookup)
        assert errno in (ELOOP, EPERM, ENOENT, ENOTCAPABLE), (path, errno)
        assert read == 0
    assert (tree / "secret.txt").read_text() == "secret"


def test_environment_is_not_inherited_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HATCH_WIZER_SECRET", "hunter2")
    wat = """(module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global (export "count") (mut i32) (i32.const -1))
      (func (export "wizer-initialize")
        (drop (call $sizes (i32.const 0) (i32.const 4)))
        (global.set 0 (i32.load (i32.const 0)))))"""
    default = instantiate(wizen(wasm_of(wat), WizenOptions(allow_wasi=True, cache=False)))
    assert default[1]["count"].value(default[0]) == 0
    asked = instantiate(
        wizen(wasm_of(wat), WizenOptions(allow_wasi=True, inherit_env=True, cache=False))
    )
    assert asked[1]["count"].value(asked[0]) == len(os.environ)


# --- outputs and inputs ------------------------------------------------------------------------


MODULE_WAT = '(module (global (export "g") (mut i32) (i32.const 0)) (func (export "wizer-initialize") (global.set 0 (i32.const 1))))'


def test_output_may_not_overwrite_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.wasm"
    source.write_bytes(wasm_of(MODULE_WAT))
    before = source.read_bytes()
    link = tmp_path / "alias.wasm"
    link.symlink_to(source)
    for target in (source, link, tmp_path / "." / "in.wasm"):
        assert main([str(source), "-o", str(target), "-q"]) == 2
        assert "would overwrite the input" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_build_outputs_stay_in_the_output_directory(tmp_path: Path) -> None:
    # `..` in a module path is refused; the output of a module reached through a symlinked
    # directory still lands under the output directory, with the input left as it was.
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "m.wasm").write_bytes(wasm_of(MODULE_WAT))
    project = tmp_path / "project"
    project.mkdir()
    (project / "linked").symlink_to(tmp_path / "outside")
    for path, ok in (("../outside/m.wasm", False), ("linked/m.wasm", True)):
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "p"\nversion = "1"\n[tool.wizer]\nmodules = ["{path}"]\n'
        )
        result = subprocess.run(
            [sys.executable, "-m", "hatch_wizer", "build", "--project", str(project), "-q"],
            capture_output=True,
            timeout=120,
        )
        assert (result.returncode == 0) == ok, result.stderr
        if not ok:
            assert b"must be a relative path inside the project" in result.stderr
    assert (project / "build" / "wizer" / "linked" / "m.wasm").is_file()
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["m.wasm"]
    assert (tmp_path / "outside" / "m.wasm").read_bytes() == wasm_of(MODULE_WAT)


def test_hatch_hook_never_writes_outside_its_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # An earlier hook maps a module to a wheel path with `..`; the wizer hook must not follow it.
    from hatchling.builders.wheel import WheelBuilder

    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("")
    (root / "hatch_build.py").write_text(
        "import tempfile\n"
        "from pathlib import Path\n"
        "from hatchling.builders.hooks.plugin.interface import BuildHookInterface\n"
        "class Generate(BuildHookInterface):\n"
        "    def initialize(self, version, build_data):\n"
        "        out = Path(tempfile.mkdtemp()) / 'gen.wasm'\n"
        f"        out.write_bytes({wasm_of(MODULE_WAT)!r})\n"
        "        build_data['force_include'][str(out)] = '../../escaped.wasm'\n"
    )
    hooks = f'[tool.hatch.build.targets.wheel.hooks.custom]\npath = "hatch_build.py"\n{WHEEL_HOOK}'
    (root / "pyproject.toml").write_text(hatch_pyproject('modules = ["**/*.wasm"]', hooks))
    # The hook's temp dir is temp/a/hatch-wizer-*, so `../../escaped.wasm` would be temp/.
    temp = tmp_path / "temp"
    (temp / "a").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp / "a"))
    with pytest.raises(SystemExit):
        list(WheelBuilder(str(root)).build(directory=str(root / "dist"), versions=["standard"]))
    assert "../../escaped.wasm would be written outside" in capfd.readouterr().err
    assert not (temp / "escaped.wasm").exists()
    assert [p.name for p in temp.rglob("*.wasm")] == ["gen.wasm"]  # the earlier hook's input


# --- interruptions ------------------------------------------------------------------------------


LOOP_WAT = """(module (memory (export "memory") 1)
  (func (export "wizer-initialize") (loop $l (i32.store (i32.const 0) (i32.const 1)) (br $l))))"""
# Over child.STOPPABLE_MAX_BYTES: compiled by Cranelift without epoch checks, so a library
# caller wizens it in a child process that is killed or exits (tests/test_child.py), and the
# CLI in its own process, which exits.
BIG_LOOP_WAT = LOOP_WAT.replace(
    "1)", f'20) (data (i32.const 0) "{"x" * 1_200_000}")', 1
)
# Small on Winch, small on Cranelift (whose code the CLI compiles without epoch checks) and big.
SIZES = {
    "small": (LOOP_WAT, "auto"),
    "small-cranelift": (LOOP_WAT, "cranelift"),
    "big": (BIG_LOOP_WAT, "cranelift"),
}


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
@pytest.mark.parametrize("timeout", ["0", "600"], ids=["no-limit", "limit"])
@pytest.mark.parametrize("size", SIZES)
def test_interrupted_run_leaves_no_output(
    tmp_path: Path, sig: int, timeout: str, size: str
) -> None:
    wat, compiler = SIZES[size]
    source = tmp_path / "in.wat"
    source.write_text(wat)
    out = tmp_path / "out.wasm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatch_wizer", str(source), "-o", str(out), "--init-timeout",
         timeout, "--compiler", compiler],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    started = time.monotonic()
    line = b""
    while b"compiled with" not in line and time.monotonic() - started < 60:
        line = proc.stderr.readline()  # init starts right after compiling
    time.sleep(0.5)
    proc.send_signal(sig)
    try:
        rest = proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"signal {sig} did not stop the run")
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig  # as if the signal had ended it: 130, 143
        said = "interrupted" if sig == signal.SIGINT else "terminated"
        assert rest.decode().splitlines()[-1] == f"hatch-wizer: {said}"
        assert b"Traceback" not in rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wat"]


@pytest.mark.parametrize("size", SIZES)
def test_library_callers_get_keyboard_interrupt_from_an_endless_init(size: str) -> None:
    # Ctrl-C ends the wait even with no time limit (in a child: signals go to the main thread
    # of the process, which here would be pytest's).
    compiler = SIZES[size][1]
    code = f"""
import os, signal, threading, time
from hatch_wizer import wizen, WizenOptions
from tests.harness import wasm_of
from tests.test_safety import SIZES
wat = SIZES[{size!r}][0]
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    wizen(wasm_of(wat), WizenOptions(init_timeout=None, compiler={compiler!r}, cache=False))
except KeyboardInterrupt:
    print("interrupted after", round(time.monotonic() - start))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() in ("interrupted after 1", "interrupted after 2"), result
