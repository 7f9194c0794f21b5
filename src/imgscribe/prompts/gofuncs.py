"""Go's values as templates see them: printing (fmt's %v), truth, comparison, json, and the functions.

Python stands in for Go's types: ``dict`` is a ``map[string]any`` (a missing key is nil), ``Struct`` a
Go struct (an unknown field is an error), ``None`` nil, a list a slice. A value whose type has a
``go_string()`` method prints through it, as a Go ``String()`` method would.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


class FuncError(Exception):
    """A function or an operation failed; the evaluator adds where."""


class Struct:
    """A Go struct: fixed fields in order; ``json`` is what encoding/json would write (in order)."""

    __slots__ = ("fields", "json", "string", "type_name")

    def __init__(self, type_name: str, fields: dict[str, Any], *, json: Any = None, string=None):
        self.type_name = type_name
        self.fields = fields
        self.json = json
        self.string = string

    def go_string(self) -> str:
        return self.string(self) if self.string else "{" + " ".join(go_fmt(v, nested=True) for v in self.fields.values()) + "}"

    def __repr__(self) -> str:
        return f"Struct({self.type_name}, {self.fields!r})"


def type_name(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, Struct):
        return v.type_name
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(v)) or (
        "map[string]interface {}" if isinstance(v, Mapping) else "[]interface {}" if isinstance(v, (list, tuple)) else type(v).__name__
    )


def go_float(f: float, verb: str = "g") -> str:
    """A float64 as Go writes it: %v is strconv's shortest 'g' (%e from exponent 6), json's 'f' up to 1e21."""
    if math.isnan(f) or math.isinf(f):
        return "NaN" if math.isnan(f) else "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1, f) < 0 else ""
    if f == 0:
        return sign + "0"
    tup = Decimal(repr(abs(f))).normalize().as_tuple()
    digs = "".join(map(str, tup.digits))
    dp = len(digs) + int(tup.exponent)
    exp = dp - 1
    use_e = (abs(f) < 1e-6 or abs(f) >= 1e21) if verb == "json" else (exp < -4 or exp >= 6)
    if use_e:
        mant = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
        width = 1 if verb == "json" else 2
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):0{width}d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digs}"
    if dp >= len(digs):
        return sign + digs + "0" * (dp - len(digs))
    return f"{sign}{digs[:dp]}.{digs[dp:]}"


def go_fmt(v: Any, nested: bool = False) -> str:
    """fmt.Sprint of one value; at the top, nil is ``<no value>`` as text/template prints it."""
    if v is None:
        return "<nil>" if nested else "<no value>"
    method = getattr(type(v), "go_string", None)
    if method is not None:
        return method(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{go_fmt(k, True)}:{go_fmt(v[k], True)}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_fmt(x, True) for x in v) + "]"
    return str(v)


def go_json(v: Any) -> str:
    """json.Marshal: compact, map keys sorted, struct fields in order, <>& escaped as Go does."""
    method = getattr(type(v), "go_json", None)
    if method is not None:
        return method(v)
    if isinstance(v, Struct):
        if v.json is None:
            return "{" + ",".join(f"{_jstr(k)}:{go_json(x)}" for k, x in v.fields.items()) + "}"
        if isinstance(v.json, dict):
            return "{" + ",".join(f"{_jstr(k)}:{go_json(x)}" for k, x in v.json.items()) + "}"
        return go_json(v.json)
    if v is None or isinstance(v, bool):
        return "null" if v is None else "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise FuncError(f"json: unsupported value: {go_float(v)}")
        return go_float(v, "json")
    if isinstance(v, str):
        return _jstr(v)
    if isinstance(v, (bytes, bytearray)):
        return _jstr(base64.b64encode(bytes(v)).decode())
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_jstr(str(k))}:{go_json(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    return _jstr(str(v))


def _jstr(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def truth(v: Any) -> bool:
    """text/template's isTrue: zero values, nil and empty containers are false; a struct is true."""
    if v is None:
        return False
    if isinstance(v, Struct):
        return True
    if isinstance(v, (bool, int, float, str, bytes, list, tuple, Mapping)):
        return bool(v)
    return True


def _kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def eq(*args: Any) -> bool:
    if len(args) < 2:
        raise FuncError("missing argument for comparison")
    a, k1 = args[0], _kind(args[0])
    for b in args[1:]:
        k2 = _kind(b)
        if k1 != k2:
            if a is not None and b is not None:
                raise FuncError("incompatible types for comparison")
            continue
        if k1 == "other" and (isinstance(a, (list, tuple, Mapping)) or isinstance(b, (list, tuple, Mapping))):
            raise FuncError(f"non-comparable type {go_fmt(a, True)}: {type_name(a)}")
        if a == b or (a is None and b is None):
            return True
    return False


def ne(a: Any, b: Any) -> bool:
    return not eq(a, b)


def _order(a: Any, b: Any) -> tuple[Any, Any]:
    k1, k2 = _kind(a), _kind(b)
    if k1 in ("nil", "other") or k2 in ("nil", "other"):
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    if k1 == "bool":
        raise FuncError("invalid type for comparison")
    return a, b


def lt(a: Any, b: Any) -> bool:
    x, y = _order(a, b)
    return x < y


def le(a: Any, b: Any) -> bool:
    x, y = _order(a, b)
    return x <= y


def gt(a: Any, b: Any) -> bool:
    return not le(a, b)


def ge(a: Any, b: Any) -> bool:
    return not lt(a, b)


def go_len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (list, tuple, Mapping, bytes)):
        return len(v)
    raise FuncError(f"len of type {type_name(v)}" if v is not None else "len of nil pointer")


def _int_arg(i: Any) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise FuncError(f"cannot index slice/array with type {type_name(i)}")
    return i


def index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None:
            raise FuncError("index of untyped nil")
        if isinstance(item, Mapping):
            item = item.get(key)
        elif isinstance(item, (list, tuple, str, bytes)):
            i = _int_arg(key)
            seq = item.encode() if isinstance(item, str) else item
            if not 0 <= i < len(seq):
                raise FuncError(f"index out of range: {i}")
            item = seq[i]
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def go_slice(item: Any, *idx: Any) -> Any:
    if item is None:
        raise FuncError("slice of untyped nil")
    if not isinstance(item, (list, tuple, str)):
        raise FuncError(f"can't slice item of type {type_name(item)}")
    if len(idx) > 3:
        raise FuncError(f"too many slice indexes: {len(idx)}")
    if isinstance(item, str) and len(idx) == 3:
        raise FuncError("cannot 3-index slice a string")
    seq = item.encode() if isinstance(item, str) else item
    bounds = [0, len(seq), len(seq)]
    for n, i in enumerate(idx):
        i = _int_arg(i)
        if not 0 <= i <= len(seq):
            raise FuncError(f"index out of range: {i}")
        bounds[n] = i
    if len(idx) < 3:
        bounds[2] = len(seq)
    if bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if bounds[1] > bounds[2]:
        raise FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    out = seq[bounds[0] : bounds[1]]
    return out.decode(errors="replace") if isinstance(item, str) else list(out)


def go_print(*args: Any) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_fmt(a, nested=True))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d*|\*))?([a-zA-Z%])")


def printf(fmt: Any, *args: Any) -> str:
    """fmt.Sprintf for the verbs prompt templates use: %s %v %d %q %t %f %e %g %x %X %c %%."""
    if not isinstance(fmt, str):
        raise FuncError(f"wrong type for value; expected string; got {type_name(fmt)}")
    out: list[str] = []
    pos = n = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[n]
        n += 1
        out.append(_pad(_verb(verb, arg, flags, prec), flags, width, arg))
    out.append(fmt[pos:])
    if n < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{type_name(a)}={go_fmt(a, True)}" for a in args[n:]) + ")")
    return "".join(out)


def _pad(s: str, flags: str, width: str | None, arg: Any) -> str:
    if not width or width == "*" or len(s) >= int(width):
        return s
    if "-" in flags:
        return s.ljust(int(width))
    if "0" in flags and isinstance(arg, (int, float)) and not isinstance(arg, bool):
        sign = s[0] if s[:1] in "+-" else ""
        return sign + s[len(sign) :].rjust(int(width) - len(sign), "0")
    return s.rjust(int(width))


def _verb(verb: str, arg: Any, flags: str, prec: str | None) -> str:
    if arg is None:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    if isinstance(arg, (list, tuple)) and verb not in "sv":
        return "[" + " ".join(_verb(verb, x, flags, prec) for x in arg) + "]"
    bad = f"%!{verb}({type_name(arg)}={go_fmt(arg, True)})"
    if verb == "s" and isinstance(arg, (bool, int, float)):
        return bad
    if verb in "sv":
        s = go_fmt(arg, nested=True)
        return s[: int(prec)] if verb == "s" and prec and prec.isdigit() else s
    if verb == "q":
        return json.dumps(arg, ensure_ascii=False) if isinstance(arg, str) else bad
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else bad
    if isinstance(arg, bool):
        return bad
    if verb in "dxXoc" and isinstance(arg, int):
        if verb == "c":
            return chr(arg)
        s = format(arg, {"d": "d", "x": "x", "X": "X", "o": "o"}[verb])
        return ("+" + s if "+" in flags and arg >= 0 else s)
    if verb in "xX" and isinstance(arg, str):
        s = arg.encode().hex()
        return s.upper() if verb == "X" else s
    if verb in "feEgG" and isinstance(arg, (int, float)):
        if verb in "gG" and not prec:
            s = go_float(float(arg))
        else:
            s = format(float(arg), f".{int(prec) if prec else 6}{verb}")
        return "+" + s if "+" in flags and arg >= 0 else s
    return bad


def json_func(v: Any) -> str:
    return go_json(v)


def current_date(*_: Any) -> str:
    return datetime.date.today().isoformat()


def yesterday_date(*_: Any) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


_TS = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "array": "any[]", "object": "Record<string, any>", "null": "null"}


def to_typescript_type(v: Any) -> str:
    """Ollama's ToolProperty.ToTypeScriptType; anything that is not a tool property is ``any``."""
    if not isinstance(v, Struct) or v.type_name != "api.ToolProperty":
        return "any"
    any_of = v.fields.get("AnyOf") or []
    if any_of:
        return " | ".join(to_typescript_type(p) for p in any_of)
    types = list(v.fields.get("Type") or [])
    if not types:
        return "any"
    return " | ".join(_TS.get(t, "any") for t in types)


#: Plain functions by name; ``and``/``or`` are evaluated lazily by the evaluator.
FUNCS = {
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge, "not": lambda v: not truth(v),
    "len": go_len, "index": index, "slice": go_slice, "print": go_print, "printf": printf,
    "json": json_func, "currentDate": current_date, "yesterdayDate": yesterday_date,
    "toTypeScriptType": to_typescript_type,
}  # fmt: skip
LAZY = frozenset({"and", "or"})
