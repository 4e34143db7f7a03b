"""Tests for hatch_wizer.names and option references in messages (errors.option/render)."""

from __future__ import annotations

import typing

from hatch_wizer.build import config
from hatch_wizer.errors import InitError, option, render
from hatch_wizer.names import OPTIONS
from hatch_wizer.options import Features, WizenOptions


def test_every_option_has_a_row() -> None:
    fields = set(WizenOptions._fields) - {"features"}
    fields |= {f"features.{name}" for name in Features._fields}
    assert set(OPTIONS) == fields


def test_every_key_without_a_converter_is_a_switch() -> None:
    hints = typing.get_type_hints(WizenOptions) | {
        f"features.{k}": v for k, v in typing.get_type_hints(Features).items()
    }
    for field, names in OPTIONS.items():
        if names.key is not None and names.key not in config._CONVERTERS:
            assert hints[field] is bool, field


def test_the_cli_names_flags_and_a_build_names_keys() -> None:
    error = InitError(f"no `x` export (choose one with {option('init_func')})")
    assert str(error) == "no `x` export (choose one with --init-func)"
    keyed = error.about("a.wasm", lambda field: f"tool.wizer.{OPTIONS[field].key}")
    assert str(keyed) == "a.wasm: no `x` export (choose one with tool.wizer.init-func)"
    assert str(error.about("a.wasm")) == "a.wasm: no `x` export (choose one with --init-func)"
    assert render(f"see {option('features.simd')}") == "see --wasm-simd"
