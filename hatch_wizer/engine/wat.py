"""WAT text to a binary module, by wasmtime's own parser (loaded only when text arrives)."""

from __future__ import annotations

from ..errors import InvalidModule

__all__ = ["wat_to_wasm"]


def wat_to_wasm(text: str) -> bytes:
    import wasmtime

    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()
        raise InvalidModule(
            f"invalid WAT: {' '.join(line.strip() for line in first[:2])}"
        ) from None
