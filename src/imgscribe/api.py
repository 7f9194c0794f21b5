"""The Python front door: ``describe``, ``ask`` and ``chat``, plus the helpers other doors share.

    >>> import imgscribe
    >>> imgscribe.describe("examples/coffee.jpg").text
    >>> imgscribe.ask("invoice.png", "What is the total?").text
    >>> imgscribe.chat("builtin", [{"role": "user", "content": "What is this?", "images": ["cat.jpg"]}])
    >>> imgscribe.describe("match.mp4", video_sampling="scenes").text  # a clip: frames at its cuts

A clip is sampled here, before the request goes to the scheduler, under the request's
``video_max_tokens`` and ``video_sampling`` options, else the model's parameters (its Modelfile's
``PARAMETER video_max_tokens``), else the defaults (:func:`imgscribe.video.clip_settings`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ImgscribeError, InvalidRequest
from .images import intake
from .scheduler import Scheduler, default_scheduler
from .types import ChatRequest, Chunk, Format, Image, Message, Metrics, Options, Video, options_from
from .video import read_media, read_media_args

DEFAULT_PROMPT = "Describe this image."
ImageLike = str | bytes | os.PathLike | Image


@dataclass
class Result:
    """A whole answer: the text, why it ended, Ollama's metrics and the engine's structured data."""

    model: str
    text: str
    done_reason: str = "stop"
    metrics: Metrics = field(default_factory=Metrics)
    data: dict[str, Any] = field(default_factory=dict)
    images: list[Image] = field(default_factory=list)
    #: what each image became for the engine: {"original_size", "size", "tokens"} (engines/image_budget.py)
    image_costs: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


def collect(model: str, chunks: Iterable[Chunk], images: list[Image] | None = None) -> Result:
    """Join a chunk stream into one :class:`Result`."""
    parts: list[str] = []
    result = Result(model=model, text="", images=list(images or []))
    for chunk in chunks:
        parts.append(chunk.text)
        if chunk.done:
            result.done_reason = chunk.done_reason or "stop"
            result.metrics = chunk.metrics or Metrics()
            result.data = chunk.data or {}
            result.image_costs = list(chunk.images or [])
    result.text = "".join(parts)
    return result


def to_image(image: ImageLike) -> Image:
    return image if isinstance(image, Image) else intake(image)


def to_message(message: Message | Mapping[str, Any], video_max_tokens: int | None = None,
               video_sampling: str = "uniform") -> Message:  # fmt: skip
    """An Ollama-shaped message dict (images as paths, bytes or base64) to a :class:`Message`; a
    video among its ``images`` (or ``videos``) is sampled into frames (:mod:`imgscribe.video`)."""
    if isinstance(message, Message):
        return message
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"a message must be a dict with 'role' and 'content', got {type(message).__name__}")
    role = str(message.get("role", "user")).lower()  # checked, with the others, by ChatRequest
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise InvalidRequest("message 'content' must be a string")
    media = [i if isinstance(i, (Image, Video)) else
             read_media(i, video_max_tokens=video_max_tokens, video_sampling=video_sampling)
             for i in [*(message.get("images") or []), *(message.get("videos") or [])]]  # fmt: skip
    return Message.with_media(role, content, media)


def build_request(
    model: str,
    messages: Iterable[Message | Mapping[str, Any]],
    *,
    options: Options | Mapping[str, Any] | None = None,
    format: Format = None,
    system: str | None = None,
    keep_alive: float | None = None,
    stream: bool = True,
    scheduler: Scheduler | None = None,
) -> ChatRequest:
    """The request ``chat`` sends; its clips sampled as the module docstring says (``scheduler``:
    where the model's parameters are read, default the process-wide one)."""
    try:
        opts = options if isinstance(options, Options) else options_from(dict(options or {}))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    messages = list(messages)
    files = any(isinstance(m, Mapping) and (m.get("images") or m.get("videos")) for m in messages)
    clip = read_media_args(opts, _parameters(model, scheduler)) if files else {}  # only files are sampled here
    msgs = [to_message(m, **clip) for m in messages]
    if system:
        msgs = [Message("system", system), *[m for m in msgs if m.role != "system"]]
    return ChatRequest(model=model, messages=msgs, options=opts, format=format, keep_alive=keep_alive, stream=stream)


def _parameters(model: str, scheduler: Scheduler | None) -> Mapping[str, Any]:
    """The model's parameters (its default options); none for a model that is not here (the
    scheduler then says so)."""
    try:
        return (scheduler or default_scheduler()).store.resolve(model).parameters
    except ImgscribeError:
        return {}


def _with_sampling(options: Options | Mapping[str, Any] | None, video_sampling: str | None):
    """``options`` with the ``video_sampling`` keyword in them, when it is given."""
    if video_sampling is None:
        return options
    values = options.model_dump(exclude_none=True) if isinstance(options, Options) else dict(options or {})
    return {**values, "video_sampling": video_sampling}  # checked with the others


def _run(request: ChatRequest, scheduler: Scheduler | None, cancel: threading.Event | None) -> Result:
    chunks = (scheduler or default_scheduler()).chat(request, cancel)
    return collect(request.model, chunks, request.images)


def chat(
    model: str,
    messages: Iterable[Message | Mapping[str, Any]],
    *,
    stream: bool = False,
    options: Options | Mapping[str, Any] | None = None,
    format: Format = None,
    scheduler: Scheduler | None = None,
    video_sampling: str | None = None,
) -> Result | Iterator[Chunk]:
    """Chat with a model. ``stream=True`` returns the chunk iterator instead of a :class:`Result`.
    ``video_sampling``: "uniform" or "scenes", how a clip's frames are chosen (the option's keyword)."""
    request = build_request(model, messages, options=_with_sampling(options, video_sampling), format=format,
                            stream=stream, scheduler=scheduler)  # fmt: skip
    if stream:
        return (scheduler or default_scheduler()).chat(request)
    return _run(request, scheduler, None)


def ask(
    image: ImageLike | list[ImageLike],
    question: str,
    model: str = "builtin",
    *,
    options: Options | Mapping[str, Any] | None = None,
    format: Format = None,
    scheduler: Scheduler | None = None,
    video_sampling: str | None = None,
) -> Result:
    """Ask one question about one image or clip (or a list of them, for comparisons)."""
    images = list(image) if isinstance(image, list) else [image]
    request = build_request(model, [{"role": "user", "content": question, "images": images}],
                            options=_with_sampling(options, video_sampling), format=format, stream=False,
                            scheduler=scheduler)  # fmt: skip
    return _run(request, scheduler, None)


def describe(
    image: ImageLike,
    model: str = "builtin",
    prompt: str | None = None,
    *,
    options: Options | Mapping[str, Any] | None = None,
    format: Format = None,
    scheduler: Scheduler | None = None,
    video_sampling: str | None = None,
) -> Result:
    """Describe one image or clip with ``prompt`` (default: "Describe this image.")."""
    return ask(image, prompt or DEFAULT_PROMPT, model, options=options, format=format, scheduler=scheduler,
               video_sampling=video_sampling)
