#!/usr/bin/env bash
# One command for the whole story, on a fresh machine with python3 (3.11+) and PyPI access:
# build hatch-wizer from this checkout, build the sqlex wheel with the `wizer` hook through
# `python -m build` (isolated), install it, and compare it with the original module.
# Everything is created under $WORK, which is kept; without WORK, in a temp dir removed at the
# end (about 60 MB: a venv with wasmtime). The checkout is not touched.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
if [ -n "${WORK:-}" ]; then
    work="$WORK"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

echo "== venv in $work/venv"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check build

echo "== hatch-wizer wheel from $repo"
"$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/wheels" "$repo"

echo "== sqlex wheel (hatchling + the wizer hook, isolated build)"
cp -r "$here" "$work/sample"   # build from a copy: nothing is written next to the sources
PIP_FIND_LINKS="$work/wheels" "$py" -m build --wheel -o "$work/dist" "$work/sample"
"$py" -m pip install -q --disable-pip-version-check "$work"/dist/sqlex-*.whl

echo "== compare"
"$py" "$here/compare.py" "$here/src/sqlex/sqlex.wasm"

echo "== QuickJS start-up: original, wizened, wizened + precompiled (qjs.cwasm)"
"$py" "$here/startup.py" "$here/src/sqlex/qjs.wasm"
