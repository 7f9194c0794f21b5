"""The OpenAI-compatible routes: ``/v1/chat/completions`` and ``/v1/models``.

Image parts take data URIs of any format the intake reads, and http(s) URLs when the server fetches
URLs (Ollama refuses both). A message's text parts are joined with blank lines and its images kept
in order, in one message.
"""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidRequest, Unsupported
from ..types import ChatRequest, Format, Image, Message, Options, Role, check_format, check_int, options_from
from . import render
from .context import server_of
from .inputs import Labelled, clip_settings_for
from .render import OpenAI
from .wire import (
    CompletionBody,
    ModelBody,
    OpenAIMessage,
    ResponseFormat,
    parse_keep_alive,
    require_model,
)

router = APIRouter(prefix="/v1")
ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                          "tool": "tool"}  # fmt: skip


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    body = await server.body(request, CompletionBody)
    model = require_model(body.model)
    if body.messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'")
    if not body.messages:
        raise InvalidRequest("[] is too short - 'messages'")
    options = _options(body)
    stream = bool(body.stream)
    format = _format(body.response_format)
    keep_alive = parse_keep_alive(body.keep_alive)
    images = [_check_message(m, i) for i, m in enumerate(body.messages)]
    info = server.model(request, model, images=sum(images))
    if body.tools and "tools" not in info.capabilities:
        raise Unsupported(f'"{model}" does not support tools')
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def work(cancel: threading.Event):
        groups = [_image_parts(m, i) for i, m in enumerate(body.messages)]
        images, held = server.reader.read_request(groups, cancel, server.image_sides(info, options), media=True,
                                                  clips=clip_settings_for(server.scheduler, info.name, options))  # clips
        messages = [_message(m, imgs) for m, imgs in zip(body.messages, images, strict=True)]
        chat = ChatRequest(
            info.name, messages, options=options, format=format, keep_alive=keep_alive, stream=stream
        )
        return server.answer(chat, cancel, arrived, held)

    return await server.respond(request, work, OpenAI(model, include_usage), stream=stream)


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    server = server_of(request)
    body = await server.body(request, ModelBody)
    info = server.model(request, body.target)
    raise Unsupported(f'"{body.target}" does not support embeddings ({info.name} describes images)')


@router.get("/models")
async def models(request: Request) -> dict:
    infos = await run_in_threadpool(server_of(request).store.list)
    return {"object": "list", "data": [render.openai_model(info) for info in infos]}


@router.get("/models/{model:path}")
async def model(request: Request, model: str) -> dict:
    manifest = await run_in_threadpool(server_of(request).store.resolve, model)
    return render.openai_model(manifest.info)


def _options(body: CompletionBody) -> Options:
    """OpenAI's sampling fields by Ollama's names; the limits OpenAI itself enforces."""
    if body.n is not None and body.n != 1:
        raise Unsupported(f"n: {body.n} choices were asked for; this server gives one choice per request")
    for name in ("max_tokens", "max_completion_tokens"):
        check_max_tokens(name, getattr(body, name))
    return sampling_options(body, body.max_completion_tokens or body.max_tokens,
                            image_max_tokens=body.image_max_tokens, video_max_tokens=body.video_max_tokens,
                            video_sampling=body.video_sampling)  # fmt: skip


def check_max_tokens(name: str, value: int | None) -> None:
    """A token limit as OpenAI checks it: 1 or more (its message), within 64 bits."""
    if value is not None and value < 1:
        raise InvalidRequest(f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value}")
    check_int(name, value)


def sampling_options(body, num_predict: int | None, **extra: object) -> Options:
    """The sampling fields OpenAI's chat and text completions share (``seed``, ``stop``,
    ``temperature``, ``top_p``, the penalties), by Ollama's names, with ``num_predict`` and ``extra``."""
    check_int("seed", body.seed)
    return options_from(dict(
        num_predict=num_predict,
        seed=body.seed,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        temperature=body.temperature,
        top_p=body.top_p,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        **extra,
    ))  # fmt: skip


def _format(value: ResponseFormat | None) -> Format:
    if value is None or value.type == "text":
        return None
    if value.type == "json_object":
        return "json"
    if value.type == "json_schema":
        schema = (value.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema: a JSON Schema object is required")
        return check_format(schema)
    raise InvalidRequest(f"response_format.type {value.type!r}: use text, json_object or json_schema")


def _check_message(message: OpenAIMessage, index: int) -> int:
    """Check what can be checked before any image is read; the number of images."""
    if message.role not in ROLES:
        raise InvalidRequest(
            f"messages[{index}].role: invalid role {message.role!r}: use system, developer, user, assistant or tool"
        )
    if message.content is None and ROLES[message.role] != "assistant":  # an assistant's may be tool calls
        raise InvalidRequest(f"Missing required parameter: 'messages[{index}].content'")
    if not isinstance(message.content, list):
        return 0
    for j, part in enumerate(message.content):
        if part.type not in ("text", "image_url", "video_url"):
            raise InvalidRequest(
                f"messages[{index}].content[{j}]: content of type {part.type!r} is not supported: use text, image_url "
                "or video_url"
            )
        if part.type in ("image_url", "video_url") and getattr(part, part.type) is None:
            raise InvalidRequest(f"Missing required parameter: 'messages[{index}].content[{j}].{part.type}'")
        if part.type == "text" and part.text is None:
            raise InvalidRequest(f"Missing required parameter: 'messages[{index}].content[{j}].text'")
    return sum(part.type in ("image_url", "video_url") for part in message.content)


def _image_parts(message: OpenAIMessage, index: int) -> list[Labelled]:
    """The message's image URLs, each with where it is (read together: ``ImageReader.read_request``)."""
    if not isinstance(message.content, list):
        return []
    return [
        (url if isinstance(url := getattr(part, part.type), str) else url.url, f"messages[{index}].content[{j}].{part.type}")
        for j, part in enumerate(message.content)
        if part.type != "text"
    ]  # fmt: skip


def _message(message: OpenAIMessage, images: list[Image]) -> Message:
    role = ROLES[message.role]
    if not isinstance(message.content, list):
        return Message(role, message.content or "")
    texts = [part.text or "" for part in message.content if part.type == "text"]
    return Message.with_media(role, "\n\n".join(t for t in texts if t), images)
