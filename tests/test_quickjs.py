"""QuickJS-NG as users ship it (PyPI qjs-wasi-reactor.wasm, what wasmjs loads), wizened with an
init that evaluates a JS prelude: a real engine's heap, built at init, must come back intact."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from benches.workloads import SOURCES, qjs_with_init
from hatch_wizer import WizenOptions, wizen
from hatch_wizer.errors import InitError
from hatch_wizer.wasm.parse import parse_module
from tests.harness import instantiate_wasi


@pytest.fixture(scope="module")
def qjs(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The reactor plus `wizer-initialize` (evaluates benches/workloads/prelude.js) and `run`
    (returns the prelude's `check()`), as the benchmark's QuickJS workload."""
    try:
        dist = distribution("qjs-wasi-reactor.wasm")
    except PackageNotFoundError:
        pytest.skip("qjs-wasi-reactor.wasm is not installed (pip install -e '.[test]')")
    reactor = Path(str(dist.locate_file("qjs-wasi-reactor/qjs-wasi-reactor.wasm")))
    out = tmp_path_factory.mktemp("qjs") / "qjs.wasm"
    return qjs_with_init(reactor, SOURCES / "prelude.js", out).read_bytes()


def run_check(wasm: bytes, *, init: list[str]) -> int:
    """Instantiate under plain wasmtime WASI, call the `init` exports, then `run()`."""
    store, exports = instantiate_wasi(wasm)
    for name in init:
        exports[name](store)
    result = exports["run"](store)
    assert isinstance(result, int)
    return result


def test_wizened_quickjs_answers_from_its_snapshot(qjs: bytes) -> None:
    out = wizen(qjs, WizenOptions(allow_wasi=True, inherit_stdio=False, cache=False))
    expected = run_check(qjs, init=["_initialize", "wizer-initialize"])
    # check(): two cart lines, the t5 tag's ids, the snapshot, the foxes, fib(30) % 1000.
    assert expected == 12 * 7919 % 10007 * 3 + 4242 * 7919 % 10007 + 1539 + 3000 + 200 + 40
    assert run_check(out, init=[]) == expected
    exports = {e.name for e in parse_module(out).exports}
    assert "wizer-initialize" not in exports and "_initialize" not in exports


def test_single_pass_cranelift_changes_the_init_runs_code_not_the_snapshot(qjs: bytes) -> None:
    base = WizenOptions(
        allow_wasi=True, inherit_stdio=False, cache=False, reproducible=True, compiler="cranelift"
    )
    out = wizen(qjs, base._replace(regalloc_algorithm="single-pass"))
    assert out == wizen(qjs, base)
    assert run_check(out, init=[]) == run_check(qjs, init=["_initialize", "wizer-initialize"])


def test_quickjs_with_renames_and_the_init_func_kept(qjs: bytes) -> None:
    options = WizenOptions(
        allow_wasi=True,
        inherit_stdio=False,
        cache=False,
        keep_init_func=True,
        renames=(("check", "run"),),
        reproducible=True,
    )
    out = wizen(qjs, options)
    exports = {e.name for e in parse_module(out).exports}
    assert {"check", "wizer-initialize"} <= exports and "run" not in exports
    assert wizen(qjs, options) == out  # reproducible: the same bytes


def test_quickjs_is_deterministic_only_in_reproducible_mode(qjs: bytes) -> None:
    # QuickJS seeds Math.random from the clock during init: a real-world case.
    with pytest.raises(InitError, match=r"not deterministic: two runs differ in memory 0 \["):
        wizen(qjs, WizenOptions(allow_wasi=True, check_determinism=True, inherit_stdio=False))
    options = WizenOptions(
        allow_wasi=True, reproducible=True, check_determinism=True, inherit_stdio=False
    )
    assert wizen(qjs, options) == wizen(qjs, options)
