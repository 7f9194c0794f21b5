"""The evaluator: walks a parsed template over a value, as Go's text/template executes one.

Go's rules kept: ``$`` is the data; variables live to the ``end`` of the block that declared them;
``and``/``or`` stop at the deciding operand and return it; a map's missing key is nil (Ollama parses
with ``missingkey=zero`` over ``map[string]any``) while a struct's unknown field is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import gofuncs
from .gofuncs import FuncError, Struct, go_fmt, truth, type_name
from .golex import (
    Action,
    Branch,
    Chain,
    Command,
    Dot,
    Field,
    Identifier,
    Literal,
    Loop,
    Nil,
    Node,
    Pipe,
    Source,
    TemplateError,
    Text,
    Variable,
)

_MISSING = object()
#: Arity of each function: (at least, at most); None is no limit.
_ARITY = {
    "eq": (1, None), "ne": (2, 2), "lt": (2, 2), "le": (2, 2), "gt": (2, 2), "ge": (2, 2), "not": (1, 1),
    "len": (1, 1), "index": (1, None), "slice": (1, None), "print": (0, None), "printf": (1, None),
    "json": (1, 1), "currentDate": (0, None), "yesterdayDate": (0, None), "toTypeScriptType": (1, 1),
    "and": (1, None), "or": (1, None),
}  # fmt: skip


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


#: A template may come from a request (/api/generate ``template``, /api/create): what one rendering
#: may cost, so that ``{{ range 1000000000 }}`` or a deep nesting is a clear error, not a hang.
MAX_STEPS = 1_000_000
MAX_OUTPUT = 8 << 20  # characters


def execute(src: Source, nodes: list[Node], data: Any) -> str:
    state = _State(src, data)
    try:
        state.walk(data, nodes)
    except RecursionError:
        raise TemplateError("the template nests too deeply to render") from None
    return "".join(state.out)


class _State:
    def __init__(self, src: Source, data: Any):
        self.src = src
        self.vars: list[list[Any]] = [["$", data]]
        self.out: list[str] = []
        self.steps = 0
        self.size = 0

    def emit(self, node: Node, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise self.error(node, f"the template's output is longer than {MAX_OUTPUT:,} characters")
        self.out.append(text)

    def error(self, node: Node, msg: str) -> TemplateError:
        return self.src.error(node.pos, msg)

    # -- statements ---------------------------------------------------------------------------

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise self.error(node, f"the template takes more than {MAX_STEPS:,} steps to render")
            if isinstance(node, Text):
                self.emit(node, node.text)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.emit(node, go_fmt(value))
            elif isinstance(node, Branch):
                self.range(dot, node) if node.kind == "range" else self.if_or_with(dot, node)
            elif isinstance(node, Loop):
                raise _Break() if node.kind == "break" else _Continue()

    def if_or_with(self, dot: Any, node: Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, node: Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.pipeline(dot, node.pipe)
            inner = len(self.vars)
            if value is None:
                pairs: Any = ()
            elif isinstance(value, (list, tuple)):
                pairs = enumerate(value)
            elif isinstance(value, Mapping):
                pairs = ((k, value[k]) for k in sorted(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                if len(node.pipe.decl) > 1:
                    raise self.error(node, f"can't use {value} to iterate over more than one variable")
                pairs = ((i, i) for i in range(value))
            else:
                raise self.error(node, f"range can't iterate over {go_fmt(value, True)}")
            ran = False
            for index, elem in pairs:
                ran = True
                if self.iteration(node, inner, index, elem):
                    break
            if not ran and node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    def iteration(self, node: Branch, inner: int, index: Any, elem: Any) -> bool:
        """One pass of a range's body; True when it ran into ``break``."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.error(node, f"the template takes more than {MAX_STEPS:,} steps to render")
        decl = node.pipe.decl
        if node.pipe.is_assign:
            if decl:
                self.set_var(decl[0], index if len(decl) > 1 else elem)
            if len(decl) > 1:
                self.set_var(decl[1], elem)
        elif decl:
            self.vars[inner - 1][1] = elem
            if len(decl) > 1:
                self.vars[inner - 2][1] = index
        try:
            self.walk(elem, node.body)
        except _Continue:
            pass
        except _Break:
            return True
        finally:
            del self.vars[inner:]
        return False

    # -- variables ----------------------------------------------------------------------------

    def lookup(self, node: Node, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(node, f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise TemplateError(f"undefined variable: {name}")

    # -- pipelines and commands ---------------------------------------------------------------

    def pipeline(self, dot: Any, pipe: Pipe) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        value = None if value is _MISSING else value
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, Identifier):
            return self.call(dot, first, cmd.args[1:], final)
        if isinstance(first, Field):
            return self.fields(first, dot, first.idents, cmd.args, final)
        if isinstance(first, Variable):
            value = self.lookup(first, first.name)
            if first.idents:
                return self.fields(first, value, first.idents, cmd.args, final)
            self.not_a_function(cmd.args, final)
            return value
        if isinstance(first, Chain):
            return self.fields(first, self.pipeline(dot, first.node), first.idents, cmd.args, final)  # type: ignore[arg-type]
        self.not_a_function(cmd.args, final)
        if isinstance(first, Pipe):
            return self.pipeline(dot, first)
        if isinstance(first, Nil):
            raise self.error(first, "nil is not a command")
        if isinstance(first, Dot):
            return dot
        return first.value  # type: ignore[attr-defined]

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error(args[0], "can't give argument to non-function")

    def fields(self, node: Node, receiver: Any, idents: list[str], args: list[Node], final: Any) -> Any:
        for n, name in enumerate(idents):
            last = n == len(idents) - 1
            has_args = last and (len(args) > 1 or final is not _MISSING)
            receiver = self.field(node, receiver, name, has_args)
        return receiver

    def field(self, node: Node, receiver: Any, name: str, has_args: bool) -> Any:
        if isinstance(receiver, Struct):
            if name in receiver.fields:
                if has_args:
                    raise self.error(node, f"{name} has arguments but cannot be invoked as function")
                return receiver.fields[name]
        elif isinstance(receiver, Mapping):
            if has_args:
                raise self.error(node, f"{name} is not a method but has arguments")
            return receiver.get(name)
        elif receiver is None:
            raise self.error(node, f"nil pointer evaluating interface {{}}.{name}")
        raise self.error(node, f"can't evaluate field {name} in type {type_name(receiver)}")

    def arg(self, dot: Any, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Nil):
            return None
        if isinstance(node, Identifier):
            return self.call(dot, node, [], _MISSING)
        return self.command(dot, Command(node.pos, [node]), _MISSING)

    def call(self, dot: Any, node: Identifier, args: list[Node], final: Any) -> Any:
        name = node.name
        count = len(args) + (final is not _MISSING)
        low, high = _ARITY[name]
        if count < low or (high is not None and count > high):
            want = f"at least {low}" if high is None else str(low)
            raise self.error(node, f"wrong number of args for {name}: want {want} got {count}")
        if name in gofuncs.LAZY:
            value = None
            for arg in args:
                value = self.arg(dot, arg)
                if truth(value) == (name == "or"):
                    return value
            return final if final is not _MISSING else value
        values = [self.arg(dot, a) for a in args]
        if final is not _MISSING:
            values.append(final)
        if name in ("currentDate", "yesterdayDate", "printf") and values:
            checked = values if name != "printf" else values[:1]
            for v in checked:
                if not isinstance(v, str):
                    raise self.error(node, f"wrong type for value; expected string; got {type_name(v)}")
        try:
            return gofuncs.FUNCS[name](*values)
        except FuncError as err:
            raise self.error(node, f"error calling {name}: {err}") from None

