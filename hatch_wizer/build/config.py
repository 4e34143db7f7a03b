"""The one loader of `[tool.wizer]`: pyproject.toml in, validated per-module `WizenOptions` out.

The hatch hook, the setuptools plugin and `hatch-wizer build` all call `load_config()` and
`find_modules()`; nothing else reads the table.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import ConfigError
from ..names import OPTIONS
from ..options import (
    COMPILERS,
    MAX_DATA_SEGMENTS,
    OPT_LEVELS,
    REGALLOC_ALGORITHMS,
    UNKNOWN_IMPORT_POLICIES,
    Preload,
    Preopen,
    WizenOptions,
    init_timeout_in_range,
    segment_count_in_range,
)

__all__ = [
    "HATCH_RESERVED_KEYS",
    "ModuleFile",
    "ModuleSpec",
    "WizerConfig",
    "find_modules",
    "load_config",
    "matches",
    "read_pyproject",
]

# Keys hatchling reads from every hook table itself; they are never wizening options.
HATCH_RESERVED_KEYS: Final = frozenset(
    {
        "dependencies",
        "enable-by-default",
        "require-runtime-dependencies",
        "require-runtime-features",
    }
)

# Builds default to deterministic init; the CLI keeps the engine's own default.
BUILD_DEFAULTS: Final = WizenOptions(reproducible=True)

# Every key of names.OPTIONS, to its field; keys without a converter below are switches.
_KEY_FIELDS: Final = {n.key: field for field, n in OPTIONS.items() if n.key is not None}
_OPTION_KEYS: Final = frozenset(_KEY_FIELDS)
# What an editable build does: skip wizening (the package loads the source tree's modules),
# or wizen them in place as `hatch-wizer build --in-place` does, keeping the originals.
EDITABLE_MODES: Final = ("skip", "in-place")
_TOP_KEYS: Final = _OPTION_KEYS | {"modules", "editable"}
# Options that only mean something to WASI, which init sees only with allow-wasi.
_WASI_KEYS: Final = ("preopens", "env", "inherit-env")
_MODULE_KEYS: Final = _OPTION_KEYS | {"path"}


@dataclass(frozen=True)
class ModuleSpec:
    """One entry of `tool.wizer.modules`: a path or glob and the options it is wizened with."""

    pattern: str
    options: WizenOptions
    where: str  # TOML path of the entry, for messages
    # (key, TOML path of the table that set it) for each option key set for this module
    origins: tuple[tuple[str, str], ...] = ()

    def key_path(self, field: str) -> str:
        """The TOML path of the key of option `field` for this module: where it was set, else
        in the module's own entry (`tool.wizer.modules[0].init-func`)."""
        names = OPTIONS.get(field)
        if names is None or names.key is None:
            return names.flag if names else field  # no key: the flag is the only spelling
        return f"{dict(self.origins).get(names.key, self.where)}.{names.key}"


@dataclass(frozen=True)
class WizerConfig:
    """The validated `[tool.wizer]` of one project."""

    root: Path
    modules: tuple[ModuleSpec, ...]
    editable: str = "skip"  # one of EDITABLE_MODES


@dataclass(frozen=True)
class ModuleFile:
    """A concrete module to wizen: `name` is the project-relative (or wheel) path it matched."""

    name: str
    source: Path
    spec: ModuleSpec
    root: Path | None = None  # the project's, for a file of its tree (not a generated one)


def read_pyproject(root: Path) -> dict[str, object]:
    """Parse `root/pyproject.toml`; a missing or malformed file is a ConfigError."""
    path = root / "pyproject.toml"
    try:
        with path.open("rb") as f:
            data: dict[str, object] = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    except UnicodeDecodeError as e:  # TOML is UTF-8; tomllib decodes before it parses
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return data


def load_config(
    pyproject: Mapping[str, object],
    root: Path,
    *,
    overrides: Mapping[str, object] | None = None,
    overrides_where: str = "tool.hatch.build.hooks.wizer",
) -> WizerConfig | None:
    """Validate `[tool.wizer]`, with `overrides` replacing its keys one by one.

    Returns None when the project has no `[tool.wizer]` table and no overrides, so front ends
    stay inert in projects that don't use them. Relative host paths resolve against `root`.
    """
    tool = pyproject.get("tool", {})
    table = tool.get("wizer") if isinstance(tool, Mapping) else None
    extra = {k: v for k, v in (overrides or {}).items() if k not in HATCH_RESERVED_KEYS}
    if table is None and not extra:
        return None
    table = _table(table if table is not None else {}, "tool.wizer")
    _check_keys(table, _TOP_KEYS, "tool.wizer")
    _check_keys(extra, _TOP_KEYS, overrides_where)
    wheres = {k: "tool.wizer" for k in table} | {k: overrides_where for k in extra}
    merged = {**table, **extra}
    base = _apply(BUILD_DEFAULTS, merged, wheres, root)
    inherited = tuple((k, w) for k, w in wheres.items() if k != "modules")
    modules_where = f"{wheres.get('modules', 'tool.wizer')}.modules"
    entries = _array(merged.get("modules", []), modules_where)
    specs = tuple(
        _module_spec(entry, base, f"{modules_where}[{i}]", root, inherited)
        for i, entry in enumerate(entries)
    )
    if not specs:
        raise ConfigError(
            f"{modules_where} lists no modules, so nothing would be wizened "
            '(add modules = ["path/to/module.wasm"], or remove [tool.wizer])'
        )
    editable = merged.get("editable", "skip")
    if editable not in EDITABLE_MODES:
        at = f"{wheres.get('editable')}.editable"
        raise ConfigError(f"{at} must be one of {', '.join(map(repr, EDITABLE_MODES))}")
    return WizerConfig(root=root, modules=specs, editable=str(editable))


def find_modules(
    config: WizerConfig,
    *,
    generated: Mapping[str, Path] | None = None,
    exclude: Iterable[Path] = (),
) -> list[ModuleFile]:
    """Expand every module pattern to files, sorted; a pattern matching nothing is an error.

    `generated` maps names (wheel paths) of modules that other build steps produced outside
    the tree to their files; patterns match those names as well as the project's files.
    Globs skip hidden directories (`.venv`, `.git`) and anything under `exclude`.
    """
    found: list[ModuleFile] = []
    skip = tuple(p.resolve() for p in exclude)
    for spec in config.modules:
        tree = _tree_matches(config.root, spec.pattern, skip)
        hits = {**tree, **{n: p for n, p in (generated or {}).items() if matches(spec.pattern, n)}}
        if not hits:
            raise ConfigError(f"{spec.where}.path: no file matches {spec.pattern!r}")
        found.extend(
            ModuleFile(n, p, spec, config.root if tree.get(n) == p else None)
            for n, p in sorted(hits.items())
        )
    _check_unique(found)
    return found


def matches(pattern: str, name: str) -> bool:
    """Glob match on `/`-separated paths: `*` and `?` stay within a segment, `**/` spans any."""
    return _glob_regex(pattern).fullmatch(name) is not None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return re.compile("".join(out))


def _tree_matches(root: Path, pattern: str, skip: tuple[Path, ...]) -> dict[str, Path]:
    if not any(c in pattern for c in "*?"):
        path = root / pattern
        return {pattern: path} if path.is_file() else {}
    hits: dict[str, Path] = {}
    for path in root.glob(pattern):
        name = path.relative_to(root).as_posix()
        hidden = any(part.startswith(".") for part in name.split("/")[:-1])
        excluded = any(path.resolve().is_relative_to(s) for s in skip)
        if path.is_file() and not hidden and not excluded and matches(pattern, name):
            hits[name] = path
    return hits


def _check_unique(found: Iterable[ModuleFile]) -> None:
    seen: dict[str, str] = {}
    for m in found:
        if m.name in seen and seen[m.name] != m.spec.where:
            raise ConfigError(
                f"{m.spec.where}.path: {m.name} is also matched by {seen[m.name]}.path"
            )
        seen[m.name] = m.spec.where


def _module_spec(
    entry: object,
    base: WizenOptions,
    where: str,
    root: Path,
    inherited: tuple[tuple[str, str], ...] = (),
) -> ModuleSpec:
    if isinstance(entry, str):  # shorthand: a bare path
        entry = {"path": entry}
    table = _table(entry, where)
    _check_keys(table, _MODULE_KEYS, where)
    if "path" not in table:
        raise ConfigError(f"{where}.path is required")
    pattern = _string(table["path"], f"{where}.path")
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ConfigError(f"{where}.path must be a relative path inside the project")
    options = {k: v for k, v in table.items() if k != "path"}
    spec = ModuleSpec(
        pattern,
        _apply(base, options, dict.fromkeys(options, where), root),
        where,
        (*((k, w) for k, w in inherited if k not in options), *((k, where) for k in options)),
    )
    _check_wasi(spec)
    return spec


def _check_wasi(spec: ModuleSpec) -> None:
    """WASI-only options without allow-wasi would fail late, as a missing WASI import."""
    if spec.options.allow_wasi:
        return
    for key in _WASI_KEYS:
        if getattr(spec.options, _KEY_FIELDS[key]):
            at = spec.key_path(_KEY_FIELDS[key])
            set_at = "allow-wasi" in dict(spec.origins)  # if not, ask for it beside `at`
            allow = spec.key_path("allow_wasi") if set_at else f"{at.rpartition('.')[0]}.allow-wasi"
            raise ConfigError(
                f"{at} needs {allow} = true: init sees no WASI without it, "
                f"so {spec.pattern} would fail on its first WASI call"
            )


def _apply(
    base: WizenOptions, table: Mapping[str, object], wheres: Mapping[str, str], root: Path
) -> WizenOptions:
    """Return `base` with every option key of `table` applied (`modules` is skipped)."""
    changes: dict[str, object] = {}
    features: dict[str, bool] = {}
    for key, value in table.items():
        if key in ("modules", "editable"):  # the project's, not a module's
            continue
        at = f"{wheres[key]}.{key}"
        field = _KEY_FIELDS[key]
        if field.startswith("features."):
            features[field.removeprefix("features.")] = _bool(value, at)
        elif key in _CONVERTERS:
            changes[field] = _CONVERTERS[key](value, at, root)
        else:
            changes[field] = _bool(value, at)
    if features:
        changes["features"] = base.features._replace(**features)
    return base._replace(**changes)  # type: ignore[arg-type]


def _conv_init_func(value: object, at: str, root: Path) -> object:
    name = _string(value, at)
    if not name:
        raise ConfigError(f"{at} must not be empty")
    return name


def _conv_renames(value: object, at: str, root: Path) -> object:
    return tuple(_string_table(value, at, 'a table of dst = "src" strings').items())


def _conv_env(value: object, at: str, root: Path) -> object:
    return tuple(_string_table(value, at, "a table of strings").items())


def _conv_preopens(value: object, at: str, root: Path) -> object:
    preopens: list[Preopen] = []
    for guest, spec in _table(value, at).items():
        where = f"{at}.{_key_repr(guest)}"
        if not guest.startswith("/"):
            raise ConfigError(f"{where}: guest path must be absolute (start with '/')")
        if isinstance(spec, str):
            preopens.append(Preopen(guest, _host_dir(spec, where, root)))
            continue
        table = _table(spec, where, 'a string or a table { path = "...", writable = true }')
        _check_keys(table, _PREOPEN_KEYS, where)
        if "path" not in table:
            raise ConfigError(f"{where}.path is required")
        outside = _bool(table.get(_OUTSIDE, False), f"{where}.{_OUTSIDE}")
        host = _host_dir(_string(table["path"], f"{where}.path"), f"{where}.path", root, outside)
        writable = _bool(table.get("writable", False), f"{where}.writable")
        preopens.append(Preopen(guest, host, writable))
    return tuple(preopens)


def _conv_wasi_cwd(value: object, at: str, root: Path) -> object:
    return _string(value, at)


def _choice(value: object, at: str, values: tuple[str, ...]) -> str:
    numeric = isinstance(value, int) and not isinstance(value, bool)
    text = str(value) if numeric else _string(value, at)  # opt-level = 2 reads as "2"
    if text not in values:
        raise ConfigError(f"{at} must be one of {', '.join(map(repr, values))}")
    return text


def _choice_converter(values: tuple[str, ...]) -> _Converter:
    """A key whose value is one of `values`."""
    return lambda value, at, root: _choice(value, at, values)


def _conv_preload(value: object, at: str, root: Path) -> object:
    table = _string_table(value, at, 'a table of name = "path/to/module.wasm" strings')
    return tuple(Preload(name, root / path) for name, path in table.items())


def _conv_max_segments(value: object, at: str, root: Path) -> object:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{at} must be an integer")
    if not segment_count_in_range(value):
        raise ConfigError(f"{at} must be between 1 and {MAX_DATA_SEGMENTS} (the engines' limit)")
    return value


def _conv_timeout(value: object, at: str, root: Path) -> object:
    if value is False:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not init_timeout_in_range(value)  # also nan and inf, which TOML allows
    ):
        raise ConfigError(f"{at} must be a positive number of seconds, or false for no limit")
    return float(value)


# A key's value from its TOML value (`at` names the key, `root` the project); the field it
# sets is the key's row in names.OPTIONS.
_Converter = Callable[[object, str, Path], object]
_CONVERTERS: Final[Mapping[str, _Converter]] = {
    "init-func": _conv_init_func,
    "renames": _conv_renames,
    "env": _conv_env,
    "preopens": _conv_preopens,
    "preload": _conv_preload,
    "max-data-segments": _conv_max_segments,
    "init-timeout": _conv_timeout,
    "wasi-cwd": _conv_wasi_cwd,
    "unknown-imports": _choice_converter(UNKNOWN_IMPORT_POLICIES),
    "compiler": _choice_converter(COMPILERS),
    "opt-level": _choice_converter(OPT_LEVELS),
    "regalloc-algorithm": _choice_converter(REGALLOC_ALGORITHMS),
}


# The preopen key that says a directory outside the project is meant (its tree is hashed
# into every cache key, and a build from the sdist will not find it).
_OUTSIDE: Final = "outside-project"
_PREOPEN_KEYS: Final = frozenset({"path", "writable", _OUTSIDE})


def _host_dir(path: str, at: str, root: Path, outside: bool = False) -> Path:
    if not path:
        raise ConfigError(f"{at} must not be empty")
    host = (root / path).resolve()
    if not outside and not host.is_relative_to(root.resolve()):
        entry = at.removesuffix(".path")
        raise ConfigError(
            f"{at}: {path} is outside the project, and preopens are relative to it; if it is "
            f'meant, write {entry} = {{ path = "{path}", {_OUTSIDE} = true }}'
        )
    return host


def _check_keys(table: Mapping[str, object], known: frozenset[str], where: str) -> None:
    for key in table:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}.{_key_repr(key)} is not a known option{maybe}")


def _key_repr(key: str) -> str:
    # TOML bare keys print as they are; anything else (like a guest path) is quoted.
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _table(value: object, at: str, what: str = "a table") -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at} must be {what}")
    return dict(value)


def _array(value: object, at: str) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(f"{at} must be an array of tables")
    return value


def _string(value: object, at: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{at} must be a string")
    return value


def _bool(value: object, at: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{at} must be a boolean")
    return value


def _string_table(value: object, at: str, what: str) -> dict[str, str]:
    table = _table(value, at, what)
    for key, item in table.items():
        if not isinstance(item, str):
            raise ConfigError(f"{at}.{_key_repr(key)} must be a string")
    return {k: str(v) for k, v in table.items()}
