"""One image in, one record out. A failure is a record too, never an exception.

A batch record (one per image, however many prompts) looks like::

    {"id": ..., "key": ..., "path": "photos/a.jpg", "sha256": ..., "model": "llava:7b",
     "model_digest": "sha256:...", "prompt": "Describe this image.", "response": "A cat ...",
     "options": {}, "done_reason": "stop", "timings": {...}, "error": null}

``timings`` holds Ollama's metrics and, when the engine reports it, ``images``: each image's size as
received, its size as the model got it and its prompt tokens (engines/image_budget.py).

Each named prompt puts its answer under its name (``response`` for a plain ``--prompt``). With
several prompts, ``prompt``, ``done_reason`` and ``timings`` are keyed by prompt name. Prompts with
a ``format`` add their parsed JSON under ``fields``. ``key`` is the work's identity (image bytes,
model digest, prompts, options); ``id`` is the row's (key and path): an output holds each id once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..client import Answer
from ..errors import Busy, ImgscribeError, InvalidRequest
from ..images import read_file
from ..types import ChatRequest, Chunk, Format, Image, Message, Options, Video
from ..video import read_media, read_media_args
from .prompts import Context, Prompt, render
from .sources import Url, printable

ChatFn = Callable[[ChatRequest], Iterator[Chunk]]
#: chat with a cancel event: ``Client.chat``
CancelChatFn = Callable[[ChatRequest, threading.Event | None], Answer]
KEY_VERSION = 1
BUSY_RETRIES = 8


def user_turn(text: str, media: Image | Video) -> Message:
    """The user message about one image or one clip."""
    return Message.with_media("user", text, [media])


def video_facts(clip: Video) -> dict[str, Any]:
    """A clip's record entry: its length, size and the times of the frames the model saw."""
    return {"duration": clip.duration, "size": list(clip.size), "format": clip.format,
            "timestamps": list(clip.timestamps)}  # fmt: skip


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
    """Describe ``path`` with one prompt, in one go (no resume): the plain loop's building block."""
    record = new_record(str(path), model, prompt)
    start = time.perf_counter_ns()
    try:
        image = read_media(path, **read_media_args(options))
        record["sha256"] = image.sha256
        decode_ns = time.perf_counter_ns() - start
        request = ChatRequest(model, [user_turn(prompt, image)], options or Options(), format)
        if isinstance(image, Video):
            record["video"] = video_facts(image)
        parts: list[str] = []
        for chunk in chat(request):
            parts.append(chunk.text)
            if chunk.done:
                record["done_reason"] = chunk.done_reason
                record["timings"] = {"decode_duration": decode_ns, **asdict(chunk.metrics)} if chunk.metrics else None
                if chunk.images and record["timings"] is not None:  # what the image became: size, tokens
                    record["timings"]["images"] = chunk.images
        record["response"] = "".join(parts)
    except ImgscribeError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # an engine bug must not end a run of thousands of images
        record["error"] = f"unexpected {type(exc).__name__}: {exc}"
    return record


# -- identities ------------------------------------------------------------------------------------


def _h(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def work_key(sha256: str, model_digest: str, rendered: list[tuple[str, str, str, Any, dict]], options: dict) -> str:
    """The identity of a piece of work: same bytes, model, prompts and options give the same answer."""
    return _h({"v": KEY_VERSION, "image": sha256, "model": model_digest, "prompts": rendered, "options": options})


def row_id(key: str, path: str) -> str:
    return _h({"key": key, "path": path})


def display_path(item: Path | Url) -> str:
    return item.url if isinstance(item, Url) else printable(os.path.normpath(str(item)))


# -- the work ----------------------------------------------------------------------------------------


@dataclass
class Spec:
    """What every image gets: picklable, so that Ray workers can rebuild a :class:`Describer`."""

    model: str
    model_digest: str
    prompts: list[Prompt]
    options: Options
    overwrite: bool = False
    max_bytes: int = 0  # 0: the settings' limits
    url_timeout: float = 20.0
    #: the model's own video parameters (a Modelfile's PARAMETER video_max_tokens, video_sampling),
    #: under the job's options: how a clip is sampled
    clip_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Index:
    """What earlier runs did (from the manifest): ids written, keys answered, our own rewrites."""

    ids: frozenset[str] | set[str] = frozenset()
    keys: frozenset[str] | set[str] = frozenset()
    aliases: dict[str, str] | None = None  # sha256 after we embedded metadata -> the original


@dataclass
class Prepared:
    """An image read, hashed and decoded, with its prompts filled in: ready for the model."""

    id: str
    key: str
    path: str
    sha256: str
    image: Image | Video  # a clip: its sampled frames (imgscribe.video)
    rendered: list[tuple[Prompt, str, str]]  # prompt, text, system
    started: int  # perf_counter_ns when reading began
    decode_ns: int


class Describer:
    """Everything that happens to one image, shared by the local runner and the Ray actors."""

    def __init__(self, spec: Spec, index: Index | None = None):
        self.spec = spec
        self.index = index or Index()
        self.options = spec.options.model_dump(exclude_none=True)

    def prepare(self, item: Path | Url | tuple[Path | Url, str]) -> Prepared | dict[str, Any]:
        """Read, hash and decode; a finished record when there is nothing for the model to do.

        ``item`` may come with the path to show and key it by (a Ray worker reads an absolute
        path but records the path as the user gave it)."""
        started = time.perf_counter_ns()
        item, path = item if isinstance(item, tuple) else (item, display_path(item))
        try:
            data = self._read(item)
        except ImgscribeError as exc:
            return self.error_record(path, str(exc))
        except Exception as exc:
            return self.error_record(path, f"unexpected {type(exc).__name__}: {exc}")
        sha = hashlib.sha256(data).hexdigest()
        original = (self.index.aliases or {}).get(sha, sha)
        local = None if isinstance(item, Url) else Path(item)
        context = Context(path, local, data)
        rendered = [(p, render(p.template, context), render(p.system, context)) for p in self.spec.prompts]
        key = work_key(original, self.spec.model_digest, [self._identity(*r) for r in rendered], self.options)
        rid = row_id(key, path)
        if not self.spec.overwrite and rid in self.index.ids:
            return {"_status": "skipped", "id": rid, "path": path}
        if not self.spec.overwrite and key in self.index.keys:
            return {"_status": "reuse", "id": rid, "key": key, "path": path, "sha256": original}
        try:
            image = read_media(data, source_name=path, max_bytes=self.spec.max_bytes or None,
                               **read_media_args(self.options, self.spec.clip_parameters))  # fmt: skip
        except ImgscribeError as exc:
            return self.error_record(path, str(exc), sha=original, key=key, rid=rid, rendered=rendered)
        except Exception as exc:
            return self.error_record(path, f"unexpected {type(exc).__name__}: {exc}", sha=original, key=key, rid=rid,
                                     rendered=rendered)  # fmt: skip
        return Prepared(rid, key, path, original, image, rendered, started, time.perf_counter_ns() - started)

    def describe(self, job: Prepared, chat: CancelChatFn, cancel: threading.Event | None = None) -> dict[str, Any]:
        """Ask every prompt about the image, one after the other; errors become the record's error."""
        answers: dict[str, dict[str, Any]] = {}
        error = None
        start = time.perf_counter_ns()
        for prompt, text, system in job.rendered:
            try:
                answers[prompt.name] = answer = self._ask(job.image, prompt, text, system, chat, cancel)
                error = answer.pop("error", None)
            except ImgscribeError as exc:
                error = str(exc)
            except Exception as exc:  # an engine bug must not end a run of thousands of images
                error = f"unexpected {type(exc).__name__}: {exc}"
            if error and len(job.rendered) > 1:
                error = f"prompt {prompt.name!r}: {error}"
            if error:
                break
        record = self.build(job.id, job.key, job.path, job.sha256, job.rendered, answers, error)
        wall = time.perf_counter_ns() - start
        timings = record["timings"]
        timings["decode_duration"] = job.decode_ns
        timings["wall_duration"] = wall
        if isinstance(job.image, Video):
            record["video"] = video_facts(job.image)
        return record

    def _ask(self, image: Image | Video, prompt: Prompt, text: str, system: str, chat: CancelChatFn,
             cancel: threading.Event | None) -> dict[str, Any]:  # fmt: skip
        messages = ([Message("system", system)] if system else []) + [user_turn(text, image)]
        options = Options.model_validate({**self.options, **prompt.options})
        request = ChatRequest(self.spec.model, messages, options, prompt.format)
        for attempt in range(BUSY_RETRIES + 1):
            try:
                parts, answer = [], {"done_reason": None, "timings": {}}
                with contextlib.closing(chat(request, cancel)) as chunks:  # a failure frees the slot now
                    for chunk in chunks:
                        parts.append(chunk.text)
                        if chunk.done:
                            answer["done_reason"] = chunk.done_reason
                            answer["timings"] = asdict(chunk.metrics) if chunk.metrics else {}
                            if chunk.images:  # what the image became: its size for the model, its tokens
                                answer["timings"]["images"] = chunk.images
                answer["text"] = "".join(parts)
                if prompt.format is not None:
                    try:
                        answer["fields"] = parse_structured(answer["text"], prompt.format)
                    except InvalidRequest as exc:
                        answer["error"] = str(exc)
                return answer
            except Busy:
                if attempt == BUSY_RETRIES or (cancel is not None and cancel.is_set()):
                    raise
                time.sleep(min(0.5 * 2**attempt, 10.0))
        raise AssertionError("unreachable")

    # -- records -------------------------------------------------------------------------------

    def build(self, rid: str, key: str | None, path: str, sha256: str | None,
              rendered: list[tuple[Prompt, str, str]], answers: dict[str, dict[str, Any]],
              error: str | None) -> dict[str, Any]:  # fmt: skip
        prompts = self.spec.prompts
        single = len(prompts) == 1
        by_name = {p.name: (text, system) for p, text, system in rendered}
        record: dict[str, Any] = {
            "id": rid, "key": key, "path": path, "sha256": sha256,
            "model": self.spec.model, "model_digest": self.spec.model_digest,
            "prompt": by_name.get(prompts[0].name, (None,))[0] if single else {n: t for n, (t, _) in by_name.items()},
        }  # fmt: skip
        for p in prompts:
            record[p.name] = answers.get(p.name, {}).get("text")
        if any(p.format is not None for p in prompts):
            fields: dict[str, Any] = {}
            for p in prompts:
                value = answers.get(p.name, {}).get("fields")
                if isinstance(value, dict):
                    fields.update(value)
                elif value is not None:
                    fields[p.name] = value
            record["fields"] = fields if answers else None
        record["options"] = self.options
        if single:
            answer = answers.get(prompts[0].name, {})
            record["done_reason"] = answer.get("done_reason")
            record["timings"] = dict(answer.get("timings") or {})
        else:
            record["done_reason"] = {n: a.get("done_reason") for n, a in answers.items()}
            record["timings"] = {n: a.get("timings") or {} for n, a in answers.items()}
        record["error"] = error
        return record

    def error_record(self, path: str, error: str, sha: str | None = None, key: str | None = None,
                     rid: str | None = None, rendered: list | None = None) -> dict[str, Any]:  # fmt: skip
        rid = rid or _h({"error": path, "model": self.spec.model_digest})
        if rendered is None:
            rendered = [(p, p.template, p.system) for p in self.spec.prompts]
        record = self.build(rid, key, path, sha, rendered, {}, error)
        record["timings"] = {}
        return record

    def _read(self, item: Path | Url) -> bytes:
        from ..config import settings

        limit = self.spec.max_bytes or settings().max_image_bytes
        if isinstance(item, Url):
            from .sources import fetch

            return fetch(item.url, limit, self.spec.url_timeout)
        return read_file(os.fspath(item), limit)

    def _identity(self, prompt: Prompt, text: str, system: str) -> tuple[str, str, str, Any, dict]:
        return (prompt.name, text, system, prompt.format, prompt.options)


def parse_structured(text: str, fmt: Format) -> Any:
    """The JSON answer to a ``format`` prompt, checked against its schema."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the answer is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if isinstance(fmt, dict):
        import jsonschema

        try:
            jsonschema.validate(value, fmt)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "the answer"
            raise InvalidRequest(f"the answer does not match the schema: {where}: {exc.message}") from None
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(f"--format: invalid JSON schema: {exc.message}") from None
    return value


def field_value(record: dict[str, Any], name: str) -> Any:
    """A prompt's answer or a structured field, by name (``fields.x`` also works)."""
    if name.startswith("fields."):
        return (record.get("fields") or {}).get(name[7:])
    if name in record and name not in ("fields",):
        return record[name]
    return (record.get("fields") or {}).get(name)
