"""The WebAssembly binary format: LEB128 and sections (`binary`), a module parser (`parse`),
a code-section decoder (`code`) and the reassembly of a module from sections (`assemble`).

Pure and policy-free, the bottom layer: it imports only the shared `errors`.
Spec: https://webassembly.github.io/spec/core/binary/
"""
