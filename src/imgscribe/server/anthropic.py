"""Anthropic's Messages API, ``/v1/messages``, as Ollama serves it (``anthropic/anthropic.go``).

``system`` is a string or text blocks; ``messages`` alternate ``user`` and ``assistant`` turns whose
content is a string or blocks: ``text``, and ``image`` with a ``base64`` source (or a ``url``
source where the server fetches URLs: the chat route's SSRF-guarded ``IMGSCRIBE_ALLOW_URLS``).
``max_tokens`` is required, as Anthropic requires it; ``stop_sequences``, ``temperature``,
``top_p`` and ``top_k`` map to Ollama's options. An ``image`` block whose data is a clip (sniffed by
content, as on every route) is a video (:mod:`imgscribe.video`), sampled under imgscribe's
``video_max_tokens`` and ``video_sampling`` (extra body fields). Tools, tool blocks, documents and
extended thinking are refused with a clear 400.

Streamed, the answer is SSE with Anthropic's events: ``message_start``, ``content_block_start``,
``content_block_delta`` (``text_delta``)..., ``content_block_stop``, ``message_delta`` (stop reason
and usage), ``message_stop``. Errors are Anthropic's ``{"type": "error", "error": {"type",
"message"}}``, for what this route refuses and for a failure in the stream.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..errors import Busy, ImgscribeError, InvalidRequest, Unsupported
from ..types import ChatRequest, Chunk, Image, Message, Options, check_int, json_type, options_from
from .context import server_of
from .errors import RETRY_AFTER_SECONDS, anthropic_body, log_error, status_of
from .inputs import Labelled, clip_settings_for
from .render import dump
from .wire import Body, parse_keep_alive, require_model

router = APIRouter(prefix="/v1")

def error_body(exc: BaseException) -> dict[str, Any]:
    """Anthropic's error answer (``errors.anthropic_body``)."""
    return anthropic_body(exc)


def error_response(exc: BaseException) -> JSONResponse:
    log_error(exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, Busy) else None
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)


class MessagesBody(Body):
    model: str = ""
    max_tokens: int | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool | None = False
    tools: list[Any] | None = None
    thinking: dict[str, Any] | None = None
    keep_alive: Any = None
    video_max_tokens: Any = None  # imgscribe's (extra_body), as on /v1/chat/completions
    video_sampling: Any = None


class Messages:
    """A ``message`` object, or the events that build one."""

    media_type = "text/event-stream"
    end = b""

    def __init__(self, model: str):
        self.model = model
        self.id = f"msg_{uuid.uuid4().hex[:24]}"
        self.started = False

    def _message(self, content: list[dict[str, Any]], chunk: Chunk | None) -> dict[str, Any]:
        m = chunk.metrics if chunk else None
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": content,
                "stop_reason": stop_reason(chunk) if chunk else None, "stop_sequence": None,
                "usage": {"input_tokens": m.prompt_eval_count if m else 0, "output_tokens": m.eval_count if m else 0}}  # fmt: skip

    def events(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = []
        if not self.started:
            self.started = True
            out.append({"type": "message_start", "message": self._message([], None)})
            out.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        if chunk.text:
            out.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk.text}})
        if chunk.done:
            m = chunk.metrics
            out.append({"type": "content_block_stop", "index": 0})
            out.append({"type": "message_delta", "delta": {"stop_reason": stop_reason(chunk), "stop_sequence": None},
                        "usage": {"input_tokens": m.prompt_eval_count if m else 0,
                                  "output_tokens": m.eval_count if m else 0}})  # fmt: skip
            out.append({"type": "message_stop"})
        return out

    def whole(self, chunks: Iterable[Chunk]) -> dict[str, Any]:
        chunks = list(chunks)
        return self._message([{"type": "text", "text": "".join(c.text for c in chunks)}], chunks[-1])

    @staticmethod
    def error(exc: BaseException) -> dict[str, Any]:
        return error_body(exc if isinstance(exc, ImgscribeError) else RuntimeError())

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return b"event: " + obj["type"].encode() + b"\ndata: " + dump(obj) + b"\n\n"


def stop_reason(chunk: Chunk) -> str:
    return "max_tokens" if chunk.done_reason == "length" else "end_turn"


@router.post("/messages")
async def messages(request: Request) -> Response:
    try:
        return await _messages(request)
    except Exception as exc:  # before the answer started: Anthropic's shape, not OpenAI's
        return error_response(exc)


async def _messages(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    body = await server.body(request, MessagesBody)
    model = require_model(body.model)
    if body.max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    if body.tools:
        raise Unsupported("tools: this server does not call tools on /v1/messages")
    if body.thinking and body.thinking.get("type") not in (None, "disabled"):
        raise Unsupported("thinking: extended thinking is not supported on /v1/messages")
    system = _system(body.system)
    turns = _turns(body.messages)
    options = _options(body)
    keep_alive = parse_keep_alive(body.keep_alive)
    groups = [_images(turn, i) for i, turn in enumerate(turns)]
    info = server.model(request, model, images=sum(len(g) for g in groups))
    stream = bool(body.stream)

    def work(cancel: threading.Event):
        images, held = server.reader.read_request(groups, cancel, info.max_image_side, media=True,
                                                  clips=clip_settings_for(server.scheduler, info.name, options))  # clips
        messages = [Message("system", system)] if system else []
        messages += [_message(turn, imgs) for turn, imgs in zip(turns, images, strict=True)]
        chat = ChatRequest(info.name, messages, options=options, keep_alive=keep_alive, stream=stream)
        return server.answer(chat, cancel, arrived, held)

    return await server.respond(request, work, Messages(model), stream=stream)


def _system(value: str | list[dict[str, Any]] | None) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    texts = []
    for i, block in enumerate(value):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"system[{i}]: system blocks must be text blocks with a string 'text'")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _turns(value: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest("messages: Field required")
    if not value:
        raise InvalidRequest("messages: at least one message is required")
    for i, turn in enumerate(value):
        if turn.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages[{i}].role: Input should be 'user' or 'assistant', got {turn.get('role')!r}")
        content = turn.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"messages[{i}].content: a string or an array of content blocks, not {json_type(content)}")
        for j, block in enumerate(content):
            _check_block(block, f"messages[{i}].content[{j}]")
    return value


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: a content block must be an object, not {json_type(block)}")
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.text: Field required (a string)")
        return
    if kind in ("tool_use", "tool_result", "server_tool_use", "web_search_tool_result"):
        raise Unsupported(f"{where}: {kind} blocks are not supported: this server does not call tools")
    if kind != "image":
        raise InvalidRequest(f"{where}: content blocks of type {kind!r} are not supported: use text or image")
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source: Field required (an object)")
    kind = source.get("type")
    field = {"base64": "data", "url": "url"}.get(kind) if isinstance(kind, str) else None
    if field is None:
        raise InvalidRequest(f"{where}.source.type {source.get('type')!r}: use base64 (or url, where the server fetches URLs)")
    if not isinstance(source.get(field), str):
        raise InvalidRequest(f"{where}.source.{field}: Field required (a string)")


def _images(turn: dict[str, Any], index: int) -> list[Labelled]:
    content = turn.get("content")
    if not isinstance(content, list):
        return []
    out = []
    for j, block in enumerate(content):
        if block.get("type") == "image":
            source = block["source"]
            out.append((source["data"] if source["type"] == "base64" else source["url"],
                        f"messages[{index}].content[{j}].source"))  # fmt: skip
    return out


def _message(turn: dict[str, Any], images: list[Image]) -> Message:
    content = turn["content"]
    if isinstance(content, str):
        return Message(turn["role"], content)
    texts = [b["text"] for b in content if b.get("type") == "text" and b["text"]]
    return Message.with_media(turn["role"], "\n\n".join(texts), images)


def _options(body: MessagesBody) -> Options:
    if body.max_tokens is not None and body.max_tokens < 1:
        raise InvalidRequest(f"max_tokens: Input should be greater than or equal to 1, got {body.max_tokens}")
    check_int("max_tokens", body.max_tokens)
    check_int("top_k", body.top_k)
    return options_from({"num_predict": body.max_tokens, "temperature": body.temperature, "top_p": body.top_p,
                         "top_k": body.top_k, "stop": body.stop_sequences, "video_max_tokens": body.video_max_tokens,
                         "video_sampling": body.video_sampling})  # fmt: skip
