"""Wizen the modules a project's `[tool.wizer]` names: `hatch-wizer build` and the shared runner.

The hatch hook and the setuptools plugin reuse `wizen_modules()`, and all front ends print
`summary.describe()`'s line per module. Messages from a module's wizening name its options as
`[tool.wizer]` keys here, for every pyproject-driven front end.

`hatch-wizer build --in-place` is the one way to write over a configured module: the original
goes to `.wizer/originals/` first, and every build reads it from there for as long as the
module's file still holds what `--in-place` wrote (`--restore` puts the originals back).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Final

from ..cache import result_key
from ..cache.key import file_hash
from ..core import REUSED, precompile, wizen
from ..engine.interrupts import INIT_GROUP, InitGroup
from ..errors import ConfigError, WizerError
from ..files import CWASM_SUFFIX, read_module, write_atomically, write_output
from .config import ModuleFile, find_modules, load_config, read_pyproject
from .flags import Change, add_option_flags, apply, normalize_bool_flags
from .summary import Result, describe

__all__ = [
    "EDITABLE_HINT",
    "KEPT_DIR",
    "cwasm_name",
    "in_place_files",
    "kept_original",
    "kept_originals",
    "main_build",
    "module_digest",
    "read_input",
    "wizen_in_place",
    "wizen_module",
    "wizen_modules",
]

DEFAULT_OUT_DIR: Final = Path("build", "wizer")
STAMP_SUFFIX: Final = ".wizer-hash"
# Where `--in-place` keeps originals, under the project root, by project-relative path;
# beside each, NAME.wizened holds the sha256 of what was written over the module.
KEPT_DIR: Final = Path(".wizer", "originals")
WIZENED_SUFFIX: Final = ".wizened"
# What the hooks say in an editable build, which loads modules from the source tree.
EDITABLE_HINT: Final = (
    "editable install: the package loads its modules from the source tree, so they are not "
    "wizened; `hatch-wizer build --in-place` wizens them there, as does every editable install "
    'with editable = "in-place" in [tool.wizer] (the originals are kept; '
    "`hatch-wizer build --restore` puts them back)"
)

Reporter = Callable[[str], None]
ModuleReporter = Callable[[ModuleFile, str], None]


def _engine() -> Callable[..., bytes]:
    """`core.wizen`, through a seam the tests replace (core loads the engine when called)."""
    return wizen


def wizen_module(module: ModuleFile, report: Reporter | None = None) -> tuple[bytes, Result]:
    """Read the module's input and wizen it with its options; messages name TOML keys. With
    `precompile`, the result's `precompiled` holds the bytes of its `.cwasm` (`cwasm_name()`)."""
    data = read_input(module)
    reused = False

    def say(line: str) -> None:
        nonlocal reused
        reused = reused or line.startswith(REUSED)
        if report is not None:
            report(line)

    options = module.spec.options
    start = time.perf_counter()
    try:
        out = _engine()(data, options, report=say, names=module.spec.key_path)
        cwasm = precompile(out, options, report=report) if options.precompile else None
    except WizerError as e:
        raise e.about(module.name, module.spec.key_path) from None
    elapsed = time.perf_counter() - start
    return out, Result(module.name, len(data), len(out), elapsed, reused, cwasm)


def cwasm_name(name: str) -> str:
    """Where a module's pre-compiled code goes: `pkg/mod.wasm` -> `pkg/mod.cwasm`."""
    return PurePosixPath(name).with_suffix(CWASM_SUFFIX).as_posix()


def read_input(module: ModuleFile) -> bytes:
    """The bytes to wizen: the module's file, or its original if `--in-place` replaced it."""
    path = kept_original(module) or module.source
    try:
        with path.open("rb") as f:
            return read_module(f)
    except WizerError as e:
        raise e.about(module.name) from None
    except OSError as e:
        raise ConfigError(f"{module.spec.where}.path: cannot read {path}: {e.strerror}") from None


def kept_original(module: ModuleFile) -> Path | None:
    """The original `--in-place` kept, while the module's file holds what it wrote there."""
    return None if module.root is None else _kept(module.root, module.name)


def in_place_files(module: ModuleFile) -> list[Path]:
    """The kept original of an `--in-place` module and its record, which an sdist needs."""
    kept = kept_original(module)
    return [] if kept is None else [kept, _wizened_record(kept)]


def kept_originals(root: Path) -> dict[str, Path]:
    """Every module name of the project whose original `--in-place` keeps, to that file."""
    names = (
        p.relative_to(root / KEPT_DIR).as_posix()
        for p in sorted((root / KEPT_DIR).rglob("*"))
        if p.is_file() and not p.name.endswith(WIZENED_SUFFIX)
    )
    return {name: kept for name in names if (kept := _kept(root, name))}


def _kept(root: Path, name: str) -> Path | None:
    kept = root / KEPT_DIR / name
    wrote = _read_stamp(_wizened_record(kept))
    if wrote is None or not kept.is_file():
        return None
    return kept if file_hash(root / name) == wrote.split()[0] else None


def _wizened_record(kept: Path) -> Path:
    return kept.with_name(kept.name + WIZENED_SUFFIX)


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
    """Hash of everything that decides the module's outputs: the result cache's key (which
    holds the wasmtime release, the one that also writes a .cwasm), and whether one is made."""
    key = result_key(read_input(module), module.spec.options)
    # One word, as the stamp's fields are split on spaces.
    return f"{key}+precompiled" if module.spec.options.precompile else key


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
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help=f"where outputs go (default: PROJECT/{DEFAULT_OUT_DIR.as_posix()}); never onto a "
        "configured module",
    )
    where.add_argument(
        "--in-place",
        action="store_true",
        help=f"write each output over its module, keeping the original in "
        f"PROJECT/{KEPT_DIR.as_posix()} (later builds wizen from it): what an editable "
        "install loads",
    )
    where.add_argument(
        "--restore",
        action="store_true",
        help="put back the originals that --in-place kept",
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
        if config is None:
            raise ConfigError(f"{root / 'pyproject.toml'}: no [tool.wizer] table")
        if args.restore:
            _restore(find_modules(config), say)
        elif args.in_place:
            modules = _overridden(find_modules(config), args.changes)
            _build(modules, _InPlace(), args.force, say)
        else:
            _check_out_dir(out_dir, find_modules(config))
            # Without earlier outputs, which a glob could match.
            modules = _overridden(find_modules(config, exclude=[out_dir]), args.changes)
            _build(modules, _OutDir(out_dir), args.force, say)
    except (WizerError, OSError) as e:
        print(f"hatch-wizer build: error: {e}", file=sys.stderr)
        return 1
    return 0


class _OutDir:
    """Outputs under a directory, each with a stamp of what it holds and what made it."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def up_to_date(self, module: ModuleFile, digest: str) -> bool:
        """Made from these inputs, and still holding what was written (not emptied, say);
        with precompile, its .cwasm is there too."""
        record = _read_stamp(_stamp(self.out_dir, module))
        if record is None or record.split()[1:] != [digest]:
            return False
        cwasm = self.out_dir / cwasm_name(module.name)
        if module.spec.options.precompile and not cwasm.is_file():
            return False
        return file_hash(self.out_dir / module.name) == record.split()[0]

    def write(self, module: ModuleFile, data: bytes, digest: str, result: Result) -> None:
        write_output(self.out_dir / module.name, data, module.source)
        cwasm = self.out_dir / cwasm_name(module.name)
        if result.precompiled:
            write_output(cwasm, result.precompiled.data, module.source)
        else:
            cwasm.unlink(missing_ok=True)  # an earlier build's: the outputs match the config
        write_atomically(_stamp(self.out_dir, module), _record(data, digest))


class _InPlace:
    """Outputs over their modules, each original kept first (see the module docstring); no
    .cwasm goes into the source tree."""

    def up_to_date(self, module: ModuleFile, digest: str) -> bool:
        kept = kept_original(module)
        record = _read_stamp(_wizened_record(kept)) if kept else None
        return record is not None and record.split()[1:] == [digest]

    def write(self, module: ModuleFile, data: bytes, digest: str, result: Result) -> None:
        assert module.root is not None  # find_modules found it in the tree
        kept = module.root / KEPT_DIR / module.name
        if kept_original(module) is None:  # the file is an original: keep it before all else
            write_atomically(kept, module.source.read_bytes())
        # The record first: should the output not follow, the file still reads as an original.
        write_atomically(_wizened_record(kept), _record(data, digest))
        write_atomically(module.source, data)


def wizen_in_place(
    modules: Sequence[ModuleFile], say: Reporter, report: ModuleReporter | None = None
) -> None:
    """What `--in-place` does, for the modules of the source tree (an editable build's)."""
    _build([m for m in modules if m.root is not None], _InPlace(), False, say, report)


def _build(
    modules: Sequence[ModuleFile],
    target: _OutDir | _InPlace,
    force: bool,
    say: Reporter,
    report: ModuleReporter | None = None,
) -> None:
    stale = []
    if isinstance(target, _InPlace):
        modules = [_without_precompile(m) for m in modules]
    for module in modules:
        digest = module_digest(module)
        if not force and target.up_to_date(module, digest):
            say(f"{module.name}: up to date")
        else:
            stale.append((module, digest))
    digests = dict(stale)
    for module, data, result in wizen_modules(list(digests), report=report or _warnings):
        target.write(module, data, digests[module], result)
        say(describe(result))


def _without_precompile(module: ModuleFile) -> ModuleFile:
    """`module` with precompile off (in place: no .cwasm goes into the source tree)."""
    options = module.spec.options._replace(precompile=False)
    return replace(module, spec=replace(module.spec, options=options))


def _restore(modules: Sequence[ModuleFile], say: Reporter) -> None:
    for module in modules:
        kept = kept_original(module)
        if kept is None:
            continue
        write_atomically(module.source, kept.read_bytes())
        _wizened_record(kept).unlink()
        kept.unlink()
        for parent in kept.parents:  # the directories left empty, up to .wizer itself
            if parent == module.root or any(parent.iterdir()):
                break
            parent.rmdir()
        say(f"{module.name}: restored")


def _check_out_dir(out_dir: Path, modules: Sequence[ModuleFile]) -> None:
    """No output may land on a configured module (`--out-dir .` would replace them all).

    `modules` are found without excluding `out_dir`; the earlier outputs among them (a stamp
    beside each) are not sources."""
    sources = {
        path: m.name
        for m in modules
        if not (path := m.source.resolve()).with_name(path.name + STAMP_SUFFIX).is_file()
    }
    for module in modules:
        replaced = sources.get((out_dir / module.name).resolve())
        if replaced is not None:
            what = "itself" if replaced == module.name else f"the module {replaced}"
            raise ConfigError(
                f"--out-dir {out_dir} would write {module.name} over {what}, and inputs are "
                "never overwritten (--in-place does it on purpose, keeping the originals)"
            )


def _overridden(modules: list[ModuleFile], changes: list[Change] | None) -> list[ModuleFile]:
    """The modules with the command line's options applied over their configured ones."""
    if not changes:
        return modules
    return [
        replace(m, spec=replace(m.spec, options=apply(m.spec.options, changes))) for m in modules
    ]


def _stamp(out_dir: Path, module: ModuleFile) -> Path:
    """The record (see `_record`) of `out_dir / module.name`, beside it."""
    return out_dir / (module.name + STAMP_SUFFIX)


def _record(data: bytes, digest: str) -> bytes:
    """A stamp's or an `--in-place` record's text: the output's sha256, then the digest of the
    inputs that made it (the result cache's key)."""
    return f"{hashlib.sha256(data).hexdigest()} {digest}\n".encode()


def _warnings(module: ModuleFile, line: str) -> None:
    if line.startswith("warning:"):
        print(f"hatch-wizer build: {module.name}: {line}", file=sys.stderr)


def _read_stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
