"""Tests for hatch_wizer.build.config: `[tool.wizer]` in, validated per-module options out."""

from __future__ import annotations

from pathlib import Path

import pytest

from hatch_wizer.build.config import (
    HATCH_RESERVED_KEYS,
    find_modules,
    load_config,
    matches,
    read_pyproject,
)
from hatch_wizer.errors import ConfigError
from hatch_wizer.options import Features, Preload, Preopen, WizenOptions

ROOT = Path("/project")


def load(table: dict[str, object], **kwargs: object) -> list[WizenOptions]:
    config = load_config({"tool": {"wizer": table}}, ROOT, **kwargs)  # type: ignore[arg-type]
    assert config is not None
    return [m.options for m in config.modules]


def error(table: dict[str, object], **kwargs: object) -> str:
    with pytest.raises(ConfigError) as e:
        load(table, **kwargs)
    return str(e.value)


def test_no_table_means_not_configured() -> None:
    assert load_config({"project": {"name": "x"}}, ROOT) is None
    assert load_config({}, ROOT, overrides={"enable-by-default": False}) is None


def test_every_key_maps_onto_wizen_options() -> None:
    [options] = load(
        {
            "init-func": "init",
            "renames": {"_start": "main"},
            "keep-init-func": True,
            "allow-wasi": True,
            "inherit-stdio": False,
            "inherit-env": True,
            "env": {"LANG": "C"},
            "preopens": {"/data": "assets", "/out": {"path": "tmp", "writable": True}},
            "preload": {"helper": "wasm/helper.wasm"},
            "wasm-simd": False,
            "wasm-relaxed-simd": False,
            "max-data-segments": 10,
            "init-timeout": 5,
            "reproducible": False,
            "cache": False,
            "modules": [{"path": "pkg/a.wasm"}],
        }
    )
    assert options == WizenOptions(
        init_func="init",
        renames=(("_start", "main"),),
        keep_init_func=True,
        allow_wasi=True,
        inherit_stdio=False,
        inherit_env=True,
        env=(("LANG", "C"),),
        preopens=(
            Preopen("/data", (ROOT / "assets").resolve()),
            Preopen("/out", (ROOT / "tmp").resolve(), writable=True),
        ),
        preloads=(Preload("helper", ROOT / "wasm/helper.wasm"),),
        features=Features(simd=False, relaxed_simd=False),
        max_data_segments=10,
        init_timeout=5.0,
        reproducible=False,
        cache=False,
    )


def test_builds_default_to_reproducible() -> None:
    [options] = load({"modules": [{"path": "a.wasm"}]})
    assert options == WizenOptions(reproducible=True)


def test_module_keys_override_top_level_keys() -> None:
    a, b = load(
        {
            "init-func": "init",
            "wasm-simd": False,
            "modules": [{"path": "a.wasm"}, {"path": "b.wasm", "init-func": "b", "wasm-gc": False}],
        }
    )
    assert (a.init_func, a.features.simd, a.features.gc) == ("init", False, True)
    assert (b.init_func, b.features.simd, b.features.gc) == ("b", False, False)


def test_hook_table_overrides_key_by_key_and_hatch_keys_are_ignored() -> None:
    overrides = dict.fromkeys(HATCH_RESERVED_KEYS, "anything") | {"allow-wasi": True}
    [options] = load(
        {"init-func": "init", "allow-wasi": False, "modules": ["a.wasm"]}, overrides=overrides
    )
    assert (options.init_func, options.allow_wasi) == ("init", True)


def test_init_timeout_false_means_no_limit() -> None:
    [options] = load({"init-timeout": False, "modules": ["a.wasm"]})
    assert options.init_timeout is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"modules": [{"path": "a"}, {"path": "b", "init-func": 3}]},
            "tool.wizer.modules[1].init-func must be a string",
        ),
        (
            {"init_func": "x"},
            "tool.wizer.init_func is not a known option (did you mean 'init-func'?)",
        ),
        (
            {"modules": [{"path": "a", "wasm-smd": True}]},
            "tool.wizer.modules[0].wasm-smd is not a known option (did you mean 'wasm-simd'?)",
        ),
        ({"modules": {"path": "a"}}, "tool.wizer.modules must be an array of tables"),
        ({"modules": [{"init-func": "x"}]}, "tool.wizer.modules[0].path is required"),
        (
            {"modules": [{"path": "../x.wasm"}]},
            "tool.wizer.modules[0].path must be a relative path inside the project",
        ),
        ({"modules": [3]}, "tool.wizer.modules[0] must be a table"),
        ({"allow-wasi": "yes"}, "tool.wizer.allow-wasi must be a boolean"),
        ({"renames": {"a": 1}}, "tool.wizer.renames.a must be a string"),
        ({"renames": ["a=b"]}, 'tool.wizer.renames must be a table of dst = "src" strings'),
        ({"env": {"A": True}}, "tool.wizer.env.A must be a string"),
        (
            {"preopens": {"data": "d"}},
            "tool.wizer.preopens.data: guest path must be absolute (start with '/')",
        ),
        (
            {"preopens": {"/d": {"path": "d", "writable": 1}}},
            'tool.wizer.preopens."/d".writable must be a boolean',
        ),
        (
            {"preopens": {"/d": {"host": "d"}}},
            'tool.wizer.preopens."/d".host is not a known option',
        ),
        (
            {"preopens": {"/d": 1}},
            'tool.wizer.preopens."/d" must be a string or a table'
            ' { path = "...", writable = true }',
        ),
        ({"max-data-segments": True}, "tool.wizer.max-data-segments must be an integer"),
        *(
            (
                {"max-data-segments": count},
                "tool.wizer.max-data-segments must be between 1 and 100000 (the engines' limit)",
            )
            for count in (0, -5, 100_001)
        ),
        *(
            (
                {"init-timeout": seconds},
                "tool.wizer.init-timeout must be a positive number of seconds, or false for no "
                "limit",
            )
            for seconds in (-1, 0, float("nan"), float("inf"), True)
        ),
        ({"wasm-gc": "no"}, "tool.wizer.wasm-gc must be a boolean"),
    ],
)
def test_errors_name_the_toml_path(table: dict[str, object], message: str) -> None:
    assert error(table) == message


def test_override_errors_name_the_hook_table() -> None:
    where = "tool.hatch.build.targets.wheel.hooks.wizer"
    assert error({}, overrides={"keep-init-func": 1}, overrides_where=where) == (
        f"{where}.keep-init-func must be a boolean"
    )
    assert error({}, overrides={"modules": [{"path": 1}]}, overrides_where=where) == (
        f"{where}.modules[0].path must be a string"
    )


def test_read_pyproject_reports_bad_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wizer\n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml: "):
        read_pyproject(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        read_pyproject(tmp_path / "missing")
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.wizer]\nmodules = ["\xff"]\n')
    with pytest.raises(ConfigError, match=r"pyproject\.toml: not UTF-8 text \(byte 25\)"):
        read_pyproject(tmp_path)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("pkg/*.wasm", "pkg/a.wasm", True),
        ("pkg/*.wasm", "pkg/sub/a.wasm", False),
        ("pkg/**/*.wasm", "pkg/a.wasm", True),
        ("pkg/**/*.wasm", "pkg/x/y/a.wasm", True),
        ("pkg/?.wasm", "pkg/ab.wasm", False),
        ("pkg/a.wasm", "pkg/a.wasm", True),
        ("pkg/a.wasm", "pkg/a_wasm", False),
    ],
)
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def project(tmp_path: Path) -> None:
    for name in ["src/pkg/a.wasm", "src/pkg/sub/b.wasm", "src/pkg/c.txt", ".venv/x/d.wasm"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\0asm")


def names(tmp_path: Path, modules: list[object], **kwargs: object) -> list[str]:
    project(tmp_path)
    config = load_config({"tool": {"wizer": {"modules": modules}}}, tmp_path)
    assert config is not None
    return [m.name for m in find_modules(config, **kwargs)]  # type: ignore[arg-type]


def test_find_modules_expands_globs_sorted_and_skips_hidden_dirs(tmp_path: Path) -> None:
    assert names(tmp_path, ["**/*.wasm"]) == ["src/pkg/a.wasm", "src/pkg/sub/b.wasm"]
    assert names(tmp_path, ["src/pkg/a.wasm"]) == ["src/pkg/a.wasm"]


def test_find_modules_matches_generated_wheel_paths(tmp_path: Path) -> None:
    generated = {"pkg/gen.wasm": tmp_path / "elsewhere.wasm"}
    assert names(tmp_path, ["pkg/*.wasm"], generated=generated) == ["pkg/gen.wasm"]


def test_find_modules_skips_excluded_dirs(tmp_path: Path) -> None:
    assert names(tmp_path, ["**/*.wasm"], exclude=[tmp_path / "src/pkg/sub"]) == ["src/pkg/a.wasm"]


def test_a_pattern_matching_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        names(tmp_path, ["src/pkg/a.wasm", "src/*.wasm"])
    assert str(e.value) == "tool.wizer.modules[1].path: no file matches 'src/*.wasm'"


def test_a_file_claimed_by_two_entries_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        names(tmp_path, ["src/pkg/a.wasm", {"path": "src/**/*.wasm", "init-func": "x"}])
    assert str(e.value) == (
        "tool.wizer.modules[1].path: src/pkg/a.wasm is also matched by tool.wizer.modules[0].path"
    )


# --- mistakes found before any module runs -------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"preopens": {"/d": "d"}, "modules": ["a.wasm"]},
            "tool.wizer.preopens needs tool.wizer.allow-wasi = true: init sees no WASI without "
            "it, so a.wasm would fail on its first WASI call",
        ),
        (
            {"modules": [{"path": "a.wasm", "env": {"A": "1"}}]},
            "tool.wizer.modules[0].env needs tool.wizer.modules[0].allow-wasi = true",
        ),
        (
            {"allow-wasi": False, "modules": [{"path": "a.wasm", "inherit-env": True}]},
            "tool.wizer.modules[0].inherit-env needs tool.wizer.allow-wasi = true",
        ),
        (
            {"modules": []},
            "tool.wizer.modules lists no modules, so nothing would be wizened "
            '(add modules = ["path/to/module.wasm"], or remove [tool.wizer])',
        ),
        ({"init-func": "x"}, "tool.wizer.modules lists no modules"),
        (
            {"allow-wasi": True, "preopens": {"/etc": "/etc"}, "modules": ["a.wasm"]},
            'tool.wizer.preopens."/etc": /etc is outside the project, and preopens are relative '
            'to it; if it is meant, write tool.wizer.preopens."/etc" = '
            '{ path = "/etc", outside-project = true }',
        ),
        (
            {"allow-wasi": True, "preopens": {"/d": {"path": "../d"}}, "modules": ["a.wasm"]},
            'tool.wizer.preopens."/d".path: ../d is outside the project',
        ),
    ],
)
def test_mistakes_are_config_errors(table: dict[str, object], message: str) -> None:
    assert error(table).startswith(message)


def test_a_preopen_outside_the_project_can_be_meant() -> None:
    table = {"/etc": {"path": "/etc", "outside-project": True}}
    [options] = load({"allow-wasi": True, "preopens": table, "modules": ["a.wasm"]})
    assert options.preopens == (Preopen("/etc", Path("/etc")),)


def test_messages_name_the_key_where_the_module_gets_its_option() -> None:
    config = load_config(
        {"tool": {"wizer": {"init-timeout": 2, "modules": ["a.wasm", {"path": "b.wasm"}]}}},
        ROOT,
        overrides={"init-func": "go"},
    )
    assert config is not None
    a, b = config.modules
    hook = "tool.hatch.build.hooks.wizer"
    assert a.key_path("init_timeout") == "tool.wizer.init-timeout"
    assert a.key_path("init_func") == f"{hook}.init-func"
    assert b.key_path("allow_wasi") == "tool.wizer.modules[1].allow-wasi"  # unset: the entry's
    assert b.key_path("features.simd") == "tool.wizer.modules[1].wasm-simd"
    assert b.key_path("compiler") == "tool.wizer.modules[1].compiler"
