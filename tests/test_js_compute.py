"""A real caller of a wizer binary: Fastly's `@fastly/js-compute` 3.46 (npm) builds a JS app
once with the Rust Wizer it ships and once with hatch-wizer in that binary's place.

js-compute runs the binary `@bytecodealliance/wizer` names (its platform package's `wizer`
file), with Wizer's flags (`--allow-wasi --inherit-env=true --dir=. -r _start=wizer.resume
-o=OUT`, the JS file's path on stdin); it has no option for another path, so users put a shim
there. The install is kept in benches/.work/js-compute between runs; its `wizer` becomes such
a shim, which runs the Rust binary unless HATCH_WIZER_TEST_WIZER names another.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hatch_wizer.wasm.parse import parse_module

pytestmark = pytest.mark.slow  # a real toolchain: 2 s warm; a first run installs it (~20 s)

PACKAGE = "@fastly/js-compute@3.46"
PREFIX = Path(__file__).parents[1] / "benches" / ".work" / "js-compute"
CLI = PREFIX / "node_modules/@fastly/js-compute/dist/cli/js-compute-runtime-cli.js"
SHIM = """#!/bin/sh
exec "${HATCH_WIZER_TEST_WIZER:-$0.rust}" "$@"
"""
APP = """/// <reference types="@fastly/js-compute" />
const table = [];
for (let i = 0; i < 5000; i++) table.push({ n: i, square: i * i, name: "row" + i });
const byName = new Map(table.map((row) => [row.name, row]));
addEventListener("fetch", (event) => {
  const row = byName.get(new URL(event.request.url).pathname.slice(1)) || table[0];
  event.respondWith(new Response(JSON.stringify(row)));
});
"""


@pytest.fixture(scope="module")
def wizer_binary() -> Path:
    """The binary js-compute runs, turned into the dispatching shim (once per install)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm is not installed")
    if not CLI.exists():
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(PREFIX),
             PACKAGE],
            check=True, timeout=600,
        )  # fmt: skip
    where = subprocess.run(
        [node, "--input-type=module", "-e",
         "console.log((await import('@bytecodealliance/wizer')).default)"],
        cwd=CLI.parent, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    binary = Path(where.stdout.strip())
    rust = binary.with_name(binary.name + ".rust")
    if not rust.exists():
        binary.replace(rust)
        binary.write_text(SHIM)
        binary.chmod(0o755)
    return binary


def build(app: Path, out: Path, wizer: Path | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HATCH_WIZER_TEST_WIZER"}
    if wizer is not None:
        env["HATCH_WIZER_TEST_WIZER"] = str(wizer)
    result = subprocess.run(
        ["node", str(CLI), str(app), str(out)],
        cwd=app.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.is_file()


def validate(wasm: Path) -> None:
    tool = Path(sys.executable).with_name("wasm-tools")
    subprocess.run(
        [str(tool if tool.exists() else "wasm-tools"), "validate", str(wasm)],
        check=True, timeout=120,
    )  # fmt: skip


def interface(wasm: Path) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """Imports and exports, with their kinds (parsed: compiling 12 MB twice would take 10 s)."""
    module = parse_module(wasm.read_bytes())
    imports = [(i.module, i.name, int(i.kind)) for i in module.imports]
    return imports, [(e.name, int(e.kind)) for e in module.exports]


def test_js_compute_builds_the_same_app_with_hatch_wizer(
    wizer_binary: Path, tmp_path: Path
) -> None:
    app = tmp_path / "index.js"
    app.write_text(APP)
    hatch = tmp_path / "hatch-wizer"
    hatch.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hatch_wizer "$@"\n')
    hatch.chmod(0o755)
    rust_out, hatch_out = tmp_path / "rust.wasm", tmp_path / "hatch.wasm"
    build(app, rust_out, None)
    build(app, hatch_out, hatch)
    for out in (rust_out, hatch_out):
        validate(out)
        exports = [name for name, _kind in interface(out)[1]]
        assert "wizer.initialize" not in exports and "wizer-initialize" not in exports
        assert "_start" in exports  # wizer.resume, renamed
        # The table the app built at top level is in the snapshot, not built at start-up.
        assert b"row4999" in out.read_bytes()
    assert interface(hatch_out) == interface(rust_out)
