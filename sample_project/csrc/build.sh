#!/usr/bin/env bash
# Rebuild src/sqlex/sqlex.wasm from sqlex.c with Debian's wasi toolchain
# (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32). The built module is
# committed, so building the Python package needs no C toolchain.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../src/sqlex/sqlex.wasm"
clang --target=wasm32-wasi -O2 -mexec-model=reactor -mbulk-memory \
  -Wall -Wextra -Werror \
  -Wl,--strip-all -Wl,-z,stack-size=65536 \
  -o "$out" "$here/sqlex.c"
echo "wrote $out ($(wc -c <"$out") bytes)"
