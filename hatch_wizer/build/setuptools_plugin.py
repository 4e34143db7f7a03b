"""The setuptools face: a `build_wizer` sub-command of `build`, added when `[tool.wizer]` exists.

setuptools calls `finalize_distribution_options` for every build in an environment where
hatch-wizer is installed, so it does nothing unless the project has a `[tool.wizer]` table.

Failures leave the command as a distutils error, which setuptools prints as one `error:` line
(exit status 1) in every front end; any other exception would print a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import setuptools
from setuptools import Command, Distribution
from setuptools.errors import BaseError

from ..errors import ConfigError, WizerError
from ..files import CWASM_SUFFIX, write_output
from .config import ModuleFile, find_modules, load_config, read_pyproject
from .project import EDITABLE_HINT, in_place_files, wizen_in_place, wizen_modules
from .summary import describe

__all__ = ["build_wizer", "finalize_distribution_options"]

COMMAND = "build_wizer"
# The oldest setuptools with editable wheels and build_py's output mapping (62 and 63 fail
# in the middle of a build); tests/test_setuptools_plugin.py runs on it in `.ci/run`.
OLDEST_SETUPTOOLS = 64
# setuptools routes its own messages through the root logger and sets its level from -v/-q.
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except WizerError as e:
        raise BaseError(f"hatch-wizer: {e}") from None


def _root(dist: Distribution) -> Path:
    return Path(dist.src_root or os.curdir).resolve()


def _has_table(root: Path) -> bool:
    try:
        tool = read_pyproject(root).get("tool")
    except ConfigError:
        return False  # not ours to report: setuptools reads pyproject.toml itself
    return isinstance(tool, dict) and "wizer" in tool


def finalize_distribution_options(dist: Distribution) -> None:
    """Register `build_wizer` and run it as the last sub-command of `build`."""
    if not _has_table(_root(dist)):
        return
    with _one_line_errors():
        _check_setuptools(setuptools.__version__)
    if _precompiles(_root(dist)):
        # A .cwasm is native code: the package goes to platlib and bdist_wheel's root is not
        # pure, as with a C extension (whose absence build_ext then finds).
        dist.has_ext_modules = lambda: True
        dist.cmdclass["bdist_wheel"] = _any_python_wheel(dist.get_command_class("bdist_wheel"))
    dist.cmdclass.setdefault(COMMAND, build_wizer)
    base = dist.get_command_class("build")
    if any(name == COMMAND for name, _ in base.sub_commands):
        return
    # A subclass rather than a patched `build.sub_commands`, so no other project is affected.
    dist.cmdclass["build"] = type(
        "build", (base,), {"sub_commands": [*base.sub_commands, (COMMAND, None)]}
    )


def _precompiles(root: Path) -> bool:
    """Whether any module gets a .cwasm (a bad config is build_wizer's to report)."""
    try:
        config = load_config(read_pyproject(root), root)
    except ConfigError:
        return False
    return config is not None and any(spec.options.precompile for spec in config.modules)


def _any_python_wheel(base: Any) -> Any:
    """`bdist_wheel` tagging a wheel with .cwasm files, native code for one OS and architecture
    but for any Python, `py3-none-PLATFORM` (an extension module's would be `cp311-cp311-`)."""

    def get_tag(self: Any) -> tuple[str, str, str]:
        return self.python_tag, "none", base.get_tag(self)[2]

    return type("bdist_wheel", (base,), {"get_tag": get_tag})


def _check_setuptools(version: str) -> None:
    major = re.match(r"\d+", version)
    if major and int(major.group()) < OLDEST_SETUPTOOLS:
        raise ConfigError(
            f"setuptools {version} is too old for hatch-wizer's [tool.wizer] step; it needs "
            f"setuptools>={OLDEST_SETUPTOOLS} (put it in [build-system] requires)"
        )


class build_wizer(Command):  # type: ignore[misc]  # setuptools names commands in snake_case
    """Wizen `[tool.wizer]` modules from their source files into `build_lib`."""

    description = "pre-initialize the WebAssembly modules listed in [tool.wizer]"
    user_options: ClassVar = [("build-lib=", "d", "directory of the files to put in the wheel")]

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        if self.editable_mode:
            with _one_line_errors():
                self._editable()
            return
        with _one_line_errors():
            dests = dict(self._plan())
            # Always from the source file: build_lib may hold last build's wizened copy.
            for module, data, result in wizen_modules(list(dests), report=_report):
                write_output(dests[module], data, module.source)
                if result.precompiled:
                    cwasm = dests[module].with_suffix(CWASM_SUFFIX)
                    write_output(cwasm, result.precompiled.data, module.source)
                log.info(f"{COMMAND}: {describe(result)}")

    def _editable(self) -> None:
        root = _root(self.distribution)
        config = load_config(read_pyproject(root), root)
        if config is None or config.editable != "in-place":
            log.warning(f"{COMMAND}: {EDITABLE_HINT}")
            return
        modules = find_modules(config, exclude=[Path(self.build_lib or "build")])
        wizen_in_place(modules, lambda line: log.info(f"{COMMAND}: {line}"), report=_report)

    def get_source_files(self) -> list[str]:
        # Not via `_plan()`: sdist asks during egg_info, before build_py may be consulted.
        root = _root(self.distribution)
        with _one_line_errors():
            modules = self._modules(root)
        # An --in-place module's original goes too, so a wheel built from the sdist finds it.
        files = [f for m in modules for f in (m.source, *in_place_files(m))]
        return [str(f.relative_to(root)) for f in files]

    def get_outputs(self) -> list[str]:
        if self.editable_mode:
            return []
        with _one_line_errors():
            plan = self._plan()
        outputs = []
        for module, dest in plan:
            outputs.append(str(dest))
            if module.spec.options.precompile:
                outputs.append(str(dest.with_suffix(CWASM_SUFFIX)))
        return outputs

    def get_output_mapping(self) -> dict[str, str]:
        if self.editable_mode:
            return {}
        with _one_line_errors():
            return {str(d): str(m.source) for m, d in self._plan()}

    def _plan(self) -> list[tuple[ModuleFile, Path]]:
        """Each configured module with its destination, from build_py's package-data map."""
        root = _root(self.distribution)
        modules = self._modules(root)
        build_py = self.get_finalized_command("build_py")
        outputs = {
            Path(root, src).resolve(): Path(dst)
            for dst, src in build_py.get_output_mapping().items()
        }
        plan = []
        for module in modules:
            dest = outputs.get(module.source.resolve())
            if dest is None:
                raise _not_package_data(module)
            plan.append((module, dest))
        return plan

    def _modules(self, root: Path) -> list[ModuleFile]:
        config = load_config(read_pyproject(root), root)
        if config is None:
            return []
        return find_modules(config, exclude=[Path(self.build_lib or "build")])


def _report(module: ModuleFile, line: str) -> None:
    say = log.warning if line.startswith("warning:") else log.debug
    say(f"{COMMAND}: {module.name}: {line}")


def _not_package_data(module: ModuleFile) -> WizerError:
    return ConfigError(
        f"{module.spec.where}.path: {module.name} is not package data of this distribution "
        "(list it in [tool.setuptools.package-data])"
    )
