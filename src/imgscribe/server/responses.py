"""OpenAI's Responses API, ``/v1/responses``, stateless, as Ollama serves it (``openai/responses.go``).

``input`` is a string (one user message) or a list of items: messages (``{"role", "content"}``,
``type: "message"`` or none) whose content is a string or ``input_text`` / ``input_image`` /
``output_text`` parts. An ``input_image``'s ``image_url`` is a data URI, or an http(s) URL where
the server fetches URLs (the chat route's SSRF-guarded setting, ``IMGSCRIBE_ALLOW_URLS``).
``instructions`` becomes the system prompt; ``text.format`` is ``text``, ``json_object`` or
``json_schema``; ``max_output_tokens``, ``temperature``, ``top_p`` map to Ollama's options. An
``input_image`` whose data is a clip (sniffed by content, as on every route) is a video
(:mod:`imgscribe.video`), sampled under imgscribe's ``video_max_tokens`` and ``video_sampling``
(extra body fields, as on /v1/chat/completions).

Nothing is stored, so what needs a stored response is refused with a clear 400:
``previous_response_id``, ``store: true``, ``conversation``, ``background``; and so are ``tools``
and tool items (``function_call``, ``function_call_output``), ``input_file`` and ``file_id``.

Streamed (``stream: true``), the answer is SSE with typed events (``event:`` and ``data:``, no
``[DONE]``): ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, ``response.completed``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import ImgscribeError, InvalidRequest, Unsupported
from ..types import (ChatRequest, Chunk, Format, Image, Message, Options, Role, check_format, check_int, json_type,
                     options_from)  # fmt: skip
from ..wire.openai import error_type
from .context import server_of
from .errors import message_of, status_of
from .inputs import Labelled, clip_settings_for
from .render import dump
from .wire import Body, parse_keep_alive, require_model

router = APIRouter(prefix="/v1")
ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
PARTS = ("input_text", "input_image", "output_text", "refusal")


class TextField(Body):
    format: dict[str, Any] | None = None


class ResponsesBody(Body):
    model: str = ""
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextField | None = None
    stream: bool | None = False
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    tools: list[Any] | None = None
    truncation: str | None = None
    keep_alive: Any = None
    video_max_tokens: Any = None  # imgscribe's (extra_body), as on /v1/chat/completions
    video_sampling: Any = None


class Responses:
    """A ``response`` object, or the stream of typed events that builds one (Ollama's shapes)."""

    media_type = "text/event-stream"
    end = b""

    def __init__(self, model: str, body: ResponsesBody, format_field: dict[str, Any]):
        self.model = model
        self.body = body
        self.format = format_field
        self.id = f"resp_{uuid.uuid4().hex[:24]}"
        self.item = f"msg_{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.sequence = 0
        self.started = False
        self.text = ""

    def response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        b = self.body
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status, "incomplete_details": None, "model": self.model, "previous_response_id": None,
            "instructions": b.instructions or None, "output": output, "error": None, "tools": [],
            "tool_choice": "auto", "truncation": b.truncation or "disabled", "parallel_tool_calls": True,
            "text": {"format": self.format},
            "top_p": 1.0 if b.top_p is None else b.top_p, "presence_penalty": 0, "frequency_penalty": 0,
            "top_logprobs": 0, "temperature": 1.0 if b.temperature is None else b.temperature,
            "reasoning": None, "usage": usage, "max_output_tokens": b.max_output_tokens, "max_tool_calls": None,
            "store": False, "background": False, "service_tier": "default", "metadata": {},
            "safety_identifier": None, "prompt_cache_key": None,
        }  # fmt: skip

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _message(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.item, "type": "message", "status": status, "role": "assistant", "content": content}

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return event

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item, "output_index": 0, "content_index": 0}

    def events(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = []
        if self.sequence == 0:
            out.append(self._event("response.created", response=self.response("in_progress", [], None)))
            out.append(self._event("response.in_progress", response=self.response("in_progress", [], None)))
        if chunk.text or (chunk.done and not self.started):
            if not self.started:
                self.started = True
                out.append(self._event("response.output_item.added", output_index=0,
                                       item=self._message("in_progress", [])))  # fmt: skip
                out.append(self._event("response.content_part.added", **self._where(), part=self._part("")))
            if chunk.text:
                self.text += chunk.text
                out.append(self._event("response.output_text.delta", **self._where(), delta=chunk.text, logprobs=[]))
        if chunk.done:
            part = self._part(self.text)
            message = self._message("completed", [part])
            out.append(self._event("response.output_text.done", **self._where(), text=self.text, logprobs=[]))
            out.append(self._event("response.content_part.done", **self._where(), part=part))
            out.append(self._event("response.output_item.done", output_index=0, item=message))
            done = self.response("completed", [message], usage(chunk))
            out.append(self._event("response.completed", response=done))
        return out

    def whole(self, chunks: Iterable[Chunk]) -> dict[str, Any]:
        chunks = list(chunks)
        text = "".join(c.text for c in chunks)
        return self.response("completed", [self._message("completed", [self._part(text)])], usage(chunks[-1]))

    def error(self, exc: BaseException) -> dict[str, Any]:
        status = status_of(exc)
        message = message_of(exc if isinstance(exc, ImgscribeError) else RuntimeError())
        err = {"type": error_type(status), "code": None, "message": message, "param": None}
        return self._event("error", code=None, message=message, param=None, error=err)

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return b"event: " + obj["type"].encode() + b"\ndata: " + dump(obj) + b"\n\n"


def usage(chunk: Chunk) -> dict[str, Any]:
    m = chunk.metrics
    prompt, output = (m.prompt_eval_count, m.eval_count) if m else (0, 0)
    out: dict[str, Any] = {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output,
                           "input_tokens_details": {"cached_tokens": 0},
                           "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
    if chunk.images:  # imgscribe's: what each image became, as on /v1/chat/completions
        out["input_tokens_details"]["images"] = chunk.images
    return out


@router.post("/responses")
async def responses(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    body = await server.body(request, ResponsesBody)
    model = require_model(body.model)
    _refuse_stateful(body)
    items = _items(body.input)
    format, format_field = _format(body.text)
    options = _options(body)
    keep_alive = parse_keep_alive(body.keep_alive)
    groups = [_images(item, i) for i, item in enumerate(items)]
    info = server.model(request, model, images=sum(len(g) for g in groups))
    stream = bool(body.stream)

    def work(cancel: threading.Event):
        images, held = server.reader.read_request(groups, cancel, info.max_image_side, media=True,
                                                  clips=clip_settings_for(server.scheduler, info.name, options))  # clips
        messages = [Message("system", body.instructions)] if body.instructions else []
        messages += [_message(item, imgs) for item, imgs in zip(items, images, strict=True)]
        chat = ChatRequest(info.name, messages, options=options, format=format, keep_alive=keep_alive, stream=stream)
        return server.answer(chat, cancel, arrived, held)

    return await server.respond(request, work, Responses(model, body, format_field), stream=stream)


def _refuse_stateful(body: ResponsesBody) -> None:
    if body.previous_response_id:
        raise Unsupported(
            "previous_response_id: this server does not store responses: send the whole conversation in 'input'"
        )
    if body.store:
        raise Unsupported("store: true: this server does not store responses: leave 'store' out or send false")
    if body.conversation is not None:
        raise Unsupported("conversation: this server does not keep conversations: send them in 'input'")
    if body.background:
        raise Unsupported("background: true: this server answers in the foreground only")
    if body.tools:
        raise Unsupported("tools: this server does not call tools on /v1/responses")


def _items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The input as messages ``{"role", "content"}``, each part's type checked."""
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not value:
        raise InvalidRequest("input: an empty list: send a string or at least one message")
    for i, item in enumerate(value):
        kind = item.get("type") or ("message" if "role" in item else "")
        if kind != "message":
            if not kind:
                raise InvalidRequest(f"input[{i}]: input item missing required 'type' field")
            if kind in ("function_call", "function_call_output", "reasoning", "web_search_call"):
                raise Unsupported(f"input[{i}]: items of type {kind!r} are not supported: this server does not call tools")
            raise InvalidRequest(f"input[{i}]: unknown input item type: {kind!r}")
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"input[{i}].role: invalid role {role!r}: use user, assistant, system or developer")
        content = item.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"input[{i}].content: must be a string or an array of parts, not {json_type(content)}")
        for j, part in enumerate(content):
            _check_part(part, f"input[{i}].content[{j}]")
    return value


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where}: must be an object, not {json_type(part)}")
    kind = part.get("type")
    if kind not in PARTS:
        if kind == "input_file":
            raise Unsupported(f"{where}: input_file is not supported: send images as input_image")
        raise InvalidRequest(f"{where}: content of type {kind!r} is not supported: use input_text or input_image")
    if kind == "input_image":
        if part.get("file_id"):
            raise Unsupported(f"{where}.file_id: this server has no files: send image_url as a data: URI")
        if not isinstance(part.get("image_url"), str):
            raise InvalidRequest(f"Missing required parameter: '{where}.image_url' (a data: URI)")
    elif not isinstance(part.get("text" if kind != "refusal" else "refusal"), str):
        raise InvalidRequest(f"Missing required parameter: '{where}.text' (a string)")


def _images(item: dict[str, Any], index: int) -> list[Labelled]:
    content = item.get("content")
    if not isinstance(content, list):
        return []
    return [(p["image_url"], f"input[{index}].content[{j}].image_url")
            for j, p in enumerate(content) if p.get("type") == "input_image"]  # fmt: skip


def _message(item: dict[str, Any], images: list[Image]) -> Message:
    content = item.get("content")
    if isinstance(content, str):
        return Message(ROLES[item["role"]], content)
    texts = [p.get("text") or p.get("refusal") or "" for p in content if p.get("type") != "input_image"]
    return Message.with_media(ROLES[item["role"]], "\n\n".join(t for t in texts if t), images)


def _format(text: TextField | None) -> tuple[Format, dict[str, Any]]:
    """``text.format`` as Ollama's ``format``, and as the response repeats it."""
    if text is None or text.format is None:
        return None, {"type": "text"}
    field = text.format
    kind = field.get("type", "text")
    if kind == "text":
        return None, {"type": "text"}
    if kind == "json_object":
        return "json", {"type": "json_object"}
    if kind == "json_schema":
        schema = field.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("text.format.schema: a JSON Schema object is required for json_schema")
        return check_format(schema), field
    raise InvalidRequest(f"text.format.type {kind!r}: use text, json_object or json_schema")


def _options(body: ResponsesBody) -> Options:
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        raise InvalidRequest(
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= 1, but got {body.max_output_tokens}"
        )
    check_int("max_output_tokens", body.max_output_tokens)
    return options_from({"num_predict": body.max_output_tokens, "temperature": body.temperature,
                         "top_p": body.top_p, "video_max_tokens": body.video_max_tokens,
                         "video_sampling": body.video_sampling})  # fmt: skip
