#!/usr/bin/env bash
# Builds tests/data/ctors.wasm from tests/c/ctors.c with Debian's clang + wasi-libc
# (packages clang, lld, wasi-libc, libclang-rt-14-dev-wasm32). The flags make the output
# reproducible: no debug info, source paths mapped away, deterministic link.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../data/ctors.wasm}"
cd "$here"
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror \
  -ffile-prefix-map="$here"=. -fno-ident \
  -o "$out" ctors.c \
  -Wl,--strip-debug
echo "built $out ($(wc -c <"$out") bytes)"
