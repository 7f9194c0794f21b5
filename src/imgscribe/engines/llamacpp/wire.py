"""llama-server's own dialect: the ``/completion`` body (a rendered prompt, its images, Ollama's
options by llama-server's names), its SSE events as :class:`Chunk`, its timings as metrics, and its
error answers. The transport, SSE parsing, OpenAI messages (for ``/apply-template``), sampling
fields and timings are the shared ones of :mod:`imgscribe.wire`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from ...errors import EngineFailed, ImgscribeError, InvalidRequest
from ...types import Chunk, Image, Metrics, Options
from ...wire import openai
from ...wire.common import event_error, peer_error
from ...wire.media import decodable

__all__ = ["cancelled", "completion_body", "completion_chunks", "error_from", "final"]

#: llama-server keeps repeat_penalty in a float32 and refuses 0 or inf: values beyond these (1e-40, 1e300)
#: are taken as these, which already mean "only repeats" / "never repeat"
_REPEAT_PENALTY_RANGE = (1e-30, 1e30)


def completion_body(prompt: str, images: list[Image], options: Options, *, ctx: int, cache_prompt: bool = True,
                    ignore_eos: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A streamed ``/completion`` body. ``ctx``: a slot's context (Ollama's ``repeat_last_n`` -1,
    "the whole context", as a count); ``schema``: JSON output (llama-server makes it a grammar)."""
    encoded = [decodable(img) for img in images]
    body: dict[str, Any] = {
        "prompt": {"prompt_string": prompt, "multimodal_data": encoded} if encoded else prompt,
        "stream": True,
        "cache_prompt": cache_prompt,
        **openai.sampling(options, llama=True),
    }
    if ignore_eos:
        body["ignore_eos"] = True
    if body.get("repeat_last_n") == -1:
        body["repeat_last_n"] = ctx
    if "repeat_penalty" in body:
        low, high = _REPEAT_PENALTY_RANGE
        body["repeat_penalty"] = min(max(float(body["repeat_penalty"]), low), high)
    if schema is not None:
        body["json_schema"] = schema
    return body


def completion_chunks(events: Iterable[dict[str, Any]], start: int) -> Iterator[Chunk]:
    """``/completion``'s events as chunks: one per piece of text, then the final one (from the
    event with ``stop``), its metrics from the timings. A stream that ends without that event
    yields no final chunk (the caller says why); an error event is an EngineFailed."""
    for event in events:
        message = event_error(event)
        if message is not None:
            raise EngineFailed(f"llama-server: {message}")
        if event.get("content"):
            yield Chunk(text=event["content"])
        if event.get("stop"):
            yield final(event, start)
            return


def final(event: dict[str, Any], start: int) -> Chunk:
    timings = event.get("timings") or {}
    # image_encode_duration stays 0: llama-server b11434 reports no image-encode time (its
    # prompt_ms includes it), neither in its answers nor in its log.
    # prompt_eval_count: the whole prompt, image tokens and cached tokens included (Ollama: "tokens in the prompt")
    metrics = openai.timed_metrics(time.perf_counter_ns() - start, event.get("tokens_evaluated"),
                                   event.get("tokens_predicted") or timings.get("predicted_n"), timings)  # fmt: skip
    reason = "length" if event.get("stop_type") == "limit" else "stop"
    data = {"cached_tokens": int(timings.get("cache_n") or 0)} if timings else None
    return Chunk(done=True, done_reason=reason, metrics=metrics, data=data)


def cancelled(start: int) -> Chunk:
    """The final chunk of an answer cut by a cancel."""
    return Chunk(done=True, done_reason="cancel", metrics=Metrics(total_duration=time.perf_counter_ns() - start))


def error_from(status: int, message: str) -> ImgscribeError:
    """llama-server's error answer: a 4xx is the user's to change (a prompt over the context names
    the option to change), anything else its failure."""
    if 400 <= status < 500 and "exceeds the available context size" in message:
        return InvalidRequest(
            f"the prompt does not fit the model's context: {message} (num_ctx, set when the model is loaded: "
            "send fewer or smaller images, a shorter conversation, or create the model with a larger num_ctx)"
        )
    return peer_error(status, message, "llama-server")
