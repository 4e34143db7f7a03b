"""What hatch-wizer needs of wasmtime-py beyond its stable public API, for every release it
supports (SUPPORTED, as declared in pyproject.toml).

Every private wasmtime-py name the package uses is reached here and nowhere else. `require()`
checks once, on first use, that the installed release has each of them (and
`require_component()` the component names, once a component is wizened); otherwise it raises
`UnsupportedWasmtime`, one line naming the installed version and the range, instead of an
AttributeError in the middle of a build. The check is by capability, not version: 39-43 lack
`wasmtime_exnref_t` (exception references came in 44), which `_FIELDS` asks for, and the
version is looked up (importlib.metadata, ~12 ms of imports) only for the message.

The internals that remain, each because no public API does the job:
- `_ffi.wasmtime_config_strategy_set`: `Config.strategy` takes only "auto" and "cranelift";
  Winch (strategy 2) compiles several times faster.
- `_ffi.wasmtime_module_new` and `wasmtime_module_validate` with `Module._from_ptr` and
  `WasmtimeError._from_ptr`: `Module()` and `Module.validate` first copy the bytes into a
  ctypes array, 100 MB more at the peak for a 100 MB module.
- `_ffi.wasmtime_instance_export_get` with `_extern.wrap_extern`: the only lookup of one export
  by name; `Instance.exports()` wraps every export of the instance on each call.
- `_ffi.wasmtime_global_get` and `wasmtime_val_t`: `Global.value()` sets the quiet bit of f32
  NaNs and cannot read v128 values or GC references.
- `_ffi.wasmtime_table_get`, `wasmtime_func_to_raw` and the private fields of the reference
  structs: `Table.get()` returns a new `Func` each time, with no identity that could be
  compared or mapped back to a function index.
- `_ffi.wasmtime_func_call` with `Trap._from_ptr`: a call with i32 arguments in ~2 µs, where
  `Func.__call__` takes ~15 (the benchmarks time start-ups; the package does not need it).
- `Store._context()` and the `_instance`, `_global`, `_table` and `_func` handles those C
  functions take.
- `component.VariantType._tagged()`: whether wasmtime-py wants a `Variant` for a case.

Public API that differs inside the range is bridged here too: 44 lacks `Linker.
define_unknown_imports_as_traps` and `..._as_default_values`, `Config.cranelift_flag_set`,
`Config.max_wasm_stack` and the `Config` properties of the newer proposals (all fall back to
the C functions that 45 wraps); `WasiConfig.preopen_dir` takes permission enums before 48 and
a bool since; component type maps hold `ComponentExtern`s since 49.
"""

from __future__ import annotations

import ctypes
import importlib
import re
from functools import cache
from types import ModuleType
from typing import Any

import wasmtime

from ..errors import UnsupportedWasmtime

__all__ = [
    "ANYREF",
    "EXNREF",
    "EXTERNREF",
    "FUNCREF",
    "SUPPORTED",
    "call_i32",
    "compile_module",
    "component_item_type",
    "define_unknown_imports_as_default_values",
    "define_unknown_imports_as_traps",
    "export",
    "func_identity",
    "preopen_dir",
    "read_global",
    "read_table",
    "require",
    "require_component",
    "set_config",
    "set_cranelift_flag",
    "set_winch",
    "validate_module",
    "variant_is_tagged",
]

_OLDEST = 44
SUPPORTED = f"wasmtime>={_OLDEST}"  # the dependency in pyproject.toml (a test keeps them equal)

# Value kinds of `wasmtime_val_t`.
_I32 = 0
_V128 = 4
FUNCREF = 5
EXTERNREF = 6
ANYREF = 7
EXNREF = 8

_FFI = (
    "wasmtime_config_strategy_set",
    "wasmtime_config_cranelift_flag_set",
    "wasmtime_module_new",
    "wasmtime_module_validate",
    "wasmtime_module_t",
    "wasmtime_extern_t",
    "wasmtime_instance_export_get",
    "wasmtime_val_t",
    "wasmtime_global_get",
    "wasmtime_table_get",
    "wasmtime_val_unroot",
    "wasmtime_func_to_raw",
    "wasmtime_func_call",
    "wasm_trap_t",
)
_FIELDS = {
    "wasmtime_func_t": ("store_id", "__private"),
    "wasmtime_externref_t": ("__private1", "__private2", "__private3"),
    "wasmtime_anyref_t": ("store_id",),
    "wasmtime_exnref_t": ("store_id",),
    "wasmtime_valunion_t": ("i32", "i64", "v128", "funcref", "externref", "anyref", "exnref"),
    "wasmtime_val_t": ("kind", "of"),
}
_METHODS = (
    (wasmtime.Store, "_context"),
    (wasmtime.Module, "_from_ptr"),
    (wasmtime.WasmtimeError, "_from_ptr"),
    (wasmtime.Trap, "_from_ptr"),
)
# Config properties that 44 lacks: set through the C function the property wraps in 45+.
_NEWER_CONFIG = (
    "wasm_gc",
    "wasm_function_references",
    "wasm_wide_arithmetic",
    "wasm_custom_page_sizes",
    "wasm_component_model",
    "native_unwind_info",
)


def installed_version() -> str:
    from importlib import metadata  # only for a message: it imports email, zipfile, csv ...

    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # a vendored copy: its names are checked all the same
        return getattr(wasmtime, "__version__", "(unknown version)")


def _unsupported(problem: str) -> UnsupportedWasmtime:
    return UnsupportedWasmtime(
        f"wasmtime-py {installed_version()} {problem}; hatch-wizer supports {SUPPORTED} "
        f"(pip install '{SUPPORTED}')"
    )


def _lacking(missing: list[str]) -> UnsupportedWasmtime:
    """The error for a release without `missing`: too old, or one that renamed them."""
    major = re.match(r"\d+", installed_version())
    if major and int(major.group()) < _OLDEST:
        return _unsupported("is older than hatch-wizer needs")
    return _unsupported(f"lacks {', '.join(missing)}, which hatch-wizer uses")


@cache
def require() -> ModuleType:
    """wasmtime's ctypes bindings, once the installed release is known to have all we use."""
    try:
        ffi = importlib.import_module("wasmtime._ffi")
        importlib.import_module("wasmtime._extern").wrap_extern  # noqa: B018
    except (ImportError, AttributeError):
        raise _lacking(["the module wasmtime._ffi or wasmtime._extern"]) from None
    missing = [f"_ffi.{name}" for name in _FFI if not hasattr(ffi, name)]
    for struct, fields in _FIELDS.items():
        have = {field[0] for field in getattr(getattr(ffi, struct, None), "_fields_", ())}
        missing += [f"_ffi.{struct}.{field}" for field in fields if field not in have]
    missing += [f"{cls.__name__}.{name}" for cls, name in _METHODS if not hasattr(cls, name)]
    for name in _NEWER_CONFIG:
        if not _is_property(wasmtime.Config, name) and not hasattr(ffi, _config_setter(name)):
            missing.append(f"Config.{name}")
    for policy in ("traps", "default_values"):
        method = f"define_unknown_imports_as_{policy}"
        if not hasattr(wasmtime.Linker, method) and not hasattr(ffi, f"wasmtime_linker_{method}"):
            missing.append(f"Linker.{method}")
    if missing:
        raise _lacking(missing)
    return ffi


@cache
def require_component() -> None:
    """`require()`, and the names the component pipeline uses (`wasmtime.component` costs
    ~5 ms to import: a core module's run never loads it)."""
    require()
    from wasmtime import component

    if not hasattr(component.VariantType, "_tagged"):
        raise _lacking(["component.VariantType._tagged"])


def _handle(obj: Any, name: str) -> Any:
    """A private handle of a wasmtime-py object (`_func`, `_global`, ...), or a clear error."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _lacking([f"{type(obj).__name__}.{name}"]) from None


def _is_property(cls: type, name: str) -> bool:
    return isinstance(getattr(cls, name, None), property)


def _config_setter(name: str) -> str:
    return f"wasmtime_config_{name}_set"


def set_config(config: wasmtime.Config, name: str, value: bool | int) -> None:
    """`config.<name> = value`; on a release without that property, the C setter it wraps.
    (An unknown property would be set on the Python object and silently do nothing.)"""
    if _is_property(type(config), name):
        setattr(config, name, value)
    else:
        getattr(require(), _config_setter(name))(config.ptr(), value)


def set_cranelift_flag(config: wasmtime.Config, key: str, value: str) -> None:
    """Cranelift's setting `key`: `Config.cranelift_flag_set`, or before 45 the C function it
    wraps. A key or value Cranelift does not know aborts the process when the engine is made:
    callers pass fixed ones only."""
    if hasattr(type(config), "cranelift_flag_set"):
        config.cranelift_flag_set(key, value)
    else:
        require().wasmtime_config_cranelift_flag_set(config.ptr(), key.encode(), value.encode())


def set_winch(config: wasmtime.Config) -> None:
    require().wasmtime_config_strategy_set(config.ptr(), 2)


def define_unknown_imports_as_traps(linker: wasmtime.Linker, module: wasmtime.Module) -> None:
    """Every import the linker lacks becomes a function that traps when called."""
    if hasattr(linker, "define_unknown_imports_as_traps"):
        linker.define_unknown_imports_as_traps(module)
    else:
        ffi = require()
        _check(ffi.wasmtime_linker_define_unknown_imports_as_traps(linker.ptr(), module.ptr()))


def define_unknown_imports_as_default_values(
    linker: wasmtime.Linker, store: wasmtime.Store, module: wasmtime.Module
) -> None:
    """Every import the linker lacks becomes a default value (functions return zeros)."""
    if hasattr(linker, "define_unknown_imports_as_default_values"):
        linker.define_unknown_imports_as_default_values(store, module)
    else:
        ffi = require()
        _check(
            ffi.wasmtime_linker_define_unknown_imports_as_default_values(
                linker.ptr(), store._context(), module.ptr()
            )
        )


def _check(error: Any) -> None:
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def _bytes_pointer(wasm: bytes) -> Any:
    """A pointer to the bytes themselves (the caller keeps `wasm` alive during the call)."""
    return ctypes.cast(ctypes.c_char_p(wasm), ctypes.POINTER(ctypes.c_uint8))


def validate_module(engine: wasmtime.Engine, wasm: bytes) -> None:
    """`wasmtime.Module.validate` without copying the bytes."""
    ffi = require()
    wasm = bytes(wasm)  # no copy for bytes; bytearrays have no stable c_char_p
    _check(ffi.wasmtime_module_validate(engine.ptr(), _bytes_pointer(wasm), len(wasm)))


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """`wasmtime.Module(engine, wasm)` without copying the bytes."""
    ffi = require()
    wasm = bytes(wasm)
    ptr = ctypes.POINTER(ffi.wasmtime_module_t)()
    pointer = _bytes_pointer(wasm)
    _check(ffi.wasmtime_module_new(engine.ptr(), pointer, len(wasm), ctypes.byref(ptr)))
    return wasmtime.Module._from_ptr(ptr)


def export(store: wasmtime.Store, instance: wasmtime.Instance, name: str) -> Any | None:
    """One export by name (a Func, Global, Memory, Table ...), or None."""
    ffi = require()
    from wasmtime._extern import wrap_extern

    item = ffi.wasmtime_extern_t()
    raw = name.encode()
    found = ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(_handle(instance, "_instance")), raw, len(raw),
        ctypes.byref(item),
    )  # fmt: skip
    return wrap_extern(item) if found else None


def call_i32(
    store: wasmtime.Store, func: wasmtime.Func, args: tuple[int, ...], results: int
) -> int | None:
    """`func(store, *args)` for i32 arguments and no or one i32 result, without the
    conversions of `Func.__call__`."""
    ffi = require()
    params = (ffi.wasmtime_val_t * max(len(args), 1))()
    for param, arg in zip(params, args):
        param.kind, param.of.i32 = _I32, arg
    out = (ffi.wasmtime_val_t * max(results, 1))()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    _check(ffi.wasmtime_func_call(
        store._context(), ctypes.byref(_handle(func, "_func")), params, len(args), out, results,
        ctypes.byref(trap),
    ))  # fmt: skip
    if trap:
        raise wasmtime.Trap._from_ptr(trap)
    return int(out[0].of.i32) if results else None


def read_global(store: wasmtime.Store, global_: wasmtime.Global) -> tuple[int, int]:
    """(kind, value): the exact bits of a number (unsigned, v128 little-endian), or a
    reference's identity as `read_table` gives it."""
    ffi = require()
    raw = ffi.wasmtime_val_t()
    ffi.wasmtime_global_get(
        store._context(), ctypes.byref(_handle(global_, "_global")), ctypes.byref(raw)
    )
    try:
        return (int(raw.kind), _value(store, raw))
    finally:
        ffi.wasmtime_val_unroot(ctypes.byref(raw))


def read_table(store: wasmtime.Store, table: wasmtime.Table) -> list[tuple[int, int]]:
    """Each entry as (kind, identity): 0 is null, -1 a reference with no identity we can
    compare (externref, GC objects), else the funcref's `func_identity`."""
    ffi = require()
    context = store._context()
    handle = ctypes.byref(_handle(table, "_table"))
    raw = ffi.wasmtime_val_t()
    entries = []
    for slot in range(table.size(store)):
        ffi.wasmtime_table_get(context, handle, slot, ctypes.byref(raw))
        entries.append((int(raw.kind), _value(store, raw)))
        ffi.wasmtime_val_unroot(ctypes.byref(raw))
    return entries


def func_identity(store: wasmtime.Store, func: wasmtime.Func) -> int:
    """What `read_table` gives for a slot holding `func`: equal for one function however it
    was reached (export, table, alias)."""
    return _funcref(store, _handle(func, "_func"))


def _funcref(store: wasmtime.Store, func: Any) -> int:
    if not getattr(func, "__private"):
        return 0
    return int(require().wasmtime_func_to_raw(store._context(), ctypes.byref(func)))


def _value(store: wasmtime.Store, raw: Any) -> int:
    kind = raw.kind
    if kind in (0, 2):  # i32, f32
        return int(raw.of.i32) & 0xFFFFFFFF
    if kind in (1, 3):  # i64, f64
        return int(raw.of.i64) & 0xFFFFFFFFFFFFFFFF
    if kind == _V128:
        return int.from_bytes(bytes(raw.of.v128), "little")
    if kind == FUNCREF:
        return _funcref(store, raw.of.funcref)
    if kind == EXTERNREF:
        ref = raw.of.externref
        return -1 if any(getattr(ref, f"__private{i}") for i in (1, 2, 3)) else 0
    if kind in (ANYREF, EXNREF):
        ref = raw.of.anyref if kind == ANYREF else raw.of.exnref
        if not ref.store_id:
            return 0  # null: as comparable as any other null
    return -1  # a GC reference: no identity we can compare


def preopen_dir(wasi: wasmtime.WasiConfig, host: str, guest: str, writable: bool) -> None:
    """`WasiConfig.preopen_dir`, read-only unless `writable` (before 48 it took permission
    enums, since then a bool)."""
    add: Any = wasi.preopen_dir
    dir_perms = getattr(wasmtime, "DirPerms", None)
    file_perms = getattr(wasmtime, "FilePerms", None)
    if dir_perms is None or file_perms is None:
        add(host, guest, writable)
    elif writable:
        add(host, guest, dir_perms.READ_WRITE, file_perms.READ_WRITE)
    else:
        add(host, guest, dir_perms.READ_ONLY, file_perms.READ_ONLY)


def component_item_type(item: Any) -> Any:
    """The type of an entry of `ComponentType.imports()` or `.exports()`: since 49 a
    `ComponentExtern` (not exported by name) wraps it as `.ty`; no type has a `ty` of its own."""
    return getattr(item, "ty", item)


def variant_is_tagged(ty: Any) -> bool:
    """Whether wasmtime-py takes and gives this variant's cases as `Variant` objects (it does
    when two cases' payloads could not be told apart by their Python type)."""
    require_component()
    return bool(ty._tagged())
