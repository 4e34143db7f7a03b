#!/usr/bin/env bash
# Rebuild lookup.wasm: clang (wasm32) + wasm-ld, then wasm-tools embeds the WIT and makes a component.
set -euo pipefail
cd "$(dirname "$0")"
WASM_TOOLS=${WASM_TOOLS:-wasm-tools}
clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic -o lookup.core.wasm lookup.c
"$WASM_TOOLS" component embed --world lookup lookup.wit lookup.core.wasm -o lookup.embed.wasm
"$WASM_TOOLS" component new lookup.embed.wasm -o lookup.wasm
rm lookup.core.wasm lookup.embed.wasm
