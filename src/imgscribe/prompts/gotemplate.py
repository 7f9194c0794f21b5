"""A parsed Go prompt template, with what Ollama's ``template.Parse`` adds to one.

Ollama appends ``{{ .Response }}`` to a template that names neither ``.Messages`` nor
``.Response``, decides between message and legacy rendering by the names a template uses, and,
for the last turn of a legacy template, renders it only up to its first ``.Response``: all three
are here, so that imgscribe writes the prompt Ollama would write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .goexec import execute
from .golex import (
    Action,
    Branch,
    Command,
    Field,
    Node,
    Pipe,
    Source,
    TemplateError,
    Variable,
)
from .goparse import parse

__all__ = ["Template", "TemplateError"]


class Template:
    """Parse once (``Template.parse``), render many times; parse and render errors are ``TemplateError``."""

    def __init__(self, text: str, nodes: list[Node]):
        self.text = text
        self._src = Source(text)
        self._nodes = nodes
        names = {n.lower() for n in _identifiers(nodes)}
        if "messages" not in names and "response" not in names:
            end = len(text)
            self._nodes = [*nodes, Action(end, Pipe(end, [], False, [Command(end, [Field(end, ["Response"])])]))]
            names.add("response")
        self._names = frozenset(names)
        self._until_response: list[Node] | None = None

    @classmethod
    def parse(cls, text: str) -> Template:
        try:
            return cls(text, parse(Source(text)))
        except RecursionError:
            raise TemplateError("the template nests too deeply to parse") from None

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def names(self) -> list[str]:
        """The names the template refers to, lower-cased and sorted, as Ollama's ``Vars``."""
        return sorted(self._names)

    def uses(self, name: str) -> bool:
        """Whether a field or variable chain names ``name`` (any case): ``uses('messages')`` picks the mode."""
        return name.lower() in self._names

    def render(self, values: Mapping[str, Any] | Any) -> str:
        return execute(self._src, self._nodes, values)

    def render_until_response(self, values: Mapping[str, Any] | Any) -> str:
        """The template up to and including its first ``.Response``: how Ollama renders a legacy last turn.

        Where that ``.Response`` sits inside a block that has an ``else``, the ``else`` is dropped
        (Ollama's own cut panics on such templates).
        """
        if self._until_response is None:
            self._until_response = _cut(self._nodes, [False])
        return execute(self._src, self._until_response, values)


def _identifiers(nodes: list[Node]) -> list[str]:
    """Ollama's ``Identifiers``: field chains and variable chains, in actions and block pipelines."""
    found: list[str] = []
    for node in nodes:
        if isinstance(node, Action):
            found += _pipe_identifiers(node.pipe)
        elif isinstance(node, Branch):
            found += _pipe_identifiers(node.pipe) + _identifiers(node.body) + _identifiers(node.orelse or [])
    return found


def _pipe_identifiers(pipe: Pipe) -> list[str]:
    found: list[str] = []
    for cmd in pipe.cmds:
        for arg in cmd.args:
            if isinstance(arg, Field):
                found += arg.idents
            elif isinstance(arg, Variable):
                found += [arg.name, *arg.idents]
            elif isinstance(arg, Pipe):
                found += _pipe_identifiers(arg)
    return found


def _cut(nodes: list[Node], cut: list[bool]) -> list[Node]:
    """Ollama's ``deleteNode``: keep everything up to the first ``.Response`` field, drop the rest."""
    out = []
    for node in nodes:
        kept = _cut_node(node, cut)
        if kept is not None:
            out.append(kept)
    return out


def _cut_node(node: Node, cut: list[bool]) -> Node | None:
    if cut[0]:
        return None
    if isinstance(node, Action):
        pipe = _cut_pipe(node.pipe, cut)
        return Action(node.pos, pipe) if pipe is not None else None
    if isinstance(node, Branch):
        body = _cut(node.body, cut)
        orelse = None if node.orelse is None or cut[0] else _cut(node.orelse, cut)
        return Branch(node.pos, node.kind, node.pipe, body, orelse)
    return node


def _cut_pipe(pipe: Pipe, cut: list[bool]) -> Pipe | None:
    if cut[0]:
        return None
    cmds = []
    for cmd in pipe.cmds:
        args: list[Node] = []
        for arg in cmd.args:
            if cut[0]:
                continue
            if isinstance(arg, Field) and "Response" in arg.idents:
                cut[0] = True
                args.append(arg)
            elif isinstance(arg, Pipe):
                inner = _cut_pipe(arg, cut)
                if inner is not None:
                    args.append(inner)
            else:
                args.append(arg)
        if not args:
            return None
        cmds.append(Command(cmd.pos, args))
    return Pipe(pipe.pos, pipe.decl, pipe.is_assign, cmds) if cmds else None


def ensure(template: str | Template) -> Template:
    """A ``Template`` from either form, so callers may pass the TEMPLATE layer's text."""
    return template if isinstance(template, Template) else Template.parse(template)
