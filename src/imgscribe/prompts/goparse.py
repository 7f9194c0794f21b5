"""The parser: tokens from ``golex`` into a tree of ``golex`` nodes, checked as Go's parser checks them.

Checked here, as Go does at parse time: functions exist, variables are declared, ``break`` and
``continue`` sit inside a ``range``, blocks close, ``else`` and ``end`` have a block to belong to.
"""

from __future__ import annotations

from .golex import (
    _KEYWORDS,
    _UNSUPPORTED,
    FUNCTION_NAMES,
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
    Text,
    Tok,
    Variable,
    lex,
)


def parse(src: Source) -> list[Node]:
    parser = _Parser(src)
    nodes, term, tok = parser.items()
    if term is not None:
        raise src.error(tok.pos, f"unexpected {{{{{term}}}}}")
    return nodes


class _Parser:
    def __init__(self, src: Source):
        self.src = src
        self.toks = lex(src)
        self.i = 0
        self.vars = ["$"]
        self.range_depth = 0

    # -- token access -------------------------------------------------------------------------

    def peek(self) -> Tok:
        return self.toks[self.i]  # type: ignore[return-value]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok  # type: ignore[return-value]

    def error(self, tok: Tok, msg: str):
        return self.src.error(tok.pos, msg)

    def expect_end_of_action(self, what: str) -> None:
        tok = self.next()
        if tok.kind != "eoa":
            raise self.error(tok, f"unexpected {tok.text!r} in {what}")

    # -- lists and blocks ---------------------------------------------------------------------

    def items(self) -> tuple[list[Node], str | None, Tok | None]:
        """Nodes up to an ``end``, an ``else`` (left unconsumed after the word) or the end of text."""
        nodes: list[Node] = []
        while self.i < len(self.toks):
            item = self.toks[self.i]
            if isinstance(item, Text):
                nodes.append(item)
                self.i += 1
                continue
            tok = self.next()
            if tok.kind == "ident" and tok.text in ("end", "else"):
                if tok.text == "end":
                    self.expect_end_of_action("end")
                return nodes, tok.text, tok
            if tok.kind == "ident" and tok.text in ("if", "range", "with"):
                nodes.append(self.control(tok))
            elif tok.kind == "ident" and tok.text in ("break", "continue"):
                if not self.range_depth:
                    raise self.error(tok, f"{{{{{tok.text}}}}} outside {{{{range}}}}")
                self.expect_end_of_action(tok.text)
                nodes.append(Loop(tok.pos, tok.text))
            elif tok.kind == "ident" and tok.text in _UNSUPPORTED:
                raise self.error(tok, f"{tok.text!r} is not supported")
            else:
                self.i -= 1
                pipe = self.pipeline("command", "eoa")
                nodes.append(Action(tok.pos, pipe))
        return nodes, None, None

    def control(self, tok: Tok) -> Branch:
        kind = tok.text
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "eoa")
            self.range_depth += kind == "range"
            body, term, _ = self.items()
            self.range_depth -= kind == "range"
            orelse = None
            if term == "else":
                after = self.peek()
                if after.kind == "ident" and after.text in ("if", "with") and after.text == kind:
                    self.next()
                    orelse = [self.control(after)]
                    term = "end"
                else:
                    self.expect_end_of_action("else")
                    orelse, term, end2 = self.items()
                    if term == "else":
                        raise self.error(end2, f"expected {{{{end}}}} for {{{{{kind}}}}}; found {{{{else}}}}")
            if term is None:
                raise self.error(tok, f"{{{{{kind}}}}} has no matching {{{{end}}}}")
            return Branch(tok.pos, kind, pipe, body, orelse)
        finally:
            del self.vars[mark:]

    # -- pipelines ----------------------------------------------------------------------------

    def pipeline(self, context: str, stop: str) -> Pipe:
        start = self.peek()
        decl, is_assign = self.declarations(context)
        cmds: list[Command] = []
        while True:
            cmd = self.command(stop)
            cmds.append(cmd)
            tok = self.next()
            if tok.kind == stop:
                break
            if tok.kind == "eoa":
                raise self.error(tok, "unclosed left paren")
        if not cmds[0].args and len(cmds) == 1:
            raise self.error(start, f"missing value for {context}")
        for n, cmd in enumerate(cmds, 1):
            if not cmd.args:
                raise self.error(start, "missing value for command")
            if n > 1 and isinstance(cmd.args[0], (Literal, Dot, Nil)):
                raise self.src.error(cmd.pos, f"non executable command in pipeline stage {n}")
        return Pipe(start.pos, decl, is_assign, cmds)

    def declarations(self, context: str) -> tuple[list[str], bool]:
        toks, i = self.toks, self.i
        if toks[i].kind != "var":
            return [], False
        names = [toks[i]]
        if toks[i + 1].kind == ",":
            if toks[i + 2].kind != "var":
                return [], False
            names.append(toks[i + 2])
            op = toks[i + 3]
            if op.kind == "," and context == "range":
                raise self.error(names[0], "too many declarations in range")
        else:
            op = toks[i + 1]
        if op.kind not in (":=", "="):
            return [], False
        if len(names) > 1 and context != "range":
            raise self.error(names[0], f"too many declarations in {context}")
        self.i = i + (4 if len(names) > 1 else 2)
        for tok in names:
            if op.kind == "=" and tok.text not in self.vars:
                raise self.error(tok, f"undefined variable {tok.text!r}")
            if op.kind == ":=":
                self.vars.append(tok.text)
        return [t.text for t in names], op.kind == "="

    def command(self, stop: str) -> Command:
        first = self.peek()
        args: list[Node] = []
        while True:
            tok = self.peek()
            if tok.kind in (stop, "|", "eoa", ")"):
                if tok.kind == ")" and stop != ")":
                    raise self.error(tok, "unexpected right paren")
                return Command(first.pos, args)
            if args and not tok.space:
                raise self.error(tok, f"unexpected {tok.text!r} in operand")
            args.append(self.operand())

    def operand(self) -> Node:
        tok = self.next()
        node = self.term(tok)
        while self.peek().kind == "field" and not self.peek().space:
            ident = self.next().text[1:]
            if isinstance(node, (Field, Variable)):
                node.idents.append(ident)
            elif isinstance(node, (Pipe, Chain)):
                node = node if isinstance(node, Chain) else Chain(node.pos, node, [])
                node.idents.append(ident)
            else:
                raise self.error(tok, f"unexpected . after term {tok.text!r}")
        return node

    def term(self, tok: Tok) -> Node:
        kind, text = tok.kind, tok.text
        if kind == "field":
            return Field(tok.pos, [text[1:]])
        if kind == "dot":
            return Dot(tok.pos)
        if kind == "var":
            if text not in self.vars:
                raise self.error(tok, f"undefined variable {text!r}")
            return Variable(tok.pos, text)
        if kind in ("string", "number", "char"):
            return Literal(tok.pos, tok.value, text)
        if kind == "(":
            return self.pipeline("parenthesized pipeline", ")")
        if kind == "ident":
            if text in ("true", "false"):
                return Literal(tok.pos, text == "true", text)
            if text == "nil":
                return Nil(tok.pos)
            if text in FUNCTION_NAMES:
                return Identifier(tok.pos, text)
            if text in _UNSUPPORTED:
                raise self.error(tok, f"{text!r} is not supported")
            if text in _KEYWORDS:
                raise self.error(tok, f"unexpected {{{{{text}}}}} in operand")
            raise self.error(tok, f"function {text!r} not defined")
        raise self.error(tok, f"unexpected {text!r} in operand" if kind != "eoa" else "unexpected end of action")
