"""Every hatch-wizer failure through the real build front ends: one line naming the TOML key,
a non-zero exit, no Python traceback.

One fixture project per backend (hatchling, setuptools). Each failure runs through
`python -m build`; one failure runs through each other front end (`hatch build`, `uv build`,
`pip wheel`, `pip install`). Only `hatch build` builds in an isolated environment (it always
does): it gets hatch-wizer from a wheel built once per session, through UV_FIND_LINKS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import wasmtime

from tests.harness import hatch_pyproject

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

INIT = '(module (func (export "wizer-initialize")))'
TRAP = '(module (func (export "wizer-initialize") unreachable))'
LOOP = '(module (func (export "wizer-initialize") (loop (br 0))))'
IMPORT = (
    '(module (import "env" "get" (func $get (result i32)))'
    ' (func (export "wizer-initialize") (drop (call $get))))'
)
MODULE = "src/pkg/mod.wasm"

# (id, [tool.wizer] body, module WAT or raw bytes, the one line expected from hatch-wizer)
FAILURES = [
    (
        "typo",
        f'init-fucn = "x"\nmodules = ["{MODULE}"]',
        INIT,
        "tool.wizer.init-fucn is not a known option (did you mean 'init-func'?)",
    ),
    (
        "missing-module",
        'modules = ["src/pkg/gone.wasm"]',
        INIT,
        "tool.wizer.modules[0].path: no file matches 'src/pkg/gone.wasm'",
    ),
    (
        "not-wasm",
        f'modules = ["{MODULE}"]',
        b"MZ not a module",
        f"{MODULE}: not a WebAssembly module",
    ),
    (
        "no-init-export",
        f'[[tool.wizer.modules]]\npath = "{MODULE}"\ninit-func = "setup"',
        INIT,
        f"{MODULE}: the module has no `setup` export "
        "(choose one with tool.wizer.modules[0].init-func)",
    ),
    ("trap", f'modules = ["{MODULE}"]', TRAP, f"{MODULE}: `wizer-initialize` trapped: "),
    (
        "timeout",
        f'init-timeout = 0.2\nmodules = ["{MODULE}"]',
        LOOP,
        f"{MODULE}: `wizer-initialize` did not finish within 0.2 s (tool.wizer.init-timeout)",
    ),
    (
        "missing-import",
        f'modules = ["{MODULE}"]',
        IMPORT,
        "used the import `env::get`, which nothing provides during init (link WASI with "
        "tool.wizer.modules[0].allow-wasi, or provide it with tool.wizer.modules[0].preload)",
    ),
    (
        "preopens-without-wasi",
        f'preopens = {{ "/data" = "src" }}\nmodules = ["{MODULE}"]',
        INIT,
        "tool.wizer.preopens needs tool.wizer.allow-wasi = true",
    ),
]

SETUPTOOLS = """[build-system]
requires = ["setuptools>=64", "hatch-wizer"]
build-backend = "setuptools.build_meta"
[tool.setuptools.package-data]
pkg = ["*.wasm"]
[project]
name = "pkg"
version = "1.0"
[tool.wizer]
{wizer}
"""
BACKENDS = {
    "hatchling": lambda wizer: hatch_pyproject(wizer, requires='"hatchling", "hatch-wizer"'),
    "setuptools": lambda wizer: SETUPTOOLS.format(wizer=wizer),
}
# The prefix each backend's one line starts with (setuptools prints distutils errors so).
PREFIX = {"hatchling": "hatch-wizer: error: ", "setuptools": "error: hatch-wizer: "}


def make_project(root: Path, backend: str, wizer: str, module: str | bytes) -> Path:
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/pkg/__init__.py").write_text("")
    wasm = module if isinstance(module, bytes) else bytes(wasmtime.wat2wasm(module))
    (root / MODULE).write_bytes(wasm)
    (root / "pyproject.toml").write_text(BACKENDS[backend](wizer))
    return root


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def assert_one_clean_line(result: subprocess.CompletedProcess[str], line: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert line in output, output


def hatch_env(tmp_path: Path, wheelhouse: Path) -> dict[str, str]:
    """hatch builds in an environment of its own, made with uv: it finds hatch-wizer through
    UV_FIND_LINKS (PIP_FIND_LINKS is not read), and keeps its data in `tmp_path`."""
    env = {f"HATCH_{d}_DIR": str(tmp_path / d.lower()) for d in ("DATA", "CACHE")}
    return {**env, "UV_FIND_LINKS": str(wheelhouse)}


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hatch-wizer wheel of this checkout, for front ends that build in isolation."""
    out = tmp_path_factory.mktemp("wheelhouse")
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("wizer", "module", "message"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_python_m_build_prints_one_line_per_failure(
    tmp_path: Path, backend: str, wizer: str, module: str | bytes, message: str
) -> None:
    root = make_project(tmp_path / "p", backend, wizer, module)
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", "dist", "."]
    result = run(cmd, root)
    assert_one_clean_line(result, PREFIX[backend])
    assert_one_clean_line(result, message)


FRONT_ENDS = {
    "pip wheel": [str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation", "-w", "out", "."],
    "pip install": [
        *(str(BIN / "pip"), "install", "--no-deps", "--no-build-isolation"),
        *("--prefix", "prefix", "."),
    ],
    "uv build": [str(BIN / "uv"), "build", "--wheel", "--no-build-isolation", "-o", "out", "."],
    "hatch build": [str(BIN / "hatch"), "build", "-t", "wheel"],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_every_front_end_prints_the_line_without_a_traceback(
    tmp_path: Path, wheelhouse: Path, backend: str, front_end: str
) -> None:
    _, wizer, module, message = FAILURES[0]
    root = make_project(tmp_path / "p", backend, wizer, module)
    env = hatch_env(tmp_path, wheelhouse)
    if front_end == "uv build":
        env["UV_PYTHON"] = sys.executable  # build in this environment, where hatch-wizer is
    result = run(FRONT_ENDS[front_end], root, **env)
    assert_one_clean_line(result, PREFIX[backend] + message)
    assert not list(root.rglob("*.whl")) and not (root / "prefix/lib").exists()


def test_a_good_project_builds_through_hatch_with_uv_find_links(
    tmp_path: Path, wheelhouse: Path
) -> None:
    """The Install section's route for hatch, end to end (the failure tests above stop early)."""
    root = make_project(tmp_path / "p", "hatchling", f'modules = ["{MODULE}"]', INIT)
    result = run(FRONT_ENDS["hatch build"], root, **hatch_env(tmp_path, wheelhouse))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wizer: {MODULE}: " in result.stderr


# --- editable installs -------------------------------------------------------------------------

SAMPLE = REPO / "sample_project"


def editable_install(root: Path, prefix: Path) -> Path:
    """`pip install -e root` into `prefix`; returns its site-packages."""
    cmd = [str(BIN / "pip"), "install", "--no-deps", "--no-build-isolation", "--prefix"]
    result = run([*cmd, str(prefix), "-e", str(root)], root)
    assert result.returncode == 0, result.stdout + result.stderr
    base = {"base": str(prefix), "platbase": str(prefix)}
    return Path(sysconfig.get_path("purelib", vars=base))


@pytest.mark.parametrize("route", ["hatch-wizer build --in-place", 'editable = "in-place"'])
def test_editable_package_loads_modules_wizened_in_place(tmp_path: Path, route: str) -> None:
    root = tmp_path / "sample"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("build", "dist", ".wizer"))
    original = (root / "src/sqlex/sqlex.wasm").read_bytes()
    if route.startswith("editable"):
        pyproject = root / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace("[tool.wizer]\n", f"[tool.wizer]\n{route}\n"))
    site = editable_install(root, tmp_path / "prefix")
    if route.startswith("hatch-wizer"):
        assert run([str(BIN / "hatch-wizer"), "build", "--in-place"], root).returncode == 0
    code = f"import site; site.addsitedir({str(site)!r}); import sqlex; print(sqlex.__file__, sqlex.Lexer().preinitialized)"
    loaded = run([sys.executable, "-c", code], tmp_path)
    assert loaded.stdout.split() == [str(root / "src/sqlex/__init__.py"), "True"], loaded.stderr
    assert (root / ".wizer/originals/src/sqlex/sqlex.wasm").read_bytes() == original
    # A later build still wizens from the original (the file in src/ has no init export now).
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", "dist", "."]
    built = run(cmd, root)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (root / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("sqlex/sqlex.wasm") == (root / "src/sqlex/sqlex.wasm").read_bytes()


def test_setuptools_editable_install_wizens_in_place_when_asked(tmp_path: Path) -> None:
    wizer = f'editable = "in-place"\nmodules = ["{MODULE}"]'
    root = make_project(tmp_path / "p", "setuptools", wizer, INIT)
    original = (root / MODULE).read_bytes()
    editable_install(root, tmp_path / "prefix")
    assert (root / ".wizer/originals" / MODULE).read_bytes() == original
    wizened = wasmtime.Module(wasmtime.Engine(), (root / MODULE).read_bytes())
    assert [e.name for e in wizened.exports] == []  # the init export is gone
