"""Wizen the modules a project's `[tool.wizer]` names: `hatch-wizer build` and the shared runner.

The hatch hook and the setuptools plugin reuse `wizen_modules()`, and all front ends print
`summary.describe()`'s line per module.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Final

from ..cache import result_key
from ..engine.interrupts import INIT_GROUP, InitGroup
from ..errors import ConfigError, WizerError
from ..files import read_module, write_atomically, write_output
from .config import ModuleFile, find_modules, load_config, read_pyproject
from .flags import Change, add_option_flags, apply, normalize_bool_flags
from .summary import Result, describe

__all__ = ["main_build", "module_digest", "wizen_module", "wizen_modules"]

DEFAULT_OUT_DIR: Final = Path("build", "wizer")
STAMP_SUFFIX: Final = ".wizer-hash"

Reporter = Callable[[str], None]
ModuleReporter = Callable[[ModuleFile, str], None]


def _engine() -> Callable[..., bytes]:
    from ..core import wizen  # lazy: the engine imports wasmtime

    return wizen


def wizen_module(module: ModuleFile, report: Reporter | None = None) -> tuple[bytes, Result]:
    """Read the module's source file and wizen it with its options."""
    data = _read_source(module)
    start = time.perf_counter()
    try:
        out = _engine()(data, module.spec.options, report=report)
    except WizerError as e:
        raise type(e)(f"{module.name}: {e}") from None
    elapsed = time.perf_counter() - start
    return out, Result(module.name, len(data), len(out), elapsed)


def wizen_modules(
    modules: Sequence[ModuleFile], report: ModuleReporter | None = None
) -> Iterator[tuple[ModuleFile, bytes, Result]]:
    """Wizen `modules` side by side, one thread each up to the number of cores (wasmtime
    compiles and runs wasm without holding the GIL); results come in the given order.

    A failure, or Ctrl-C (which the waiting main thread catches), interrupts the inits still
    running on other threads before it propagates."""

    def run(module: ModuleFile) -> tuple[bytes, Result]:
        return wizen_module(module, report=partial(report, module) if report else None)

    workers = min(len(modules), os.cpu_count() or 1)
    if workers <= 1:  # on this thread, whose wait for init a signal ends directly
        for module in modules:
            yield module, *run(module)
        return
    group = InitGroup()

    def run_in_group(module: ModuleFile) -> tuple[bytes, Result]:
        INIT_GROUP.set(group)  # in a worker thread's own context
        return run(module)

    with ThreadPoolExecutor(workers, thread_name_prefix="hatch-wizer") as pool:
        futures = [pool.submit(run_in_group, module) for module in modules]
        try:
            for module, future in zip(modules, futures):
                yield module, *future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            group.stop()
            raise


def module_digest(module: ModuleFile) -> str:
    """Hash of everything that decides the module's output (the result cache's key)."""
    return result_key(_read_source(module), module.spec.options)


def _read_source(module: ModuleFile) -> bytes:
    with module.source.open("rb") as f:
        try:
            return read_module(f)
        except WizerError as e:
            raise type(e)(f"{module.name}: {e}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatch-wizer build",
        usage="hatch-wizer build [--project DIR] [--out-dir DIR] [--force] [-q] [OPTIONS]",
        description="Wizen every module listed in [tool.wizer], without building a wheel. "
        "Options of `hatch-wizer` (either form) apply over each module's configured ones.",
        epilog="Outputs keep their project-relative paths under the output directory. "
        "Exit status: 0 ok (or up to date), 1 a module or the config failed, 2 bad usage, "
        "130 interrupted, 143 terminated.",
    )
    parser.add_argument(
        "--project", type=Path, default=Path(), metavar="DIR", help="project root (default: .)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help=f"where outputs go (default: PROJECT/{DEFAULT_OUT_DIR.as_posix()})",
    )
    parser.add_argument("--force", action="store_true", help="wizen even if up to date")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    add_option_flags(parser)  # override [tool.wizer] for every module
    return parser


def main_build(argv: Sequence[str]) -> int:
    """`hatch-wizer build [--project DIR] [--out-dir DIR]`; returns the exit status."""
    try:
        args = _parser().parse_args(normalize_bool_flags(argv))
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    say: Reporter = (lambda _line: None) if args.quiet else print
    try:
        root = args.project.resolve()
        out_dir = (args.out_dir or root / DEFAULT_OUT_DIR).resolve()
        config = load_config(read_pyproject(root), root)
        if config is None or not config.modules:
            raise ConfigError(f"{root / 'pyproject.toml'}: no modules in [tool.wizer]")
        stale = []
        for module in _overridden(find_modules(config, exclude=[out_dir]), args.changes):
            digest = module_digest(module)
            if not args.force and _up_to_date(out_dir, module, digest):
                say(f"{module.name}: up to date")
            else:
                stale.append((module, digest))
        digests = dict(stale)
        for module, data, result in wizen_modules(list(digests), report=_warnings):
            write_output(out_dir / module.name, data, module.source)
            write_atomically(_stamp(out_dir, module), (digests[module] + "\n").encode())
            say(describe(result))
    except (WizerError, OSError) as e:
        print(f"hatch-wizer build: error: {e}", file=sys.stderr)
        return 1
    return 0


def _overridden(modules: list[ModuleFile], changes: list[Change] | None) -> list[ModuleFile]:
    """The modules with the command line's options applied over their configured ones."""
    if not changes:
        return modules
    return [
        replace(m, spec=replace(m.spec, options=apply(m.spec.options, changes))) for m in modules
    ]


def _up_to_date(out_dir: Path, module: ModuleFile, digest: str) -> bool:
    out = out_dir / module.name
    return out.is_file() and _read_stamp(_stamp(out_dir, module)) == digest


def _stamp(out_dir: Path, module: ModuleFile) -> Path:
    """The hash of the inputs that made `out_dir / module.name`, beside it."""
    return out_dir / (module.name + STAMP_SUFFIX)


def _warnings(module: ModuleFile, line: str) -> None:
    if line.startswith("warning:"):
        print(f"hatch-wizer build: {module.name}: {line}", file=sys.stderr)


def _read_stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
