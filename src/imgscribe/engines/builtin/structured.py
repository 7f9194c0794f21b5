"""``format``: "json" gives the evidence as a JSON object; a JSON schema is filled from the evidence
by property names (description/caption/summary/alt_text -> the description, labels/tags/objects/
keywords -> label names, text/ocr -> the text, colors/colours -> colour names, kind/type -> the kind,
...) and checked with ``jsonschema`` before it is sent."""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import InvalidRequest
from . import compose as C
from . import labels as L

MAX_DEPTH = 8


def image_object(ev: dict[str, Any]) -> dict[str, Any]:
    """The structured fields of one image (what format="json" sends)."""
    return {
        "description": C.describe(ev),
        "kind": ev["kind"],
        "labels": [{"label": x["label"], "score": x["score"]} for x in ev["labels"]],
        "text": ev["text"],
        "text_lines": [{"text": ln["text"], "score": ln["score"], "box": ln["box"]} for ln in ev["text_lines"]],
        "colours": [{"name": c["name"], "share": c["share"], "hex": c["hex"]} for c in ev["colours"]],
        "width": ev["image"]["width"],
        "height": ev["image"]["height"],
    }


def as_json(evs: list[dict[str, Any]], answer: str | None) -> str:
    if len(evs) == 1:
        obj = image_object(evs[0])
    else:
        obj = {"images": [image_object(ev) for ev in evs]}
    if answer is not None:
        obj = {"answer": answer, **obj}
    return json.dumps(obj, ensure_ascii=False)


class _Context:
    def __init__(self, evs: list[dict[str, Any]], answer: str | None):
        self.evs = evs
        self.answer = answer
        self.description = C.describe_many(evs) if evs else (answer or "")
        self.labels = sorted((x for ev in evs for x in ev["labels"]), key=lambda x: -x["score"])
        self.mentioned = [x for x in self.labels if x["score"] >= C.MENTION] or self.labels[:1]
        self.text = "\n".join(ev["text"] for ev in evs if ev["text"])
        self.rows = [r for r in self.text.split("\n") if r]
        self.colours = [c for ev in evs for c in ev["colours"]]
        self.kind = evs[0]["kind"] if evs else ""

    def one(self, ev: dict[str, Any]) -> _Context:
        return _Context([ev], None)


_KEYS: list[tuple[str, str]] = [  # (regex on the property name, what it gets), most specific first
    (r"^(alt|alt_?text|description|desc|caption|summary|overview|details?|scene)$|descr|caption|summar", "description"),
    (r"answer|response|reply|result|output", "answer"),
    (r"^(has|contains|is_?there|includes)_?(any_?)?(text|writing|words)", "has_text"),
    (r"^is_?(a_?)?(photo|document|screenshot|graphic)", "is_kind"),
    (r"score|confiden|probab|certain", "score"),
    (r"count|number|^n_|^num", "count"),
    (r"width", "width"),
    (r"height", "height"),
    (r"colou?r", "colours"),
    (r"^(text|ocr|transcript\w*|content_?text|written|reading|words|lines|text_?lines|ocr_?text)$|text|ocr", "text"),
    (r"label|tag|object|keyword|categor|class|subject|thing|entit|item|concept|topic|contents?$", "labels"),
    (r"^(kind|type|image_?type|kind_?of_?image|medium|format|genre)$", "kind"),
    (r"image", "images"),
    (r"title|name|main|primary|top", "label"),
]


def _role(name: str) -> str:
    n = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if _group_of(n):
        return "group"
    for pattern, role in _KEYS:
        if re.search(pattern, n):
            return role
    return ""


def _group_of(name: str) -> str | None:
    """'animal', 'main_drink', 'dogs' -> the label group they ask for."""
    for word in re.sub(r"[^a-z0-9]+", "_", name.lower()).split("_"):
        for w in (word, word[:-1] if word.endswith("s") else word):
            if w in L.QUESTION_WORDS:
                return L.QUESTION_WORDS[w]
    return None


def _members(ctx: _Context, name: str) -> list[dict[str, Any]]:
    group = _group_of(name)
    return [x for x in ctx.labels if group in x["groups"] and x["score"] >= 0.05]


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    t = schema.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    options = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(isinstance(o, dict) and o.get("type") == "null" for o in options)


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit < 2:
        return text[:limit]
    cut = text[: limit - 1]
    cut = cut[: cut.rfind(" ")] if " " in cut else cut
    return cut.rstrip(" ,;:") + "…"


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    for _ in range(MAX_DEPTH):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    for key in ("anyOf", "oneOf"):
        options = schema.get(key) if isinstance(schema, dict) else None
        if isinstance(options, list) and options:
            chosen = next((o for o in options if isinstance(o, dict) and o.get("type") != "null"), options[0])
            schema = {**{k: v for k, v in schema.items() if k != key}, **_resolve(chosen, root)}
    if isinstance(schema, dict) and isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged["required"] = list({*merged.get("required", []), *part.get("required", [])})
            merged.setdefault("type", part.get("type"))
        schema = merged
    return schema if isinstance(schema, dict) else {}


def _type(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t:
        return t
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    if "enum" in schema and schema["enum"]:
        return {str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(schema["enum"][0]), "string")
    return "string"


def _enum(schema: dict[str, Any], value: Any) -> Any:
    options = schema.get("enum")
    if "const" in schema:
        return schema["const"]
    if not options:
        return value
    if value in options:
        return value
    text = str(value).lower()
    for o in options:
        if str(o).lower() == text or (isinstance(o, str) and o.lower() in text.split()):
            return o
    for o in options:
        if isinstance(o, str) and (o.lower() in text or text in o.lower()):
            return o
    for fallback in ("other", "unknown", "none", "n/a"):
        for o in options:
            if str(o).lower() == fallback:
                return o
    return options[0]


def _fill(schema: Any, name: str, ctx: _Context, root: dict[str, Any], depth: int = 0) -> Any:
    nullable = _nullable(schema)
    schema = _resolve(schema, root)
    t = _type(schema)
    role = _role(name)
    if depth > MAX_DEPTH:
        return None
    if t == "object":
        props = schema.get("properties") or {}
        out = {}
        label = getattr(ctx, "current_label", None)
        for key, sub in props.items():
            sub_role = _role(key)
            if label is not None and sub_role in ("labels", "label", "description", ""):
                out[key] = _enum(_resolve(sub, root), label["label"])
            elif label is not None and sub_role == "score":
                out[key] = label["score"]
            else:
                out[key] = _fill(sub, key, ctx, root, depth + 1)
        return out
    if t == "array":
        items = _resolve(schema.get("items") or {}, root)
        item_type = _type(items) if items else "string"
        values: list[Any]
        if role == "images" and ctx.evs:
            values = [_fill(items, "image", ctx.one(ev), root, depth + 1) for ev in ctx.evs]
        elif item_type == "object":
            if role == "colours":
                values = [
                    {k: _colour_field(k, c, _resolve(v, root)) for k, v in (items.get("properties") or {}).items()}
                    for c in ctx.colours
                ]
            elif role == "text":
                values = [
                    {k: _line_field(k, ln, _resolve(v, root)) for k, v in (items.get("properties") or {}).items()}
                    for ev in ctx.evs for ln in ev["text_lines"]
                ]
            else:
                values = []
                for x in ctx.mentioned:
                    sub = _Context(ctx.evs, ctx.answer)
                    sub.current_label = x  # type: ignore[attr-defined]
                    values.append(_fill(items, "label", sub, root, depth + 1))
        elif role == "group":
            values = [x["label"] for x in _members(ctx, name)]
        elif role == "colours":
            values = [c["name"] for c in ctx.colours]
        elif role == "text":
            values = list(ctx.rows)
        elif role in ("labels", "label", ""):
            values = [x["label"] for x in ctx.mentioned]
        else:
            values = [_fill(items, name, ctx, root, depth + 1)]
        if item_type in ("string",) and items.get("enum"):
            values = [_enum(items, v) for v in values]
        if schema.get("uniqueItems"):
            seen: list[Any] = []
            values = [v for v in values if not (v in seen or seen.append(v))]
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        values = values[:hi] if hi is not None else values
        while len(values) < lo:
            values.append(_fill(items, name, ctx, root, depth + 1))
        return values
    if t == "boolean":
        if role == "has_text" or ("text" in name.lower()):
            return bool(ctx.text)
        if role == "is_kind":
            return ctx.kind in name.lower()
        return False  # nothing in the evidence says yes
    if t in ("number", "integer"):
        value: float = 0
        if role == "score":
            value = ctx.mentioned[0]["score"] if ctx.mentioned else 0.0
        elif role == "count":  # only counts the evidence has: never a made-up count of things
            n = name.lower()
            if "line" in n or "row" in n:
                value = len(ctx.rows)
            elif "word" in n:
                value = len(ctx.text.split())
            elif "colo" in n:
                value = len(ctx.colours)
            elif "label" in n or "tag" in n:
                value = len(ctx.mentioned)
        elif role in ("width", "height") and ctx.evs:
            value = ctx.evs[0]["image"][role]
        if t == "integer":
            value = int(round(value))
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return _enum(schema, value)
    if t == "null":
        return None
    # string
    if role == "group":
        members = _members(ctx, name)
        if not members:
            return None if nullable else _enum(schema, "none")
        s = C.subject({"labels": members})
        value_s = s["name"] if s else members[0]["label"]
    elif role == "description" or (role == "" and ctx.answer is None):
        value_s = ctx.description
    elif role == "answer":
        value_s = ctx.answer if ctx.answer is not None else ctx.description
    elif role == "text":
        value_s = ctx.text
    elif role == "colours":
        value_s = C.join([c["name"] for c in ctx.colours[:3]])
    elif role == "labels":
        value_s = ", ".join(x["label"] for x in ctx.mentioned)
    elif role in ("label", "images"):
        value_s = ctx.mentioned[0]["label"] if ctx.mentioned else ""
    elif role == "kind":
        value_s = ctx.kind
    else:
        value_s = ctx.answer or ctx.description
    value_s = _enum(schema, value_s)
    if isinstance(value_s, str) and schema.get("maxLength") is not None:
        value_s = _cut(value_s, schema["maxLength"])
    return value_s


def _colour_field(key: str, c: dict[str, Any], schema: dict[str, Any]) -> Any:
    k = key.lower()
    if "hex" in k or "code" in k:
        return c["hex"]
    if "rgb" in k:
        return c["rgb"] if _type(schema) == "array" else c["hex"]
    if any(w in k for w in ("share", "fraction", "percent", "proportion", "ratio", "amount", "weight")):
        v = c["share"] * (100 if "percent" in k else 1)
        return int(round(v)) if _type(schema) == "integer" else v
    return _enum(schema, c["name"])


def _line_field(key: str, ln: dict[str, Any], schema: dict[str, Any]) -> Any:
    k = key.lower()
    if any(w in k for w in ("score", "confiden", "probab")):
        return ln["score"]
    if any(w in k for w in ("box", "bbox", "bound")):
        return ln["box"]
    return ln["text"]


def fill_schema(schema: dict[str, Any], evs: list[dict[str, Any]], answer: str | None) -> str:
    """Fill ``schema`` (a valid one: ChatRequest checked it) from the evidence; InvalidRequest when
    the result does not validate."""
    import jsonschema

    value = _fill(schema, "", _Context(evs, answer), schema)
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise InvalidRequest(
            f"the builtin model cannot fill this JSON schema from what it sees ({exc.message}); "
            "use a vision-language model for free-form structured output"
        ) from None
    return json.dumps(value, ensure_ascii=False)
