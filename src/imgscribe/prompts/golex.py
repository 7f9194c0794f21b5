"""Nodes, errors and the lexer for the part of Go's text/template that Ollama's prompt templates use.

Anything outside that part (``define``, ``template``, ``block``, unknown functions, ...) is refused
with a ``TemplateError`` naming line and column: a TEMPLATE is user input, so its errors are 400s.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest


class TemplateError(InvalidRequest):
    """A prompt template that cannot be parsed or executed; the message says where and why."""


#: Functions a template may call (those of Go's builtins that prompts use, and Ollama's FuncMap).
FUNCTION_NAMES = frozenset(
    ["and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "slice", "print", "printf", "json", "currentDate", "yesterdayDate", "toTypeScriptType"]
)
_UNSUPPORTED = frozenset({"define", "template", "block", "call", "html", "js", "urlquery", "println"})
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "break", "continue", "nil", "true", "false"})


@dataclass
class Node:
    pos: int


@dataclass
class Text(Node):
    text: str


@dataclass
class Field(Node):
    idents: list[str]


@dataclass
class Variable(Node):
    name: str
    idents: list[str] = field(default_factory=list)


@dataclass
class Dot(Node):
    pass


@dataclass
class Nil(Node):
    pass


@dataclass
class Literal(Node):
    value: Any
    source: str


@dataclass
class Identifier(Node):
    name: str


@dataclass
class Chain(Node):
    node: Node
    idents: list[str]


@dataclass
class Command(Node):
    args: list[Node]


@dataclass
class Pipe(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]


@dataclass
class Action(Node):
    pipe: Pipe


@dataclass
class Branch(Node):
    kind: str  # "if", "range" or "with"
    pipe: Pipe
    body: list[Node]
    orelse: list[Node] | None


@dataclass
class Loop(Node):
    kind: str  # "break" or "continue"


class Source:
    """The template's text, to turn offsets into 'line L, column C'."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, pos: int) -> str:
        line = bisect.bisect_right(self.starts, pos)
        return f"template line {line}, column {pos - self.starts[line - 1] + 1}"

    def error(self, pos: int, msg: str) -> TemplateError:
        return TemplateError(f"{self.where(pos)}: {msg}")


@dataclass
class Tok:
    kind: str  # field var ident string number char pipe ( ) := = , dot end-of-action
    text: str
    pos: int
    space: bool  # preceded by white space
    value: Any = None


_SPACE = " \t\r\n"
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|[abfnrtv\\\"'])")


def _unquote(body: str) -> str:
    def one(m: re.Match) -> str:
        e = m.group(1)
        return _ESCAPES[e] if e in _ESCAPES else chr(int(e[1:], 16)) if e[0] in "xuU" else chr(int(e, 8))

    if re.sub(_ESCAPE, "", body).count("\\"):
        raise ValueError("invalid escape")
    return _ESCAPE.sub(one, body)


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)
    try:
        return int(t, 0)
    except ValueError:
        return float(t)


def lex(src: Source) -> list[Tok | Text]:
    """Text pieces and action tokens, trim markers applied; each action ends with an 'eoa' token."""
    s, out, pos = src.text, [], 0
    while True:
        start = s.find("{{", pos)
        if start < 0:
            if pos < len(s):
                out.append(Text(pos, s[pos:]))
            break
        text = s[pos:start]
        inner = start + 2
        if s.startswith("-", inner) and inner + 1 < len(s) and s[inner + 1] in _SPACE:
            text, inner = text.rstrip(_SPACE), inner + 2
        if text:
            out.append(Text(pos, text))
        if s.startswith("/*", inner):
            close = s.find("*/", inner + 2)
            if close < 0:
                raise src.error(start, "unclosed comment")
            after = close + 2
            trim = s.startswith("-}}", after + 1) and after < len(s) and s[after] in _SPACE
            if not trim and not s.startswith("}}", after):
                raise src.error(start, "comment ends before closing delimiter")
            pos = after + (4 if trim else 2)
            if trim:
                pos = _skip_space(s, pos)
            continue
        pos = _lex_action(src, inner, start, out)
    return out


def _skip_space(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in _SPACE:
        pos += 1
    return pos


def _lex_action(src: Source, pos: int, start: int, out: list) -> int:
    s, space = src.text, True
    while True:
        if pos >= len(s):
            raise src.error(start, "unclosed action")
        c = s[pos]
        if c in _SPACE:
            if s.startswith("-}}", pos + 1):
                out.append(Tok("eoa", "}}", pos, True))
                return _skip_space(s, pos + 4)
            pos, space = pos + 1, True
            continue
        if s.startswith("}}", pos):
            out.append(Tok("eoa", "}}", pos, space))
            return pos + 2
        tok = _token(src, pos, start)
        tok.space = space
        out.append(tok)
        pos, space = pos + len(tok.text), False


def _token(src: Source, pos: int, start: int) -> Tok:
    s, c = src.text, src.text[pos]
    if c in "|(),=" or s.startswith(":=", pos):
        text = ":=" if c == ":" else c
        return Tok(text, text, pos, False)
    if c == ":":
        raise src.error(pos, "expected :=")
    if c == '"' or c == "`":
        end = _string_end(s, pos, c)
        if end < 0:
            raise src.error(pos, "unterminated quoted string" if c == '"' else "unterminated raw quoted string")
        body = s[pos + 1 : end]
        try:
            value = _unquote(body) if c == '"' else body.replace("\r", "")
        except ValueError:
            raise src.error(pos, f"invalid syntax in string {s[pos : end + 1]}") from None
        return Tok("string", s[pos : end + 1], pos, False, value)
    if c == "'":
        end = _string_end(s, pos, "'")
        try:
            value = _unquote(s[pos + 1 : end]) if end > 0 else ""
        except ValueError:
            value = ""
        if end < 0 or len(value) != 1:
            raise src.error(pos, "malformed character constant")
        return Tok("char", s[pos : end + 1], pos, False, ord(value))
    if c == "$":
        m = _NAME.match(s, pos + 1)
        text = "$" + (m.group() if m else "")
        return Tok("var", text, pos, False)
    if c == "." and not (pos + 1 < len(s) and s[pos + 1].isdigit()):
        m = _NAME.match(s, pos + 1)
        return Tok("field", "." + m.group(), pos, False) if m else Tok("dot", ".", pos, False)
    m = _NUMBER.match(s, pos)
    if m and m.group() not in "+-":
        text = m.group()
        if _NAME.match(s, m.end()):
            raise src.error(pos, f"bad number syntax: {s[pos : m.end() + 1]!r}")
        return Tok("number", text, pos, False, _number(text))
    m = _NAME.match(s, pos)
    if m:
        return Tok("ident", m.group(), pos, False)
    raise src.error(pos, f"unexpected {c!r} in command")


def _string_end(s: str, pos: int, quote: str) -> int:
    i = pos + 1
    while i < len(s):
        if s[i] == quote:
            return i
        if quote != "`" and s[i] == "\n":
            return -1
        i += 2 if s[i] == "\\" and quote != "`" else 1
    return -1
