"""OpenAI's dialect (``/v1/chat/completions``, SSE), both ways: the request body a client sends,
the stream it reads back as :class:`Chunk` (``usage``, and llama-server's ``timings``, as
:class:`Metrics`), finish reasons, usage and error answers.

Used by the server (usage, finish reasons, error bodies), the remote engine, and the llamacpp
engine (its messages for ``/apply-template``, its sampling fields, its timings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import EngineFailed
from ..types import ChatRequest, Chunk, Image, Metrics, Options
from .common import event_error, format_schema, with_system
from .media import data_uri

__all__ = [
    "chat_body",
    "chunks",
    "done_reason",
    "error_body",
    "error_type",
    "finish_reason",
    "messages",
    "response_format",
    "sampling",
    "timed_metrics",
    "usage",
]

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def messages(request: ChatRequest, system: str = "", image_url: Callable[[Image], str] = data_uri) -> list[dict[str, Any]]:
    """OpenAI chat messages; a message with images becomes content parts, images first (as Ollama
    places them before the text). ``image_url(image)`` makes each image's URL (default: a data URI)."""
    out: list[dict[str, Any]] = []
    for m in with_system(request, system):
        if not m.images:
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url(img)}} for img in m.images]
        if m.content:
            parts.append({"type": "text", "text": m.content})
        out.append({"role": m.role, "content": parts})
    return out


# Ollama's options that llama-server takes by the same names (OpenAI's are the first five).
_OPENAI_FIELDS = ("temperature", "seed", "top_p", "presence_penalty", "frequency_penalty")
_LLAMA_FIELDS = (*_OPENAI_FIELDS, "top_k", "min_p", "repeat_penalty", "repeat_last_n")


def sampling(options: Options, *, llama: bool = False) -> dict[str, Any]:
    """Sampling fields for a chat-completions (or llama-server ``/completion``) body. ``llama``:
    the server is llama-server, which takes every Ollama option (``top_k``, ``min_p``...); others
    get OpenAI's fields only."""
    body: dict[str, Any] = {}
    for key in _LLAMA_FIELDS if llama else _OPENAI_FIELDS:
        value = getattr(options, key)
        if value is not None:
            body[key] = value
    if options.seed is not None and options.seed < 0:
        body.pop("seed", None)  # Ollama's -1 means random; llama-server's default is random too
    if options.num_predict is not None and options.num_predict >= 0:
        body["max_tokens"] = options.num_predict
    stops = [s for s in options.stop or [] if s]  # "" would match at once and end every answer empty
    if stops:
        body["stop"] = stops
    return body


def response_format(format: Any) -> dict[str, Any] | None:
    """Ollama's ``format`` ("json" or a JSON schema) as OpenAI's ``response_format``."""
    if format == "json":
        return {"type": "json_object"}
    schema = format_schema(format)
    if schema is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}


def chat_body(request: ChatRequest, *, model: str | None = None, system: str = "", options: Options | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A streamed chat-completions body for ``request`` (usage asked for in the stream); ``extra``:
    more fields (a server's own), over the sampling ones."""
    body: dict[str, Any] = {
        "model": model or request.model,
        "messages": messages(request, system),
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling(options or request.options),
        **(extra or {}),
    }
    fmt = response_format(request.format)
    if fmt is not None:
        body["response_format"] = fmt
    return body


def finish_reason(reason: str | None) -> str:
    """Our done reason as OpenAI's finish reason."""
    return "length" if reason == "length" else "stop"


def done_reason(finish: str | None) -> str:
    """OpenAI's finish reason as our done reason."""
    return "length" if finish == "length" else "stop"


def ms(value: Any) -> int:
    """Milliseconds (llama-server's timings) as nanoseconds."""
    return int(float(value or 0) * 1e6)


def timed_metrics(total: int, prompt_tokens: Any, eval_tokens: Any, timings: dict[str, Any],
                  clock: tuple[int, int] = (0, 0)) -> Metrics:  # fmt: skip
    """Metrics from token counts and llama-server's ``timings`` (``prompt_ms``, ``predicted_ms``);
    a duration it does not send is ``clock``'s (prompt, eval) nanoseconds."""
    return Metrics(
        total_duration=total,
        prompt_eval_count=int(prompt_tokens or 0),
        prompt_eval_duration=ms(timings["prompt_ms"]) if "prompt_ms" in timings else clock[0],
        eval_count=int(eval_tokens or 0),
        eval_duration=ms(timings["predicted_ms"]) if "predicted_ms" in timings else clock[1],
    )


def chunks(events: Iterable[dict[str, Any]], start: int, peer: str = "",
           data: dict[str, Any] | None = None) -> Iterator[Chunk]:  # fmt: skip
    """A chat-completions SSE stream as chunks: one per piece of text, then the final one. Token
    counts come from ``usage``; durations from ``timings`` when the server sends them (llama-server),
    else from the clock since ``start`` (``perf_counter_ns``; time to the first token = prompt
    evaluation). An error event is an EngineFailed (its message after ``peer: ``, when given)."""
    first = 0
    finish = None
    use: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for event in events:
        message = event_error(event)
        if message is not None:
            raise EngineFailed(f"{peer}: {message}" if peer else message)
        use = event.get("usage") or use
        timings = event.get("timings") or timings
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter_ns()
                yield Chunk(text=piece)
            finish = choice.get("finish_reason") or finish
    end = time.perf_counter_ns()
    first = first or end
    metrics = timed_metrics(end - start, use.get("prompt_tokens"), use.get("completion_tokens"), timings,
                            (first - start, end - first))  # fmt: skip
    yield Chunk(done=True, done_reason=done_reason(finish), metrics=metrics, data=data)


def usage(metrics: Metrics | None, images: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """OpenAI's ``usage``; with images, ``prompt_tokens_details`` says what each one became."""
    m = metrics or Metrics()
    out: dict[str, Any] = {"prompt_tokens": m.prompt_eval_count, "completion_tokens": m.eval_count,
                           "total_tokens": m.prompt_eval_count + m.eval_count}  # fmt: skip
    if images:
        out["prompt_tokens_details"] = {"image_tokens": sum(int(i.get("tokens", 0)) for i in images), "images": images}
    return out


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(message: str, status: int) -> dict[str, Any]:
    """OpenAI's error answer."""
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}
