"""Chat and generate prompts from a TEMPLATE layer, built as Ollama builds them (fb30760).

What Ollama does, kept here because models' templates were written against it:

- Messages are collated first: consecutive messages of one role (``tool`` aside) merge, joined by a
  blank line; ``.System`` is every system message joined the same way.
- A template that names ``.Messages`` gets ``System``, ``Messages``, ``Tools``, ``Response`` (empty),
  ``Think``, ``ThinkLevel`` and ``IsThinkSet``. One that does not is a legacy template: it is rendered
  once per turn with ``System``/``Prompt``/``Response``, and the last turn only up to its first
  ``.Response``, so a trailing assistant message is continued rather than closed.
- Images stay out of the text except as tags: each image of a message becomes ``[img-N]`` (N counts
  the images of the whole prompt from 0), put in place of a ``[img]`` the text holds or else before
  it. ``image_marker`` changes the tag (``{n}`` is the number), for an engine's own media marker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .gofuncs import Struct, go_json
from .gotemplate import Template, ensure

IMAGE_TAG = "[img-{n}]"
THINK_LEVELS = ("high", "medium", "low", "max")


@dataclass
class ChatPrompt:
    """A rendered prompt and its images in tag order (``images[n]`` is the image of tag n)."""

    prompt: str
    images: list[Any] = field(default_factory=list)


def chat_prompt(template: str | Template, messages: Sequence[Mapping[str, Any]], **options: Any) -> str:
    """The prompt for /api/chat; see ``render_chat`` for the options."""
    return render_chat(template, messages, **options).prompt


def render_chat(
    template: str | Template,
    messages: Sequence[Mapping[str, Any]],
    *,
    system: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    image_marker: str = IMAGE_TAG,
    history: Sequence[Mapping[str, Any]] = (),
    count_tokens: Callable[[str], int] | None = None,
    num_ctx: int = 0,
    image_tokens: int = 768,
) -> ChatPrompt:
    """Ollama's ChatHandler + ``chatPrompt``: prompt and images for a conversation.

    ``messages`` are Ollama's wire messages (role, content, images, tool_calls, thinking, tool_name,
    tool_call_id). ``system`` (the SYSTEM layer) goes first unless the request starts with a system
    message; ``history`` (MESSAGE layers) goes before the request's messages. With ``count_tokens``,
    the oldest messages are dropped until the prompt (plus ``image_tokens`` per image) fits
    ``num_ctx``, keeping earlier system messages and always the last message, as Ollama truncates.
    """
    tmpl = ensure(template)
    msgs = [*history, *messages]
    if system and (not messages or str(messages[0].get("role")).lower() != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    start, kept_system = 0, []
    if count_tokens is not None:
        for i in range(len(msgs)):
            kept_system = [m for m in msgs[:i] if m.get("role") == "system"]
            text = render_messages(tmpl, [*kept_system, *msgs[i:]], tools=tools, think=think)
            used = count_tokens(text) + image_tokens * sum(len(m.get("images") or ()) for m in msgs[i:])
            if used <= num_ctx or i == len(msgs) - 1:
                start = i
                break
    tagged, images = tag_images(msgs[start:], image_marker)
    return ChatPrompt(render_messages(tmpl, [*kept_system, *tagged], tools=tools, think=think), images)


def generate_prompt(
    template: str | Template,
    prompt: str,
    system: str | None = None,
    suffix: str | None = None,
    **options: Any,
) -> str:
    """The prompt for /api/generate; see ``render_generate`` for the options."""
    return render_generate(template, prompt, system, suffix, **options).prompt


def render_generate(
    template: str | Template,
    prompt: str,
    system: str | None = None,
    suffix: str | None = None,
    *,
    images: Sequence[Any] = (),
    history: Sequence[Mapping[str, Any]] = (),
    think: bool | str | None = None,
    request_template: bool = False,
    image_marker: str = IMAGE_TAG,
    count_tokens: Callable[[str], int] | None = None,
    num_ctx: int = 0,
    image_tokens: int = 768,
) -> ChatPrompt:
    """Ollama's GenerateHandler (not raw): the prompt and images for /api/generate.

    With a ``suffix``, the template gets ``Prompt`` and ``Suffix`` (fill-in-the-middle). Otherwise the
    request becomes messages: ``system`` (the request's, else the SYSTEM layer's), ``history`` and a
    user message with the images, rendered as a chat with no tools. A template sent in the request
    itself (``request_template``) is executed directly, as Ollama does: no image tags, no truncation.
    """
    tmpl = ensure(template)
    if suffix:
        return ChatPrompt(execute(tmpl, prompt=prompt, suffix=suffix, think=think), list(images))
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [*history, {"role": "user", "content": prompt, "images": list(images)}]
    if request_template:
        return ChatPrompt(execute(tmpl, messages=msgs, think=think), list(images))
    return render_chat(tmpl, msgs, tools=[], think=think, image_marker=image_marker,
                       count_tokens=count_tokens, num_ctx=num_ctx, image_tokens=image_tokens)  # fmt: skip


def tag_images(messages: Sequence[Mapping[str, Any]], marker: str = IMAGE_TAG) -> tuple[list[dict], list[Any]]:
    """Ollama's ``imageTaggedMessages``: each image's tag replaces a ``[img]`` or goes before the text."""
    out, images = [], []
    for msg in messages:
        msg = dict(msg)
        prefix, text = "", msg.get("content") or ""
        for image in msg.get("images") or ():
            tag = marker.replace("{n}", str(len(images)))
            images.append(image)
            if "[img]" in text:
                text = text.replace("[img]", tag, 1)
            else:
                prefix += tag
        msg["content"] = prefix + text
        out.append(msg)
    return out, images


def render_messages(template: str | Template, messages: Sequence[Mapping[str, Any]], *, tools=None, think=None) -> str:
    """Ollama's ``renderPrompt``: the messages as they are (tags already in their text)."""
    return execute(ensure(template), messages=messages, tools=tools, think=think)


def execute(
    template: Template,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    prompt: str = "",
    suffix: str = "",
) -> str:
    """Ollama's ``Template.Execute`` over its ``Values``."""
    thinking = {
        "Think": think in THINK_LEVELS if isinstance(think, str) else bool(think),
        "ThinkLevel": think if isinstance(think, str) else "medium" if think else "",
        "IsThinkSet": think is not None,
    }
    system, msgs = collate(messages or [])
    if prompt and suffix:
        return template.render({"Prompt": prompt, "Suffix": suffix, "Response": "", **thinking})
    if template.uses("messages"):
        values = {"System": system, "Messages": [message_value(m) for m in msgs], "Tools": tools_value(tools), "Response": ""}
        return template.render({**values, **thinking})
    out, turn = [], {"System": "", "Prompt": "", "Response": ""}
    for msg in msgs:
        role, content = msg.get("role"), msg.get("content") or ""
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (role == "user" and turn["Response"]):
            out.append(template.render({**turn, **thinking}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        if role in ("system", "user", "assistant"):
            turn[{"system": "System", "user": "Prompt", "assistant": "Response"}[role]] = content
    out.append(template.render_until_response({**turn, **thinking}))
    return "".join(out)


def collate(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict]]:
    """Ollama's ``collate``: all system texts joined, and same-role neighbours (not tools) merged."""
    system, out = [], []
    for msg in messages:
        msg = {**msg, "role": str(msg.get("role") or "").lower()}
        if msg["role"] == "system":
            system.append(msg.get("content") or "")
        if out and out[-1]["role"] == msg["role"] and msg["role"] != "tool":
            out[-1]["content"] = (out[-1].get("content") or "") + "\n\n" + (msg.get("content") or "")
        else:
            out.append(msg)
    return "\n\n".join(system), out


# -- the values Ollama's templates see, as the Go types they are --------------------------------


class _JSONMap(dict):
    """A map that prints as JSON (Ollama's templateArgs and templateProperties); a nil one prints ``{}``."""

    nil = False

    def go_string(self) -> str:
        return go_json(dict(self)) if self else "{}"

    def go_json(self) -> str:
        return "null" if self.nil else go_json(dict(self))


def _json_map(value: Mapping[str, Any] | None) -> _JSONMap:
    out = _JSONMap(value or {})
    out.nil = value is None
    return out


class _JSONList(list):
    """Ollama's templateTools: prints as JSON, ``null`` when no tools were given at all."""

    nil = False

    def go_string(self) -> str:
        return "null" if self.nil else go_json(list(self))

    go_json = go_string


class _PropertyType(list):
    """api.PropertyType: one type prints as itself, several as ``[a b]``; JSON likewise."""

    def go_string(self) -> str:
        return self[0] if len(self) == 1 else "[" + " ".join(self) + "]" if self else ""


def message_value(msg: Mapping[str, Any]) -> Struct:
    calls = [_tool_call(c) for c in msg.get("tool_calls") or ()]
    return Struct("*template.templateMessage", {
        "Role": msg.get("role") or "", "Content": msg.get("content") or "", "Thinking": msg.get("thinking") or "",
        "Images": list(msg.get("images") or ()), "ToolCalls": calls,
        "ToolName": msg.get("tool_name") or "", "ToolCallID": msg.get("tool_call_id") or "",
    })  # fmt: skip


def _tool_call(call: Mapping[str, Any]) -> Struct:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else None
    function = Struct("template.templateToolCallFunction", {
        "Index": fn.get("index") or 0, "Name": fn.get("name") or "", "Arguments": _json_map(args)})  # fmt: skip
    return Struct("template.templateToolCall", {"ID": call.get("id") or "", "Function": function})


def tools_value(tools: Sequence[Mapping[str, Any]] | None) -> _JSONList:
    out = _JSONList(_tool(t) for t in tools or ())
    out.nil = tools is None
    return out


def _tool(tool: Mapping[str, Any]) -> Struct:
    fn = tool.get("function") or {}
    params = fn.get("parameters") or {}
    props = params.get("properties")
    properties = _json_map({k: _property(v) for k, v in props.items()} if props is not None else None)
    p_json = {"type": params.get("type") or ""}
    for key, value in (("$defs", params.get("$defs")), ("items", params.get("items")), ("required", params.get("required") or None)):
        if value is not None:
            p_json[key] = value
    p_json["properties"] = properties
    parameters = Struct("template.templateToolFunctionParameters", {
        "Type": params.get("type") or "", "Defs": params.get("$defs"), "Items": params.get("items"),
        "Required": list(params.get("required") or ()), "Properties": properties}, json=p_json)  # fmt: skip
    function = Struct("template.templateToolFunction", {
        "Name": fn.get("name") or "", "Description": fn.get("description") or "", "Parameters": parameters},
        json={"name": fn.get("name") or "", "description": fn.get("description") or "", "parameters": parameters})  # fmt: skip
    t_json = {"type": tool.get("type") or ""}
    if tool.get("items") is not None:
        t_json["items"] = tool["items"]
    t_json["function"] = function
    return Struct("template.templateTool", {"Type": tool.get("type") or "", "Items": tool.get("items"), "Function": function},
                  json=t_json, string=lambda s: go_json(s))  # fmt: skip


def _property(prop: Mapping[str, Any]) -> Struct:
    kind = prop.get("type")
    types = _PropertyType([kind] if isinstance(kind, str) else list(kind or ()))
    any_of = [_property(p) for p in prop.get("anyOf") or ()]
    nested = prop.get("properties")
    nested_value = Struct("*api.ToolPropertiesMap", {}, json={k: _property(v) for k, v in nested.items()}) if nested is not None else None
    fields = {"AnyOf": any_of, "Type": types, "Items": prop.get("items"), "Description": prop.get("description") or "",
              "Enum": list(prop.get("enum") or ()), "Properties": nested_value, "Required": list(prop.get("required") or ())}  # fmt: skip
    j: dict[str, Any] = {}
    for key, value in (("anyOf", any_of), ("type", (types[0] if len(types) == 1 else list(types)) if types else None),
                       ("items", prop.get("items")), ("description", fields["Description"] or None),
                       ("enum", fields["Enum"] or None), ("properties", nested_value), ("required", fields["Required"] or None)):  # fmt: skip
        if value is not None and value != []:
            j[key] = value
    return Struct("api.ToolProperty", fields, json=j)
