"""What `-o` names is what gets written: devices and fifos as streams, files atomically, links
followed; closed or broken standard streams, signals and endless inputs end a run cleanly."""

from __future__ import annotations

import io
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatch_wizer import files
from hatch_wizer.errors import InvalidModule, WizerError
from tests.harness import instantiate_wasi, wasm_of

# Init prints a line to stdout and fills 1 MiB of memory: the output outgrows a pipe's buffer.
WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (data (i32.const 16) "hi from init\\n")
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (local $i i32)
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $i (i32.const 64))
    (loop $fill
      (i32.store8 (local.get $i) (i32.add (local.get $i) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1048640))))
    (global.set $g (i32.const 42))))"""
LOOP_WAT = '(module (func (export "wizer-initialize") (loop $l (br $l))))'
HEADER = b"\0asm\1\0\0\0"
COMMAND = [sys.executable, "-m", "hatch_wizer"]


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.wasm"
    path.write_bytes(wasm_of(WAT))
    return path


def assert_wizened(wasm: bytes) -> None:
    store, exports = instantiate_wasi(wasm)
    assert exports["g"].value(store) == 42
    assert "wizer-initialize" not in exports
    assert exports["memory"].read(store, 1000, 1003) == bytes([233, 234, 235])  # (i + 1) % 256


def run_cli(
    *args: str, stdout: int | None = subprocess.PIPE, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*COMMAND, *args], stdout=stdout, stderr=subprocess.PIPE, timeout=60, **kwargs
    )


def one_error_line(stderr: bytes) -> str:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hatch-wizer: error: "), lines
    return lines[0]


def only_entries(directory: Path, *names: str) -> None:
    """No temp file or replaced node stayed behind."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


# --- what -o names ------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_null_device_stays_a_device(module: Path, tmp_path: Path) -> None:
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a private /dev/null
    result = run_cli(str(module), "-o", str(null), "--allow-wasi", "-q")
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert null.lstat().st_rdev == os.makedev(1, 3)
    only_entries(tmp_path, "null")


@pytest.fixture
def fifo_reader(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A fifo, and what a reader thread got from it once the writer closed it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    yield fifo, got
    if reader.is_alive():  # nothing opened it for writing: release the reader
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
    reader.join(5)


def test_a_symlink_to_a_fifo_streams_into_the_fifo(
    module: Path, tmp_path: Path, fifo_reader: tuple[Path, list[bytes]]
) -> None:
    fifo, got = fifo_reader
    (tmp_path / "link").symlink_to("fifo")
    result = run_cli(str(module), "-o", str(tmp_path / "link"), "--allow-wasi", "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "link").is_symlink()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert_wizened(got[0])
    only_entries(tmp_path, "fifo", "link")


def test_a_symlink_to_a_file_is_kept_and_its_target_replaced(module: Path, tmp_path: Path) -> None:
    target = tmp_path / "real" / "out.wasm"
    target.parent.mkdir()
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "out.wasm"
    link.symlink_to("real/out.wasm")
    dangling = tmp_path / "new.wasm"
    dangling.symlink_to("real/new.wasm")
    for output in (link, dangling):
        result = run_cli(str(module), "-o", str(output), "--allow-wasi", "-q")
        assert result.returncode == 0, result.stderr
        assert output.is_symlink()
        assert_wizened(output.read_bytes())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    only_entries(target.parent, "out.wasm", "new.wasm")


def test_a_symlink_to_the_input_is_refused(module: Path, tmp_path: Path) -> None:
    link = tmp_path / "out.wasm"
    link.symlink_to(module)
    before = module.read_bytes()
    result = run_cli(str(module), "-o", str(link), "--allow-wasi", "-q")
    assert result.returncode == 2
    assert "would overwrite the input" in one_error_line(result.stderr)
    assert module.read_bytes() == before


def test_write_output_never_follows_a_link_onto_the_source(tmp_path: Path) -> None:
    # The build front ends' guard: an output path that leads to the source module.
    source = tmp_path / "mod.wasm"
    source.write_bytes(b"source")
    (tmp_path / "out.wasm").symlink_to("mod.wasm")
    with pytest.raises(WizerError, match="leads to the input"):
        files.write_output(tmp_path / "out.wasm", b"output", source)
    assert source.read_bytes() == b"source"


def test_a_directory_is_an_error(module: Path, tmp_path: Path) -> None:
    result = run_cli(str(module), "-o", str(tmp_path), "--allow-wasi", "-q")
    assert result.returncode == 1
    assert one_error_line(result.stderr).endswith(
        f"cannot write the module to {tmp_path}: Is a directory"
    )


@pytest.fixture
def dev_stdout() -> Iterator[None]:
    """Puts /dev/stdout back should a regression replace it (as root it could)."""
    before = Path("/dev/stdout").readlink()
    yield
    if not Path("/dev/stdout").is_symlink() or Path("/dev/stdout").readlink() != before:
        Path("/dev/stdout").unlink()
        Path("/dev/stdout").symlink_to(before)
        pytest.fail("the run replaced /dev/stdout")


@pytest.mark.usefixtures("dev_stdout")
@pytest.mark.parametrize("output", ["/dev/stdout", "/proc/self/fd/1", "link"])
def test_dev_stdout_onto_a_pipe_gets_the_module_and_guest_output_goes_to_stderr(
    module: Path, tmp_path: Path, output: str
) -> None:
    (tmp_path / "link").symlink_to("/proc/self/fd/1")
    result = run_cli(str(module), "-o", output, "--allow-wasi", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_wizened(result.stdout)
    assert result.stderr == b"hi from init\n"
    only_entries(tmp_path, "link")


@pytest.mark.parametrize("output", ["/proc/self/fd/1", "/dev/fd/1"])
def test_stdout_names_onto_a_file_write_that_file(
    module: Path, tmp_path: Path, output: str
) -> None:
    # Even when the file is gone from its directory, as a test runner's capture file may be.
    for unlink in (False, True):
        captured = tmp_path / "captured"
        with captured.open("w+b") as f:
            if unlink:
                captured.unlink()
            result = run_cli(str(module), "-o", output, "--allow-wasi", "-q", stdout=f.fileno())
            assert result.returncode == 0, result.stderr
            f.seek(0)
            assert_wizened(f.read())
        assert sorted(p.name for p in tmp_path.iterdir()) == ([] if unlink else ["captured"])


# --- closed and broken standard streams --------------------------------------------------------


def shell(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`script` in sh, with `"$@"` the hatch-wizer command and `args`."""
    return subprocess.run(
        ["sh", "-c", script, "sh", *COMMAND, *args], capture_output=True, timeout=60
    )


def test_closed_stdout_fails_with_one_line(module: Path) -> None:
    result = shell('"$@" 2>&1 >&- | cat', str(module), "--allow-wasi")
    assert result.returncode == 0  # cat's
    line = one_error_line(result.stdout)  # stderr, piped through cat
    assert (
        line == "hatch-wizer: error: stdout is closed: nowhere to write the module (give -o FILE)"
    )
    status = shell('"$@" >&-; echo $?', str(module), "--allow-wasi")
    assert status.stdout == b"1\n"


def test_closed_stdout_with_an_output_file_still_works(module: Path, tmp_path: Path) -> None:
    # The guest's stdout is discarded; no file opened meanwhile took its descriptor.
    out = tmp_path / "out.wasm"
    result = shell('"$@" >&-', str(module), "--allow-wasi", "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert_wizened(out.read_bytes())


def test_closed_stdin_and_stderr(module: Path, tmp_path: Path) -> None:
    result = shell('"$@" <&-', "-o", str(tmp_path / "out.wasm"))
    assert result.returncode == 2
    assert "no input" in one_error_line(result.stderr)
    out = tmp_path / "out.wasm"
    result = shell('"$@" 2>&-', str(module), "--allow-wasi", "-o", str(out))
    assert result.returncode == 0
    assert result.stdout == b"hi from init\n"  # the guest's; the stage lines went nowhere
    assert_wizened(out.read_bytes())


@pytest.mark.usefixtures("dev_stdout")
@pytest.mark.parametrize("output", ["-", "/dev/stdout"])
def test_broken_stdout_fails_with_one_line(module: Path, output: str) -> None:
    # `hatch-wizer in.wasm | head -c1`, with the reader gone before the module is written.
    proc = subprocess.Popen(
        [*COMMAND, str(module), "-o", output, "--allow-wasi", "-q", "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(60) == 1
    assert stderr.decode().splitlines() == [
        "hi from init",
        "hatch-wizer: error: cannot write the module to stdout: Broken pipe",
    ]


def test_broken_stderr_fails_no_run(module: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    proc = subprocess.Popen(
        [*COMMAND, str(module), "-o", str(out), "--allow-wasi", "--inherit-stdio=false"],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()
    assert proc.wait(60) == 0
    assert_wizened(out.read_bytes())


# --- signals through the whole run -------------------------------------------------------------


def stop_when(proc: subprocess.Popen[bytes], ready: threading.Event, sig: int) -> tuple[int, str]:
    assert ready.wait(60), "the run never got there"
    time.sleep(0.3)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"signal {sig} did not stop the run")
    return proc.returncode, err.decode()


@pytest.mark.parametrize(("sig", "status", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated")])  # fmt: skip
def test_a_signal_stops_the_reading_of_the_input(sig: int, status: int, said: str) -> None:
    proc = subprocess.Popen(COMMAND, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    ready = threading.Event()

    def feed() -> None:  # more than a pipe holds: once written, hatch-wizer is reading
        assert proc.stdin is not None
        proc.stdin.write(HEADER + bytes(1 << 20))
        proc.stdin.flush()
        ready.set()

    threading.Thread(target=feed, daemon=True).start()
    returncode, err = stop_when(proc, ready, sig)
    proc.stdin.close()
    assert (returncode, err) == (status, f"hatch-wizer: {said}\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_writing_of_the_output(module: Path, tmp_path: Path, sig: int) -> None:
    # Into a fifo that nobody reads: the write waits for a reader.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*COMMAND, str(module), "-o", str(fifo), "--allow-wasi", "--inherit-stdio=false"],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    ready = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        while line := proc.stderr.readline():
            if b": check: " in line:  # the last stage before the output is written
                ready.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    returncode, err = stop_when(proc, ready, sig)
    said = "interrupted" if sig == signal.SIGINT else "terminated"
    assert (returncode, err.splitlines()[-1:]) == (128 + sig, [f"hatch-wizer: {said}"])
    assert "Traceback" not in err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    only_entries(tmp_path, "fifo")


# --- inputs bounded by the format --------------------------------------------------------------


def limit_memory() -> None:
    # A regression must fail, not take the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    for args, stdin in ((["/dev/zero"], None), ([], "/dev/zero")):
        with open(stdin or os.devnull, "rb") as f:
            started = time.monotonic()
            result = run_cli(*args, "-o", str(tmp_path / "out.wasm"), stdin=f,
                             preexec_fn=limit_memory)  # fmt: skip
        assert time.monotonic() - started < 20
        assert result.returncode == 1
        assert one_error_line(result.stderr).endswith(
            ": not a WebAssembly module (no \\0asm header) and not WAT text"
        )
    only_entries(tmp_path)


def test_an_input_over_one_gib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    source = tmp_path / "huge.wasm"
    with source.open("wb") as f:  # sparse: 2 GiB of size, no blocks
        f.write(HEADER)
        f.truncate(2 << 30)
    started = time.monotonic()
    result = run_cli(str(source), "-o", str(tmp_path / "out.wasm"), preexec_fn=limit_memory)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        f"hatch-wizer: error: {source}: more than 1 GiB, the largest module WebAssembly "
        "engines load"
    )
    only_entries(tmp_path, "huge.wasm")


def test_a_preload_over_one_gib_is_refused_before_it_is_read(module: Path, tmp_path: Path) -> None:
    helper = tmp_path / "huge.wasm"
    with helper.open("wb") as f:
        f.write(HEADER)
        f.truncate(2 << 30)
    out = tmp_path / "out.wasm"
    result = run_cli(str(module), "-o", str(out), "--allow-wasi", "--no-cache", "-q",
                     f"--preload=helper={helper}")  # fmt: skip
    assert result.returncode == 1
    assert one_error_line(result.stderr).endswith(
        f"preload `helper` ({helper}): more than 1 GiB, the largest module WebAssembly engines load"
    )
    only_entries(tmp_path, "huge.wasm")


class Endless(io.RawIOBase):
    """A module header, then zeros for ever; counts what was read."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer)
        view = memoryview(buffer)
        view[:n] = bytes(n)
        if self.given == 0:
            view[: len(HEADER)] = HEADER
        self.given += n
        return n


def test_a_stream_is_refused_once_it_passes_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_MODULE_BYTES", 10 << 20)
    stream = Endless()
    with pytest.raises(InvalidModule, match="more than"):
        files.read_module(io.BufferedReader(stream))
    assert stream.given <= (10 << 20) + (8 << 20)  # read in chunks, not to the end


# --- range checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--init-timeout", "-1", "expected a positive number of seconds, or 0 for no limit"),
        ("--init-timeout", "nan", "expected a positive number of seconds, or 0 for no limit"),
        ("--init-timeout", "soon", "expected a number of seconds"),
        ("--max-data-segments", "0", "expected 1 to 100000 (the engines' limit)"),
        ("--max-data-segments", "-5", "expected 1 to 100000 (the engines' limit)"),
        ("--max-data-segments", "100001", "expected 1 to 100000 (the engines' limit)"),
        ("--max-data-segments", "many", "expected a whole number"),
    ],
)
def test_numeric_flags_out_of_range_are_usage_errors(
    module: Path, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    result = run_cli(str(module), "-o", str(tmp_path / "out.wasm"), f"{flag}={value}")
    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        f"hatch-wizer: error: argument {flag}: {message}, not `{value}`"
    )
    only_entries(tmp_path)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("init-timeout = nan", "init-timeout must be a positive number of seconds, or false for no limit"),
        ("init-timeout = -1", "init-timeout must be a positive number of seconds, or false for no limit"),
        ("max-data-segments = -5", "max-data-segments must be between 1 and 100000 (the engines' limit)"),
        ("max-data-segments = 100001", "max-data-segments must be between 1 and 100000 (the engines' limit)"),
    ],
)  # fmt: skip
def test_numeric_keys_out_of_range_name_the_key(tmp_path: Path, key: str, message: str) -> None:
    (tmp_path / "m.wasm").write_bytes(wasm_of(LOOP_WAT.replace("(loop $l (br $l))", "")))
    (tmp_path / "pyproject.toml").write_text(f'[tool.wizer]\nmodules = ["m.wasm"]\n{key}\n')
    result = run_cli("build", "--project", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.decode() == f"hatch-wizer build: error: tool.wizer.{message}\n"
    assert not (tmp_path / "build").exists()
