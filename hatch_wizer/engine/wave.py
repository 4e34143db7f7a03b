"""WAVE (WebAssembly Value Encoding) for init calls: parse arguments, format results.

Arguments are parsed against the init function's parameter types, as wasmtime-py's component
API reports them, into the Python values that API takes. Syntax:
https://github.com/bytecodealliance/wasm-tools/tree/main/crates/wasm-wave
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from ..errors import ConfigError

__all__ = ["format_value", "parse_args"]

_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "'": "'", '"': '"', "\\": "\\"}
_LABEL: Final = re.compile(r"%?[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_NUMBER: Final = re.compile(r"-?(?:inf|nan|[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)")


class _Parser:
    def __init__(self, text: str, call: str) -> None:
        self.text = text
        self.pos = 0
        self.call = call

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"init call `{self.call}`: {message} at argument offset {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def expect(self, token: str) -> None:
        if self.peek() != token:
            found = self.text[self.pos : self.pos + 1] or "the end"
            raise self.fail(f"expected `{token}`, found `{found}`")
        self.pos += 1

    def accept(self, token: str) -> bool:
        if self.peek() == token:
            self.pos += 1
            return True
        return False

    def label(self) -> str:
        self.skip_space()
        match = _LABEL.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name")
        self.pos = match.end()
        return match.group().lstrip("%")

    def seq(self, close: str, item: Any) -> list[Any]:
        out: list[Any] = []
        while not self.accept(close):
            out.append(item())
            if not self.accept(","):
                self.expect(close)
                break
        return out

    def value(self, ty: Any) -> Any:
        from wasmtime import component as c

        if isinstance(ty, c.Bool):
            word = self.label()
            if word not in ("true", "false"):
                raise self.fail(f"expected true or false, found `{word}`")
            return word == "true"
        if isinstance(ty, (c.S8, c.S16, c.S32, c.S64, c.U8, c.U16, c.U32, c.U64)):
            return self.integer()
        if isinstance(ty, (c.F32, c.F64)):
            return self.number()
        if isinstance(ty, c.Char):
            text = self.quoted("'")
            if len(text) != 1:
                raise self.fail("a char literal holds exactly one character")
            return text
        if isinstance(ty, c.String):
            return self.quoted('"')
        if isinstance(ty, c.ListType):
            self.expect("[")
            items = self.seq("]", lambda: self.value(ty.element))
            return bytes(items) if isinstance(ty.element, c.U8) else items
        if isinstance(ty, c.TupleType):
            elements = iter(ty.elements)
            self.expect("(")
            return tuple(self.seq(")", lambda: self.value(next(elements))))
        if isinstance(ty, c.RecordType):
            return self.record(ty.fields)
        if isinstance(ty, c.FlagsType):
            self.expect("{")
            return set(self.seq("}", self.label))
        if isinstance(ty, c.EnumType):
            return self.label()
        if isinstance(ty, (c.VariantType, c.OptionType, c.ResultType)):
            return self.case(ty)
        raise self.fail(f"values of type {type(ty).__name__} cannot be written in an init call")

    def integer(self) -> int:
        self.skip_space()
        match = re.compile(r"-?[0-9]+").match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an integer")
        self.pos = match.end()
        return int(match.group())

    def number(self) -> float:
        self.skip_space()
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a number")
        self.pos = match.end()
        return float(match.group())

    def quoted(self, quote: str) -> str:
        self.expect(quote)
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated literal")
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                continue
            esc = self.text[self.pos : self.pos + 1]
            self.pos += 1
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            elif esc == "u" and self.accept("{"):
                end = self.text.find("}", self.pos)
                try:
                    out.append(chr(int(self.text[self.pos : end], 16)))
                except ValueError:
                    raise self.fail("bad unicode escape") from None
                self.pos = end + 1
            else:
                raise self.fail(f"unknown escape `\\{esc}`")

    def record(self, fields: list[tuple[str, Any]]) -> Any:
        from wasmtime.component import Record

        types = dict(fields)
        record = Record()
        self.expect("{")
        seen = set()

        def field() -> None:
            key = self.label()
            if key not in types:
                raise self.fail(f"unknown record field `{key}`")
            self.expect(":")
            setattr(record, key, self.value(types[key]))
            seen.add(key)

        self.seq("}", field)
        for key, ty in fields:
            if key not in seen:
                from wasmtime import component as c

                if not isinstance(ty, c.OptionType):
                    raise self.fail(f"record field `{key}` is missing")
                setattr(record, key, None)
        return record

    def case(self, ty: Any) -> Any:
        from wasmtime import component as c

        if isinstance(ty, c.OptionType):
            cases: list[tuple[str, Any]] = [("none", None), ("some", ty.payload)]
        elif isinstance(ty, c.ResultType):
            cases = [("ok", ty.ok), ("err", ty.err)]
        else:
            cases = ty.cases
        tag = self.label()
        payload_type = dict(cases).get(tag, ...)
        if payload_type is ...:
            raise self.fail(f"unknown case `{tag}`")
        payload = None
        if payload_type is not None:
            self.expect("(")
            payload = self.value(payload_type)
            self.expect(")")
        if isinstance(ty, c.OptionType):
            return payload
        from .wasmtime_api import variant_is_tagged

        if variant_is_tagged(ty):
            return c.Variant(tag, payload)
        return payload


def parse_args(text: str, params: list[tuple[str, Any]], call: str) -> list[Any]:
    """The arguments in `text` (between the call's parentheses) as Python values."""
    parser = _Parser(text, call)
    values = []
    for i, (_, ty) in enumerate(params):
        if i:
            parser.expect(",")
        values.append(parser.value(ty))
    parser.accept(",")
    parser.skip_space()
    if parser.pos != len(text):
        raise parser.fail(f"expected {len(params)} argument(s)")
    return values


def format_value(value: Any) -> str:
    """A result in WAVE-like syntax, for reporting what the init call returned."""
    from wasmtime.component import Record, Variant

    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (bytes, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    if isinstance(value, set):
        return "{" + ", ".join(sorted(value)) + "}"
    if isinstance(value, Variant):
        return value.tag if value.payload is None else f"{value.tag}({format_value(value.payload)})"
    if isinstance(value, Record):
        fields = ", ".join(f"{k}: {format_value(v)}" for k, v in vars(value).items())
        return "{" + fields + "}"
    return repr(value)
