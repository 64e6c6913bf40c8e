"""A small reader for protobuf text format, for messages whose ``.proto`` is not installed.

TF Serving's ``BatchingParameters`` is one: tensorflow-serving-api does not ship it. This reads the text
format's structure (fields, nested ``{...}`` or ``<...>`` messages, scalars, ``#`` comments) without knowing
the schema; the caller decides which field names and value shapes it accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+|\#[^\n]*)
  | (?P<newline>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:;,\[\]])
    """,
    re.VERBOSE,
)
_CLOSING = {"{": "}", "<": ">"}


class TextFormatError(ValueError):
    """The text is not well-formed protobuf text format; the message names the line."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class Field:
    """One ``name: scalar`` or ``name { ... }``; ``value`` is the scalar's text or the nested fields."""

    name: str
    value: str | tuple[Field, ...]
    line: int


def parse(text: str) -> tuple[Field, ...]:
    """The top-level fields of ``text``, in order (repeated names are kept, the caller judges them)."""
    return _Parser(tokenize(text)).message(closing=None)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    line, position = 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise TextFormatError(f"line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind == "newline":
            line += 1
        elif kind != "space":
            tokens.append(Token(kind, match.group(), line))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._next = 0

    def message(self, closing: str | None) -> tuple[Field, ...]:
        fields: list[Field] = []
        while (token := self._peek()) is None or token.text != closing:
            if token is None:
                if closing is None:
                    return tuple(fields)
                raise TextFormatError(f"end of text: missing {closing!r}")
            fields.append(self._field())
        self._take()
        return tuple(fields)

    def _field(self) -> Field:
        name = self._take()
        if name.kind != "ident":
            raise TextFormatError(f"line {name.line}: expected a field name, found {name.text!r}")
        has_colon = self._accept(":")
        value = self._value(name, has_colon)
        if not self._accept(";"):
            self._accept(",")
        return Field(name.text, value, name.line)

    def _value(self, name: Token, has_colon: bool) -> str | tuple[Field, ...]:
        token = self._peek()
        if token is not None and token.text in _CLOSING:
            self._take()
            return self.message(closing=_CLOSING[token.text])
        if not has_colon:
            raise TextFormatError(f"line {name.line}: expected ':' or '{{' after {name.text!r}")
        if token is None or token.kind not in ("string", "number", "ident"):
            found = "end of text" if token is None else repr(token.text)
            raise TextFormatError(f"line {name.line}: expected a value for {name.text!r}, found {found}")
        return self._take().text

    def _peek(self) -> Token | None:
        return self._tokens[self._next] if self._next < len(self._tokens) else None

    def _take(self) -> Token:
        token = self._peek()
        if token is None:
            raise TextFormatError("unexpected end of text")
        self._next += 1
        return token

    def _accept(self, text: str) -> bool:
        token = self._peek()
        if token is not None and token.text == text:
            self._next += 1
            return True
        return False
