"""OpenAI's legacy text completions, ``/v1/completions``, as Ollama serves them (``openai/openai.go``
``CompletionRequest``): one prompt, answered by the model's template as ``/api/generate`` answers
it, in ``text_completion`` objects (SSE with ``data: [DONE]`` when streamed).

Refused with a clear 400: ``suffix`` (fill-in-the-middle) on a model without ``insert``, ``echo``,
``n`` other than 1, ``best_of`` other than 1, ``logprobs``, and a prompt that is a list of several
prompts or of token ids.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import InvalidRequest, Unsupported
from ..types import ChatRequest, Chunk, Message, Options
from ..wire.openai import finish_reason, usage
from .context import server_of
from .jobs import read_body
from .openai import check_max_tokens, sampling_options
from .render import OpenAI
from .wire import Body, StreamOptions, parse_keep_alive, require_model

router = APIRouter(prefix="/v1")
#: A text-only body's limit: a long prompt (a model's whole context) is well under it.
TEXT_BODY_LIMIT = 16 * 2**20


def _limit(images_limit: int) -> int:
    return min(images_limit, TEXT_BODY_LIMIT) if images_limit > 0 else TEXT_BODY_LIMIT


class TextCompletionBody(Body):
    model: str = ""
    prompt: Any = None
    suffix: str | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    best_of: int | None = None
    echo: bool | None = None
    logprobs: int | None = None
    keep_alive: Any = None


class TextCompletion(OpenAI):
    """``text_completion`` objects: one whole, or one per piece of text in SSE (Ollama's shape); the
    rest (SSE framing, ids, errors) is the chat completions dialect's."""

    id_prefix = "cmpl"

    def _object(self, text: str, finish: str | None) -> dict[str, Any]:
        obj = self._head("text_completion")
        obj["choices"] = [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]
        return obj

    def events(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = [self._object(chunk.text, None)] if chunk.text else []
        if chunk.done:
            out.append(self._object("", finish_reason(chunk.done_reason)))
            if self.include_usage:
                obj = self._object("", None)
                obj["choices"] = []
                obj["usage"] = usage(chunk.metrics, chunk.images)
                out.append(obj)
        return out

    def whole(self, chunks: Iterable[Chunk]) -> dict[str, Any]:
        chunks = list(chunks)
        obj = self._object("".join(c.text for c in chunks), finish_reason(chunks[-1].done_reason))
        obj["usage"] = usage(chunks[-1].metrics, chunks[-1].images)
        return obj


@router.post("/completions")
async def completions(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    raw = await read_body(request, _limit(server.body_limit), server.settings.body_timeout)
    body = TextCompletionBody.parse(raw)
    model = require_model(body.model)
    prompt = _prompt(body.prompt)
    options = _options(body)
    keep_alive = parse_keep_alive(body.keep_alive)
    info = server.model(request, model)
    if body.suffix:
        if "insert" not in info.capabilities:
            raise Unsupported(f'"{model}" does not support insert')
        raise Unsupported(f'suffix: "{model}" supports insert, but this server does not fill in the middle yet')
    stream = bool(body.stream)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def work(cancel: threading.Event):
        chat = ChatRequest(info.name, [Message("user", prompt)], options=options, keep_alive=keep_alive, stream=stream)
        return server.answer(chat, cancel, arrived)

    return await server.respond(request, work, TextCompletion(model, include_usage), stream=stream)


def _prompt(value: Any) -> str:
    if value is None:
        raise InvalidRequest("Missing required parameter: 'prompt'")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list):
        raise Unsupported(
            "prompt: a list of prompts or of token ids is not supported: send one prompt as a string"
        )
    if not isinstance(value, str):
        raise InvalidRequest(f"invalid request: prompt: Input should be a valid string, got {type(value).__name__}")
    return value


def _options(body: TextCompletionBody) -> Options:
    if body.echo:
        raise Unsupported("echo: this server does not repeat the prompt in the answer")
    if body.logprobs is not None:
        raise Unsupported("logprobs: this server does not return log probabilities on /v1/completions")
    for name in ("n", "best_of"):
        value = getattr(body, name)
        if value is not None and value != 1:
            raise Unsupported(f"{name}: {value} choices were asked for; this server gives one choice per request")
    check_max_tokens("max_tokens", body.max_tokens)
    return sampling_options(body, body.max_tokens)
