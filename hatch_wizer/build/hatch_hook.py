"""The hatchling build hook `wizer`: ship wizened modules in standard wheels.

hatchling imports this module for every build that names any third-party hook, so it must
stay cheap: the engine (and wasmtime) is imported only when a module is wizened.

A failure ends the build through `app.abort()`, hatchling's way for a plugin to stop with a
message: one line and exit status 1 in every front end, where an exception would print a
traceback around it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.plugin import hookimpl

from ..errors import ConfigError, WizerError
from .config import ModuleFile, WizerConfig, find_modules, load_config, read_pyproject
from .project import EDITABLE_HINT, cwasm_name, kept_originals, wizen_in_place, wizen_modules
from .summary import describe

__all__ = ["WizerBuildHook", "hatch_register_build_hook"]


class WizerBuildHook(BuildHookInterface[BuilderConfig]):
    """Wizen each `[tool.wizer]` module into a temp dir and map it onto its own wheel path."""

    PLUGIN_NAME = "wizer"

    _tmp: Path | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        try:
            self._initialize(version, build_data)
        except (WizerError, OSError) as e:  # OSError: an output or a kept original not written
            self.app.abort(f"hatch-wizer: error: {e}")

    def _initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "sdist":  # the sdist keeps the original modules, as inputs
            for name, kept in kept_originals(Path(self.root)).items():
                build_data["force_include"][str(kept)] = name  # not the --in-place output
            return
        if self.target_name != "wheel":
            return
        config = self._config()
        if config is None:
            self.app.display_warning("wizer: no [tool.wizer] table; nothing to do")
        elif version == "editable" and config.editable == "in-place":
            wizen_in_place(find_modules(config), self._say, report=self._stage)
        elif version == "editable":
            self.app.display_warning(f"wizer: {EDITABLE_HINT}")
        else:
            self._wizen_wheel(config, build_data)

    def _wizen_wheel(self, config: WizerConfig, build_data: dict[str, Any]) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="hatch-wizer-"))
        # `finalize` is skipped by `--hooks-only` and when a later hook fails.
        atexit.register(shutil.rmtree, self._tmp, ignore_errors=True)
        try:
            if self._wizen_all(config, build_data["force_include"], self._tmp):
                self._mark_platform_specific(build_data)
        except BaseException:
            self._cleanup()
            raise
        if os.environ.get("HATCH_BUILD_HOOKS_ONLY") in {"1", "true"}:
            self._cleanup()

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._cleanup()

    def _config(self) -> WizerConfig | None:
        root = Path(self.root)
        return load_config(
            read_pyproject(root), root, overrides=self.config, overrides_where=self._where()
        )

    def _where(self) -> str:
        """TOML path of the table `self.config` came from (a target table wins over global)."""
        hatch = self.metadata.config.get("tool", {}).get("hatch", {})
        targets = hatch.get("build", {}).get("targets", {})
        if self.PLUGIN_NAME in targets.get(self.target_name, {}).get("hooks", {}):
            return f"tool.hatch.build.targets.{self.target_name}.hooks.{self.PLUGIN_NAME}"
        return f"tool.hatch.build.hooks.{self.PLUGIN_NAME}"

    def _wizen_all(self, config: WizerConfig, force_include: dict[str, str], tmp: Path) -> bool:
        """Wizen the modules into `tmp` and map them onto their wheel paths; whether any of
        them was also precompiled (its .cwasm mapped beside it)."""
        precompiled = False
        root = Path(self.root)
        # Modules that earlier hooks force-included are found under their wheel paths.
        forced = {dst: Path(root, src) for src, dst in force_include.items()}
        generated = {dst: src for dst, src in forced.items() if src.is_file()}
        dist_paths: dict[ModuleFile, str] = {}
        for module in find_modules(config, generated=generated):
            in_wheel = module.name in generated
            dist_path = (
                module.name if in_wheel else self.build_config.get_distribution_path(module.name)
            )
            if dist_path in dist_paths.values():  # matched as a project file and a wheel path
                continue
            if not (tmp / dist_path).resolve().is_relative_to(tmp.resolve()):  # `..` in it
                raise ConfigError(
                    f"{module.spec.where}.path: {module.name} would be written outside the "
                    "build directory"
                )
            dist_paths[module] = dist_path
        for module, data, result in wizen_modules(list(dist_paths), report=self._stage):
            dist_path = dist_paths[module]
            out = tmp / dist_path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            for src in [s for s, d in force_include.items() if d == dist_path]:
                del force_include[src]  # replace the earlier hook's mapping, not add a second
            force_include[str(out)] = dist_path
            if result.precompiled:
                cwasm = tmp / cwasm_name(dist_path)
                cwasm.write_bytes(result.precompiled.data)
                force_include[str(cwasm)] = cwasm_name(dist_path)
                precompiled = True
            self._say(describe(result))
        return precompiled

    def _mark_platform_specific(self, build_data: dict[str, Any]) -> None:
        """A .cwasm is native code for one OS and architecture, for any Python: the wheel goes
        to platlib, tagged `py3-none-PLATFORM` (PLATFORM as hatchling infers it), unless an
        earlier hook chose a tag."""
        from hatchling.builders.wheel import WheelBuilder

        build_data["pure_python"] = False
        builder = self.build_config.builder
        if "tag" in build_data:
            return
        if not isinstance(builder, WheelBuilder):  # a wheel builder of another kind
            build_data["infer_tag"] = True
            return
        python = builder.get_default_tag().split("-")[0]
        platform = builder.get_best_matching_tag().split("-")[-1]
        build_data["tag"] = f"{python}-none-{platform}"

    def _say(self, line: str) -> None:
        self.app.display_success(f"wizer: {line}")

    def _stage(self, module: ModuleFile, line: str) -> None:
        if line.startswith("warning:"):  # e.g. init read the clock: the build should say so
            self.app.display_warning(f"wizer: {module.name}: {line}")
        else:
            self.app.display_debug(f"wizer: {module.name}: {line}")

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


@hookimpl
def hatch_register_build_hook() -> type[BuildHookInterface[BuilderConfig]]:
    return WizerBuildHook
