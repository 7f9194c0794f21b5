"""One image in, one result record out. A failure is a record too, never an exception."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ImgscribeError
from ..images import intake
from ..types import ChatRequest, Chunk, Format, Message, Options

ChatFn = Callable[[ChatRequest], Iterator[Chunk]]


def new_record(path: str, model: str, prompt: str, error: str | None = None) -> dict[str, Any]:
    keys = ("sha256", "response", "done_reason", "timings")
    return {"path": path, "model": model, "prompt": prompt, **dict.fromkeys(keys), "error": error}


def describe_record(
    chat: ChatFn,
    path: Path,
    model: str,
    prompt: str,
    options: Options | None = None,
    format: Format = None,
) -> dict[str, Any]:
    """Describe ``path``; the record always has the same keys, with ``error`` set on failure."""
    record = new_record(str(path), model, prompt)
    start = time.perf_counter_ns()
    try:
        image = intake(path)
        record["sha256"] = image.sha256
        decode_ns = time.perf_counter_ns() - start
        request = ChatRequest(model, [Message("user", prompt, [image])], options or Options(), format)
        parts: list[str] = []
        for chunk in chat(request):
            parts.append(chunk.text)
            if chunk.done:
                record["done_reason"] = chunk.done_reason
                record["timings"] = {"decode_duration": decode_ns, **asdict(chunk.metrics)} if chunk.metrics else None
        record["response"] = "".join(parts)
    except ImgscribeError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # an engine bug must not end a run of thousands of images
        record["error"] = f"unexpected {type(exc).__name__}: {exc}"
    return record
