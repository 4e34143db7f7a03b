"""Both generations of the wizer command line, as data: Wizer 11's flags (with hatch-wizer's
own) and `wasmtime wizer`'s option groups `-W`, `-S`, `-C`, `-O` and `-D`.

Every flag that sets an option records `Change`s, in command-line order, on `args.changes`;
`apply()` makes `WizenOptions` of them over any base: the defaults for one module, or each
module's `[tool.wizer]` options in `hatch-wizer build`. So the last of two flags that set one
option wins, whichever form each is in. An option of `wasmtime wizer` that hatch-wizer cannot
honour is a usage error naming it, never ignored.
"""

# Annotations are evaluated, not postponed: NamedTuple compiles each string one (see
# test_architecture.py's `test_namedtuple_modules_evaluate_annotations`).

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from ..errors import UsageError
from ..names import OPTIONS
from ..options import (
    COMPILERS,
    DEFAULT_INIT_FUNC,
    MAX_DATA_SEGMENTS,
    OPT_LEVELS,
    REGALLOC_ALGORITHMS,
    UNKNOWN_IMPORT_POLICIES,
    Features,
    Preload,
    Preopen,
    WizenOptions,
    init_timeout_in_range,
    segment_count_in_range,
)

__all__ = ["GROUPS", "WIZER_FLAGS", "Change", "add_option_flags", "apply", "normalize_bool_flags"]


_N = TypeVar("_N", int, float)


# The flag tables' records are NamedTuples, not frozen dataclasses: each of those costs ~0.3 ms
# to create (a NamedTuple under 0.1 ms), and every CLI run imports this module.
class Change(NamedTuple):
    """One flag's effect: `field` (a `WizenOptions` field, or `features.NAME`) becomes
    `update(its current value)`."""

    field: str
    update: Callable[[Any], Any]


def apply(base: WizenOptions, changes: Iterable[Change]) -> WizenOptions:
    """`base` with `changes` applied in order."""
    options = base
    for change in changes:
        name, _, feature = change.field.partition(".")
        if feature:
            old = options.features
            new = old._replace(**{feature: change.update(getattr(old, feature))})
            options = options._replace(features=new)
        else:
            options = options._replace(**{name: change.update(getattr(options, name))})
    return options


def _set(field: str, value: object) -> Change:
    return Change(field, lambda _old: value)


def _append(field: str, item: object) -> Change:
    return Change(field, lambda old: (*old, item))


# --- values -----------------------------------------------------------------------------------

_TRUE: Final = ("true", "yes", "1", "on")
_FALSE: Final = ("false", "no", "0", "off")
# `wasmtime`'s option groups take these (and nothing else) for booleans.
_YES: Final = ("y", "yes", "true")
_NO: Final = ("n", "no", "false")


def _bool(text: str, flag: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(f"argument {flag}: expected true or false, not `{text}`")


def _pair(text: str, sep: str, flag: str, form: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not found or not left or not right or (sep == "::" and "::" in right):
        raise UsageError(f"{flag} `{text}` must have the form {form}")
    return left, right


def _env(text: str, flag: str) -> list[Change]:
    """`NAME=VALUE`, or a bare `NAME` for the host's value (none if the host has none), as
    `wasmtime wizer --env` reads it."""
    name, found, value = text.partition("=")
    if not name:
        raise UsageError(f"{flag} `{text}` must have the form NAME=VALUE or NAME")
    if not found:
        if name not in os.environ:
            return []
        value = os.environ[name]
    return [_append("env", (name, value))]


def _dir(text: str, flag: str, writable: bool = False) -> list[Change]:
    """`DIR` under its own name (both generations), or `HOST::GUEST` (`wasmtime wizer`)."""
    if "::" in text:
        host, guest = _pair(text, "::", flag, "HOST::GUEST")
    else:
        host = guest = text
    return [_append("preopens", Preopen(guest, Path(host), writable))]


def _mapdir(text: str, flag: str, writable: bool = False) -> list[Change]:
    guest, host = _pair(text, "::", flag, "GUEST::HOST")  # Wizer 11's order, unlike --dir's
    return [_append("preopens", Preopen(guest, Path(host), writable))]


def _preload(text: str, flag: str) -> list[Change]:
    name, path = _pair(text, "=", flag, "NAME=FILE")
    return [_append("preloads", Preload(name, Path(path)))]


def _rename(text: str, flag: str) -> list[Change]:
    return [_append("renames", _pair(text, "=", flag, "DST=SRC"))]


def _number(kind: Callable[[str], _N], text: str, flag: str, what: str) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"argument {flag}: expected {what}, not `{text}`") from None


def _init_timeout(text: str, flag: str) -> list[Change]:
    seconds = _number(float, text, flag, "a number of seconds")
    if seconds != 0 and not init_timeout_in_range(seconds):
        raise UsageError(
            f"argument {flag}: expected a positive number of seconds, or 0 for no limit, "
            f"not `{text}`"
        )
    return [_set("init_timeout", seconds or None)]


def _segment_count(text: str, flag: str) -> list[Change]:
    count = _number(int, text, flag, "a whole number")
    if not segment_count_in_range(count):
        raise UsageError(
            f"argument {flag}: expected 1 to {MAX_DATA_SEGMENTS} (the engines' limit), "
            f"not `{text}`"
        )
    return [_set("max_data_segments", count)]


_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str, flag: str) -> float | None:
    """`wasmtime`'s durations: `N` seconds, or `N` with a unit (`100ms`, `2s`, `5m`); 0 is
    no limit, as for --init-timeout."""
    match = re.fullmatch(r"(\d+)(ns|us|µs|ms|s|m|h)?", text)
    if not match:
        raise UsageError(f"{flag} expects a duration such as 30, 30s or 500ms, not `{text}`")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    return seconds or None


# --- Wizer 11's flags, and hatch-wizer's own ---------------------------------------------------


class Flag(NamedTuple):
    """A flag of the Wizer 11 form. `metavar` None: a switch, no value. `boolean`: takes
    `[=BOOL]` (bare means true), like Wizer's `--keep-init-func[=true|false]`."""

    names: tuple[str, ...]
    changes: Callable[[str, str], list[Change]]  # (value, flag as written) -> changes
    help: str
    metavar: str | None = "VALUE"
    boolean: bool = False
    choices: tuple[str, ...] | None = None


def _bool_flag(names: tuple[str, ...], field: str, help: str) -> Flag:
    return Flag(names, lambda v, f: [_set(field, _bool(v, f))], help, "[BOOL]", boolean=True)


def _switch(names: tuple[str, ...], field: str, value: object, help: str) -> Flag:
    return Flag(names, lambda _v, _f: [_set(field, value)], help, metavar=None)


def _choice_flag(names: tuple[str, ...], field: str, values: tuple[str, ...], help: str) -> Flag:
    metavar = "{" + ",".join(values) + "}"
    return Flag(names, lambda v, _f: [_set(field, v)], help, metavar, choices=values)


# Wasm proposals: every Features field but the relaxed SIMD profile.
_PROPOSALS: Final = tuple(
    "features." + name for name in Features._fields if name != "relaxed_simd_deterministic"
)
_FEATURE_FLAGS: Final = tuple(
    _bool_flag((OPTIONS[name].flag,), name, argparse.SUPPRESS) for name in _PROPOSALS
)

WIZER_FLAGS: Final[tuple[Flag, ...]] = (
    Flag(
        ("-f", "--init-func"),
        lambda v, _f: [_set("init_func", v)],
        f"the init export (default `{DEFAULT_INIT_FUNC}`); for a component also a call with "
        "WAVE arguments, e.g. 'add-string(\"hello\")' or 'ns:pkg/iface.func(1)'",
        "NAME",
    ),
    Flag(
        ("-r", "--rename-func", "--func-rename"),
        _rename,
        "export SRC as DST, replacing any DST export",
        "DST=SRC",
    ),
    _bool_flag(("--keep-init-func",), "keep_init_func", "keep the init export in the output"),
    _switch(
        ("--allow-wasi",),
        "allow_wasi",
        True,
        "link WASI during init (preview 1 for modules, preview 2 for components)",
    ),
    _bool_flag(
        ("--inherit-stdio",),
        "inherit_stdio",
        "give init this process's stdin/stdout/stderr (default true)",
    ),
    _bool_flag(
        ("--inherit-env",), "inherit_env", "give init this process's environment (default false)"
    ),
    Flag(
        ("--env",),
        _env,
        "set an environment variable for init; a bare NAME passes on this process's value",
        "NAME[=VALUE]",
    ),
    Flag(
        ("--dir",),
        _dir,
        "preopen DIR (read-only) under the same name, or host dir HOST as GUEST",
        "DIR|HOST::GUEST",
    ),
    Flag(("--mapdir",), _mapdir, "preopen host dir HOST (read-only) as GUEST", "GUEST::HOST"),
    Flag(
        ("--dir-rw",),
        lambda v, f: _dir(v, f, writable=True),
        "like --dir, writable",
        "DIR|HOST::GUEST",
    ),
    Flag(
        ("--mapdir-rw",),
        lambda v, f: _mapdir(v, f, writable=True),
        "like --mapdir, writable",
        "GUEST::HOST",
    ),
    Flag(
        ("--preload",),
        _preload,
        "instantiate FILE (.wasm or .wat) first; its exports satisfy imports from NAME",
        "NAME=FILE",
    ),
    *_FEATURE_FLAGS,
    _bool_flag(
        ("--relaxed-simd-deterministic",),
        "features.relaxed_simd_deterministic",
        "run relaxed SIMD by its deterministic profile (default true)",
    ),
    _choice_flag(
        ("--unknown-imports",),
        "unknown_imports",
        UNKNOWN_IMPORT_POLICIES,
        "imports nothing provides: trap if init calls them (default, as Wizer 11), reject the "
        "module before init (as `wasmtime wizer`), or return zeros",
    ),
    Flag(
        ("--init-timeout",),
        _init_timeout,
        "stop init after this long (default 600; 0 for no limit)",
        "SECONDS",
    ),
    _switch(
        ("--reproducible",),
        "reproducible",
        True,
        "deterministic init: fixed clocks (SOURCE_DATE_EPOCH), seeded random_get, no stdin",
    ),
    _switch(
        ("--check-determinism",),
        "check_determinism",
        True,
        "run init twice and fail, naming what differs, unless both runs agree",
    ),
    Flag(
        ("--max-data-segments",),
        _segment_count,
        f"data segments the output may hold in all (default and most {MAX_DATA_SEGMENTS})",
        "N",
    ),
    _switch(
        ("--no-cache",),
        "cache",
        False,
        "run init even if an earlier result could be reused; no compilation cache",
    ),
    _choice_flag(
        ("--compiler",),
        "compiler",
        COMPILERS,
        "compiler for the init run (default auto: Winch where it can, else unoptimized "
        "Cranelift; a long init of a small module runs again on optimized Cranelift code once "
        "that is ready; cranelift: optimized)",
    ),
    _switch(
        ("--precompile",),
        "precompile",
        True,
        "also write the output compiled ahead of time by this wasmtime, for machines of this "
        "OS and architecture: OUTPUT with the suffix .cwasm (hatch_wizer.load_module)",
    ),
)

BOOL_FLAGS: Final = frozenset(n for flag in WIZER_FLAGS if flag.boolean for n in flag.names)


def normalize_bool_flags(argv: Sequence[str]) -> list[str]:
    """Accept Wizer's `--flag`, `--flag=BOOL` and `--flag BOOL` spellings of boolean flags."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in BOOL_FLAGS:
            following = argv[i + 1].lower() if i + 1 < len(argv) else ""
            if following in ("true", "false"):
                out.append(f"{arg}={following}")
                i += 2
                continue
            out.append(f"{arg}=true")
        else:
            out.append(arg)
        i += 1
    return out


# --- `wasmtime wizer`'s option groups ------------------------------------------------------------


class Key(NamedTuple):
    """One KEY[=VALUE] of an option group: `changes(value or None, "-W key")`."""

    changes: Callable[[str | None, str], list[Change]]
    help: str
    form: str = "[=y|n]"


def _yes_no(value: str | None, key: str) -> bool:
    if value is None or value in _YES:
        return True
    if value in _NO:
        return False
    raise UsageError(f"{key} expects y or n, not `{value}`")


def _bool_key(help: str, *targets: str) -> Key:
    return Key(lambda v, k: [_set(t, _yes_no(v, k)) for t in targets], help)


def _fixed_key(help: str, why: str) -> Key:
    """A setting hatch-wizer always has: `=y` is honoured, `=n` is an error saying why."""

    def changes(value: str | None, key: str) -> list[Change]:
        if not _yes_no(value, key):
            raise UsageError(f"{key}=n cannot be honoured: {why}")
        return []

    return Key(changes, help)


def _value_key(help: str, form: str, convert: Callable[[str, str], list[Change]]) -> Key:
    def changes(value: str | None, key: str) -> list[Change]:
        if value is None:
            raise UsageError(f"{key} needs a value: {key}{form}")
        return convert(value, key)

    return Key(changes, help, form)


def _choice_key(help: str, field: str, choices: Mapping[str, object]) -> Key:
    def convert(value: str, key: str) -> list[Change]:
        if value not in choices:
            raise UsageError(f"{key} expects one of {', '.join(choices)}, not `{value}`")
        return [_set(field, choices[value])]

    return _value_key(help, "=" + "|".join(choices), convert)


def _policy_key(help: str, on: str) -> Key:
    """`unknown-imports-trap` / `-default`: `=y` selects policy `on`; `=n` turns it off,
    which leaves wasmtime's strict default (reject) where that policy was the one in force."""

    def changes(value: str | None, key: str) -> list[Change]:
        if _yes_no(value, key):
            return [_set("unknown_imports", on)]
        return [Change("unknown_imports", lambda old: "reject" if old == on else old)]

    return Key(changes, help)


def _proposal_key(field: str) -> str:
    """A proposal's `-W` key: its `--wasm-` flag's name (`simd`, `tail-call`)."""
    return OPTIONS[field].flag.removeprefix("--wasm-")


WASM_KEYS: Final[Mapping[str, Key]] = {
    **{
        _proposal_key(name): _bool_key(f"the {_proposal_key(name)} proposal", name)
        for name in _PROPOSALS
    },
    "relaxed-simd-deterministic": _bool_key(
        "relaxed SIMD by its deterministic profile (default y)",
        "features.relaxed_simd_deterministic",
    ),
    "all-proposals": _bool_key("every proposal above", *_PROPOSALS),
    "unknown-imports-trap": _policy_key(
        "imports nothing provides trap if init calls them (hatch-wizer's default, as Wizer 11); "
        "=n rejects such a module before init (`wasmtime wizer`'s default)",
        "trap",
    ),
    "unknown-imports-default": _policy_key(
        "imports nothing provides return zeros (core modules)", "default"
    ),
    "timeout": _value_key(
        "stop init after this long (1, 2s, 100ms; as --init-timeout)",
        "=N|Ns|Nms|..",
        lambda v, k: [_set("init_timeout", _duration(v, k))],
    ),
    "component-model": _fixed_key(
        "components (always on)", "hatch-wizer always accepts components"
    ),
}
WASI_KEYS: Final[Mapping[str, Key]] = {
    "cli": _bool_key("link WASI during init (as --allow-wasi)", "allow_wasi"),
    "common": _bool_key("old name of cli", "allow_wasi"),
    "inherit-env": _bool_key("give init this process's environment", "inherit_env"),
    "inherit-stdin": _bool_key("give init this process's stdin (default y)", "inherit_stdin"),
    "inherit-stdout": _bool_key("give init this process's stdout (default y)", "inherit_stdout"),
    "inherit-stderr": _bool_key("give init this process's stderr (default y)", "inherit_stderr"),
    "preview2": _fixed_key(
        "preview 1 on wasmtime's preview 2 implementation (always)",
        "wasmtime-py has no legacy WASI implementation",
    ),
    "cwd": _value_key(
        "a component's initial working directory (preview 1 modules have none)",
        "=DIR",
        lambda v, _k: [_set("wasi_cwd", v)],
    ),
}
CODEGEN_KEYS: Final[Mapping[str, Key]] = {
    "cache": _bool_key("reuse earlier results and compiled code (=n: as --no-cache)", "cache"),
    "parallel-compilation": _bool_key("compile on all cores (default y)", "parallel_compilation"),
    "compiler": _choice_key(
        "the init run's compiler (as --compiler)",
        "compiler",
        {"cranelift": "cranelift", "winch": "winch"},
    ),
}
OPTIMIZE_KEYS: Final[Mapping[str, Key]] = {
    "opt-level": _choice_key(
        "Cranelift's optimization of the init run's code (init speed only)",
        "opt_level",
        {level: level for level in OPT_LEVELS},
    ),
    "regalloc-algorithm": _choice_key(
        "Cranelift's register allocator for the init run (single-pass: faster to compile)",
        "regalloc_algorithm",
        {name: name for name in REGALLOC_ALGORITHMS},
    ),
}


class Group(NamedTuple):
    """A `wasmtime` option group, `-W KEY[=VAL][,KEY[=VAL]...]`: the keys hatch-wizer honours,
    and the rest of wasmtime 49's, which are errors that say so."""

    names: tuple[str, str]
    title: str
    keys: Mapping[str, Key]
    wasmtime_only: frozenset[str]

    def changes(self, text: str, flag: str) -> list[Change]:
        out: list[Change] = []
        for item in text.split(","):
            key, found, value = item.partition("=")
            out += self._key(key, flag).changes(value if found else None, f"{flag} {key}")
        return out

    def _key(self, key: str, flag: str) -> Key:
        if key in self.keys:
            return self.keys[key]
        if key in self.wasmtime_only or (flag == "-C" and key.startswith("cranelift-")):
            raise UsageError(
                f"{flag} {key} is a `wasmtime wizer` option that hatch-wizer cannot honour "
                f"(`{flag} help` lists those it can)"
            )
        import difflib  # only for a mistake: the CLI's start stays light

        hint = difflib.get_close_matches(key, [*self.keys, *self.wasmtime_only], n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UsageError(f"{flag} {key!r} is not a {self.title} option{maybe}")

    def help_text(self) -> str:
        width = max((len(k + key.form) for k, key in self.keys.items()), default=0)
        rows = [f"  {self.names[0]} {(k + key.form):>{width}} -- {key.help}"
                for k, key in self.keys.items()]  # fmt: skip
        lines = [f"{self.title} options hatch-wizer honours:", "", *rows] if rows else [
            f"hatch-wizer honours no {self.title} options."
        ]
        others = ", ".join(sorted(self.wasmtime_only))
        lines += ["", f"wasmtime's others, which are errors here: {others}"]
        return "\n".join(lines)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


GROUPS: Final[tuple[Group, ...]] = (
    Group(
        ("-W", "--wasm"),
        "wasm",
        WASM_KEYS,
        _names(
            "nan-canonicalization fuel epoch-interruption max-wasm-stack async-stack-size "
            "async-stack-zeroing unknown-exports-allow wmemcheck max-memory-size "
            "max-table-elements max-instances max-tables max-memories trap-on-grow-failure "
            "shared-memory shared-everything-threads component-model-async "
            "component-model-more-async-builtins component-model-async-stackful "
            "component-model-threading component-model-error-context component-model-gc "
            "component-model-map component-model-memory64 stack-switching branch-hinting "
            "extended-const gc-support component-model-fixed-length-lists "
            "component-model-implements concurrency-support"
        ),
    ),
    Group(
        ("-S", "--wasi"),
        "wasi",
        WASI_KEYS,
        _names(
            "cli-exit-with-code nn threads http http-outgoing-body-buffer-chunks "
            "http-outgoing-body-chunk-size config keyvalue listenfd tcplisten tls nn-graph "
            "inherit-network allow-ip-name-lookup tcp udp network-error-code preview0 "
            "config-var keyvalue-in-memory-data p3 max-resources hostcall-fuel "
            "max-component-handles max-random-size max-http-fields-size"
        ),
    ),
    Group(
        ("-C", "--codegen"),
        "codegen",
        CODEGEN_KEYS,
        _names(
            "collector cranelift-debug-verifier cache-config native-unwind-info inlining "
            "metadata-for-internal-asserts metadata-for-gc-heap-corruption"
        ),
    ),
    Group(
        ("-O", "--optimize"),
        "optimize",
        OPTIMIZE_KEYS,
        _names(
            "memory-may-move memory-reservation memory-reservation-for-growth "
            "memory-guard-size gc-heap-may-move gc-heap-reservation "
            "gc-heap-reservation-for-growth gc-heap-guard-size gc-heap-initial-size "
            "guard-before-linear-memory table-lazy-init pooling-allocator "
            "pooling-decommit-batch-size pooling-memory-keep-resident "
            "pooling-table-keep-resident pooling-memory-protection-keys "
            "pooling-max-memory-protection-keys memory-init-cow "
            "memory-guaranteed-dense-image-size pooling-total-core-instances "
            "pooling-total-component-instances pooling-total-memories pooling-total-tables "
            "pooling-total-stacks pooling-max-memory-size pooling-table-elements "
            "pooling-max-core-instance-size pooling-max-unused-warm-slots "
            "pooling-async-stack-keep-resident pooling-max-component-instance-size "
            "pooling-max-core-instances-per-component pooling-max-memories-per-component "
            "pooling-max-tables-per-component pooling-max-tables-per-module "
            "pooling-max-memories-per-module pooling-total-gc-heaps signals-based-traps "
            "dynamic-memory-guard-size static-memory-guard-size static-memory-forced "
            "static-memory-maximum-size dynamic-memory-reserved-for-growth "
            "pooling-pagemap-scan gc-zeal-alloc-counter"
        ),
    ),
    Group(
        ("-D", "--debug"),
        "debug",
        {},
        _names(
            "debug-info guest-debug address-map logging log-to-files coredump debugger arg "
            "inherit-stdin inherit-stdout inherit-stderr max-backtrace symbols"
        ),
    ),
)

# `wasmtime wizer`'s flags with nothing to map to here: (names, takes a value).
WASMTIME_ONLY_FLAGS: Final = (
    (("-R", "--record"), True),
    (("--target",), True),
    (("--config",), True),
    (("--allow-precompiled",), False),
    (("--profile",), True),
    (("-g", "--gdbstub"), True),
)


# --- argparse ------------------------------------------------------------------------------------


class _Record(argparse.Action):
    """Appends the flag's `Change`s to `namespace.changes`, in command-line order."""

    def __init__(
        self, option_strings: list[str], dest: str, *, to_changes: Callable[[str, str], Any],
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(option_strings, dest="changes", default=None, **kwargs)
        self.to_changes = to_changes

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: Any, option_string: str | None = None,
    ) -> None:  # fmt: skip
        changes = list(getattr(namespace, "changes", None) or [])
        value = values if isinstance(values, str) else ""  # a switch's is []
        changes += self.to_changes(value, option_string or "")
        namespace.changes = changes


class _GroupAction(_Record):
    def __init__(self, option_strings: list[str], dest: str, *, group: Group, **kw: Any) -> None:
        self.group = group
        super().__init__(option_strings, dest, to_changes=self._changes, **kw)

    def _changes(self, text: str, flag: str) -> list[Change]:
        return self.group.changes(text, self.group.names[0])

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: Any, option_string: str | None = None,
    ) -> None:  # fmt: skip
        if values in ("help", "help-long"):
            print(self.group.help_text())
            parser.exit(0)
        super().__call__(parser, namespace, values, option_string)


class _Refuse(argparse.Action):
    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: Any, option_string: str | None = None,
    ) -> None:  # fmt: skip
        raise UsageError(
            f"{option_string} is a `wasmtime wizer` option that hatch-wizer cannot honour"
        )


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """Both generations' option flags; `apply(base, args.changes or [])` reads them back."""
    wizer = parser.add_argument_group("Wizer 11's options (and hatch-wizer's own)")
    for flag in WIZER_FLAGS:
        wizer.add_argument(
            *flag.names,
            action=_Record,
            to_changes=flag.changes,
            nargs=0 if flag.metavar is None else None,
            metavar=flag.metavar,
            choices=flag.choices,
            help=flag.help,
        )
    wasmtime = parser.add_argument_group(
        "`wasmtime wizer`'s options (-f, -r, --keep-init-func, --preload, --dir HOST[::GUEST] "
        "and --env NAME[=VAL] above are shared)"
    )
    for group in GROUPS:
        wasmtime.add_argument(
            *group.names,
            action=_GroupAction,
            group=group,
            metavar="KEY[=VAL[,..]]",
            help=f"{group.title} options, `{group.names[0]} help` to see them",
        )
    for names, takes_value in WASMTIME_ONLY_FLAGS:
        wasmtime.add_argument(
            *names, action=_Refuse, nargs=None if takes_value else 0, help=argparse.SUPPRESS
        )
