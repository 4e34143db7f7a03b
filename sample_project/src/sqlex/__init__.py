"""sqlex: tokenize SQL with a WebAssembly scanner whose DFA is built at start-up.

The module's init (`wizer-initialize`) compiles a rule table into a DFA. A wizened module has
that DFA in its data already and no init export; this loader runs init only if it is there,
so the package works with either build.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import wasmtime

__all__ = ["Lexer", "tokenize"]

INIT_EXPORT = "wizer-initialize"
_ENGINE = wasmtime.Engine()


class Lexer:
    """One instance of the scanner module."""

    def __init__(self, path: str | Path | None = None) -> None:
        wasm = Path(path) if path is not None else Path(str(files(__name__) / "sqlex.wasm"))
        module = wasmtime.Module(_ENGINE, wasm.read_bytes())
        self._store = wasmtime.Store(_ENGINE)
        self._exports = wasmtime.Instance(self._store, module, []).exports(self._store)
        #: Whether the module came pre-initialized (no init export left to run).
        self.preinitialized = INIT_EXPORT not in self._exports
        if not self.preinitialized:
            self._call(INIT_EXPORT)
        self._memory = self._exports["memory"]
        self._input = self._call("sqlex_input")
        self._tokens = self._call("sqlex_tokens")
        self._kinds: dict[int, str] = {}

    def _call(self, name: str, *args: int) -> int:
        return self._exports[name](self._store, *args)  # type: ignore[no-any-return]

    @property
    def dfa_states(self) -> int:
        return self._call("sqlex_stats")

    def tokenize(self, sql: str) -> list[tuple[str, str]]:
        """Split `sql` into (kind, text) tokens; whitespace and comments included."""
        data = sql.encode()
        self._memory.write(self._store, data, self._input)
        count = self._call("sqlex_tokenize", len(data))
        if count < 0:
            raise ValueError("input too long for the scanner (64 KiB at most)")
        raw = self._memory.read(self._store, self._tokens, self._tokens + 12 * count)
        out = []
        for i in range(count):
            kind, start, length = (
                int.from_bytes(raw[12 * i + 4 * j : 12 * i + 4 * j + 4], "little") for j in range(3)
            )
            out.append((self._kind(kind), data[start : start + length].decode(errors="replace")))
        return out

    def _kind(self, kind: int) -> str:
        if kind not in self._kinds:
            ptr = self._call("sqlex_kind_name", kind)
            raw = self._memory.read(self._store, ptr, ptr + 16)
            self._kinds[kind] = bytes(raw).split(b"\0", 1)[0].decode()
        return self._kinds[kind]


_default: Lexer | None = None


def tokenize(sql: str) -> list[tuple[str, str]]:
    """Tokenize with a shared Lexer created on first use."""
    global _default
    if _default is None:
        _default = Lexer()
    return _default.tokenize(sql)
