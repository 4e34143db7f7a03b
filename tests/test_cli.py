"""The `hatch-wizer` command: Wizer's flags, exit codes and no half-written outputs."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from hatch_wizer.build.cli import main
from hatch_wizer.wasm.parse import parse_module
from tests.harness import wasm_of

WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi from init\\n")
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (global.set $g (i32.const 42)))
  (func (export "other"))
  (func (export "trap") unreachable))"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "in.wasm"
    path.write_bytes(wasm_of(WAT))
    return path


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "hatch_wizer", *args], input=stdin, capture_output=True, timeout=120
    )


def test_makefile_line_writes_output_and_exits_zero(module: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    result = run_cli(str(module), "-o", str(out), "--allow-wasi", "-r", "run=other")
    assert result.returncode == 0, result.stderr
    assert [e.name for e in parse_module(out.read_bytes()).exports] == [
        "memory",
        "g",
        "run",
        "trap",
    ]
    assert b"in.wasm: " in result.stderr  # the stages and the result line
    assert "→".encode() in result.stderr.splitlines()[-1]


def test_stdin_to_stdout_keeps_guest_output_out_of_the_module(module: Path) -> None:
    result = run_cli("--allow-wasi", "-q", stdin=module.read_bytes())
    assert result.returncode == 0, result.stderr
    assert parse_module(result.stdout).exports  # stdout holds exactly the module
    assert b"hi from init" in result.stderr
    assert result.stderr.count(b"\n") == 1  # -q: nothing but the guest's own line


def test_wat_input(tmp_path: Path) -> None:
    src = tmp_path / "in.wat"
    src.write_text('(module (func (export "wizer-initialize")))')
    assert run_cli(str(src), "-o", str(tmp_path / "o.wasm")).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--keep-init-func"],
        ["--keep-init-func=true"],
        ["--keep-init-func", "true"],
        ["--keep-init-func", "TRUE"],
    ],
)
def test_boolean_flag_spellings(module: Path, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out.wasm"
    assert main([str(module), "-o", str(out), "--allow-wasi", "-q", *args]) == 0
    assert "wizer-initialize" in [e.name for e in parse_module(out.read_bytes()).exports]


def test_failure_exits_one_with_one_line_and_no_output(module: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    result = run_cli(str(module), "-o", str(out), "-f", "trap", "--allow-wasi", "-q")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hatch-wizer: error: ")
    assert "`trap` trapped" in lines[0] and "Traceback" not in lines[0]
    assert list(tmp_path.iterdir()) == [module]


def test_outputs_get_the_mode_a_plain_write_gives(module: Path, tmp_path: Path) -> None:
    # New: 0666 less the umask (not mkstemp's 0600); replaced: the old file's mode.
    new, old = tmp_path / "new.wasm", tmp_path / "old.wasm"
    old.write_bytes(b"previous")
    old.chmod(0o640)
    for out in (new, old):
        result = subprocess.run(
            ["sh", "-c", 'umask 022 && exec "$0" -m hatch_wizer "$1" -o "$2" -q --allow-wasi',
             sys.executable, str(module), str(out)],
            capture_output=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert (new.stat().st_mode & 0o777, old.stat().st_mode & 0o777) == (0o644, 0o640)


def test_failure_keeps_an_existing_output(module: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    out.write_bytes(b"previous")
    assert run_cli(str(module), "-o", str(out), "-q").returncode == 1  # WASI not allowed
    assert out.read_bytes() == b"previous"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "nodst"], "-r `nodst` must have the form DST=SRC"),
        (["--rename-func", "nodst"], "--rename-func `nodst` must have the form DST=SRC"),
        (["--preload", "x"], "--preload `x` must have the form NAME=FILE"),
        (["--mapdir", "a::b::c"], "--mapdir `a::b::c` must have the form GUEST::HOST"),
        (["--keep-init-func=maybe"], "expected true or false"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_two(
    module: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(module), "-o", "/dev/null", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_input_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.wasm"), "-o", str(tmp_path / "o.wasm")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_input_is_never_modified(module: Path, tmp_path: Path) -> None:
    before = module.read_bytes()
    assert main([str(module), "-o", str(tmp_path / "o.wasm"), "--allow-wasi", "-q"]) == 0
    assert module.read_bytes() == before


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith(b"hatch-wizer ")


def test_one_module_loads_no_build_machinery() -> None:
    # Start-up is most of a small module's run: the CLI imports what one module needs.
    heavy = ("tomllib", "concurrent.futures", "difflib", "hatch_wizer.build.project", "wasmtime")
    code = f"import sys, hatch_wizer.build.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.stdout.strip() == b"[]", result.stderr.decode()


def test_a_cached_result_loads_neither_pipeline_nor_wasmtime(module: Path, tmp_path: Path) -> None:
    # A Makefile rebuilding unchanged modules pays only start-up and a hash per module.
    out = tmp_path / "out.wasm"
    args = [str(module), "-o", str(out), "--allow-wasi", "-q"]
    assert run_cli(*args).returncode == 0
    first = out.read_bytes()
    out.unlink()
    pipeline = ("hatch_wizer.wasm.parse", "hatch_wizer.module.instrumentation", "hatch_wizer.module.state", "wasmtime")
    code = (
        "import sys; from hatch_wizer.build.cli import main; main(sys.argv[1:]); "
        f"print([m for m in {pipeline!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
    assert result.stdout.strip() == b"[]", result.stderr.decode()
    assert out.read_bytes() == first


def test_an_uncached_core_module_loads_only_what_its_run_needs(module: Path, tmp_path: Path) -> None:
    # Imports are most of a cold run: no version lookup (importlib.metadata pulls in email,
    # zipfile, socket ...), no component support, no result cache (hashlib, json), no child.
    unneeded = ("importlib.metadata", "wasmtime.component", "hatch_wizer.cache", "hashlib", "json",
                "subprocess", "pickle")  # fmt: skip
    out = tmp_path / "out.wasm"
    code = (
        "import sys; from hatch_wizer.build.cli import main; status = main(sys.argv[1:]); "
        f"print(status, [m for m in {unneeded!r} if m in sys.modules])"
    )
    args = [str(module), "-o", str(out), "--allow-wasi", "--no-cache", "-q"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
    assert result.stdout.split(b"\n")[-2:] == [b"0 []", b""], result.stderr.decode()
    assert parse_module(out.read_bytes()).exports


def test_a_first_cached_wasi_run_loads_no_dataclasses_tempfile_or_shutil(
    module: Path, tmp_path: Path
) -> None:
    # The default run of a small WASI module: a cold result cache, a Winch trial whose output
    # waits in memory (not in temp files) until it is known to count.
    unneeded = ("dataclasses", "tempfile", "shutil")
    out = tmp_path / "out.wasm"
    code = (
        "import sys; from hatch_wizer.build.cli import main; status = main(sys.argv[1:]); "
        "from hatch_wizer.core import wait_for_cache_writers; wait_for_cache_writers(); "
        f"print(status, [m for m in {unneeded!r} if m in sys.modules])"
    )
    args = [str(module), "-o", str(out), "--allow-wasi", "-q"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert result.stdout == b"hi from init\n0 []\n", result.stderr.decode()
    assert parse_module(out.read_bytes()).exports


def test_a_module_without_wasi_loads_no_wasi_host(tmp_path: Path) -> None:
    # WASI's host only for modules that link it, and argparse's help formatter without
    # shutil (nor its zlib, bz2, lzma).
    small = tmp_path / "small.wat"
    small.write_text('(module (global (export "g") (mut i32) (i32.const 0))'
                     ' (func (export "wizer-initialize") (global.set 0 (i32.const 7))))')  # fmt: skip
    unneeded = ("hatch_wizer.engine.wasi", "hatch_wizer.engine.host", "tempfile", "shutil")
    out = tmp_path / "out.wasm"
    code = (
        "import sys; from hatch_wizer.build.cli import main; status = main(sys.argv[1:]); "
        f"print(status, [m for m in {unneeded!r} if m in sys.modules])"
    )
    args = [str(small), "-o", str(out), "--no-cache", "-q"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
    assert result.stdout.split(b"\n")[-2:] == [b"0 []", b""], result.stderr.decode()
    store = wasmtime.Store()
    instance = wasmtime.Instance(store, wasmtime.Module(store.engine, out.read_bytes()), [])
    global_ = instance.exports(store)["g"]
    assert isinstance(global_, wasmtime.Global) and global_.value(store) == 7


def test_an_up_to_date_build_loads_neither_wasmtime_nor_a_version_lookup(
    module: Path, tmp_path: Path
) -> None:
    # A Makefile's `hatch-wizer build` with nothing to do pays start-up, the config and hashes.
    project = tmp_path / "project"
    project.mkdir()
    (project / "m.wasm").write_bytes(module.read_bytes())
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\n[tool.wizer]\nmodules = ["m.wasm"]\nallow-wasi = true\n'
    )
    unneeded = ("wasmtime", "importlib.metadata", "hatch_wizer.wasm.parse")
    code = (
        "import sys; from hatch_wizer.build.cli import main; status = main(['build', '-q']); "
        f"print(status, [m for m in {unneeded!r} if m in sys.modules])"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=project)
        for _ in range(2)
    ]
    assert runs[0].stdout.split(b"\n")[-2] == b"0 ['wasmtime', 'hatch_wizer.wasm.parse']", runs[0]
    assert runs[1].stdout.split(b"\n")[-2] == b"0 []", runs[1]


@pytest.mark.parametrize("trap", [False, True], ids=["ok", "trapping init"])
def test_the_cycle_collector_is_back_on_after_a_run(module: Path, tmp_path: Path, trap: bool) -> None:
    # A run pauses it (the snapshot's many small objects); a caller's process gets it back.
    args = [str(module), "-o", str(tmp_path / "out.wasm"), "--allow-wasi", "-q", "--no-cache"]
    if trap:
        args += ["--init-func", "trap"]
    assert gc.isenabled()
    assert main(args) == (1 if trap else 0)
    assert gc.isenabled()
