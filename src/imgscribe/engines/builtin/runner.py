"""The built-in model's Runner: evidence -> description, answer or JSON, streamed in word groups.

Settings (:class:`BuiltinSettings`, ``manifest.engine_settings``), all optional:

``lazy``        load the models on the first request instead of in ``Engine.load`` (default False)
``cache_size``  images whose evidence is kept (LRU by SHA-256; default 32; 0 turns the cache off)
``chunk_words`` words per streamed chunk (default 3)

Options honoured: ``num_predict`` (at most that many words, done_reason "length"), ``stop``.
Counting (also in INFO.description): prompt_eval_count = whitespace-separated words in all
messages, images not counted; eval_count = words sent. image_encode_duration = time spent on
colours, classification and OCR; prompt_eval_duration = everything up to the first word
(evidence and composing); eval_duration = streaming.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from ...types import ChatRequest, Chunk, Image, Metrics, ModelInfo, ModelManifest
from . import clips, evidence
from .info import INFO, BuiltinSettings

STAGES = ("colours", "classify", "ocr")
_WORD = re.compile(r"\S+\s*")
_load_lock = threading.Lock()
_loaded_ns: int | None = None  # how long the process-wide load took, once done


def load_models() -> int:
    """Load the shared models once per process; the ns this call spent loading (0 if loaded)."""
    global _loaded_ns
    if _loaded_ns is not None:
        return 0
    with _load_lock:
        if _loaded_ns is not None:
            return 0
        t = time.perf_counter_ns()
        evidence.load_models()
        _loaded_ns = time.perf_counter_ns() - t
        return _loaded_ns


class BuiltinRunner:
    native_video = True  # a clip's key frames, described one by one (clips.py), not engines/frames.py
    parallel = 1  # the models already use every core they can (threads.py); a second slot only queues
    # Measured (Linux, torch 2.13 CPU): the process grows by ~330 MB when the models load (torch
    # itself is most of it) and to ~580 MB after a few images, one of them 12 MP.
    memory = 600_000_000

    def __init__(self, manifest: ModelManifest, load_ns: int = 0):
        s = BuiltinSettings.of(manifest)
        self.info: ModelInfo = manifest.info if manifest.info.engine == "builtin" else INFO
        self.chunk_words = s.chunk_words
        if s.cache_size is not None:
            evidence._cache.size = s.cache_size
        self._pending_load_ns = load_ns  # reported by the first request
        self._lock = threading.Lock()
        self.closed = False

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        return self._generate(request, cancel or threading.Event())

    def close(self) -> None:
        self.closed = True  # the models are shared by every runner of the process: nothing to free

    # ------------------------------------------------------------------------------------------

    def _take_load_ns(self) -> int:
        with self._lock:
            ns, self._pending_load_ns = self._pending_load_ns, 0
        return ns + load_models()

    def _generate(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Chunk]:
        run = _Run(time.perf_counter_ns(), self._take_load_ns())
        run.prompt_words = sum(len(m.content.split()) for m in request.messages)
        if not request.messages:  # Ollama's empty request: just load
            yield run.done("load")
            return
        question = _question(request)
        clip = clips.latest_clip(request)
        images = list(clip.frames) if clip is not None else _images(request)
        run.encode_start = time.perf_counter_ns()
        try:
            for image in images:
                if cancel.is_set():
                    raise evidence.Stopped
                run.evs.append(evidence.gather(image, cancel))
        except evidence.Stopped:
            yield run.done("cancel")
            return
        run.encode_end = time.perf_counter_ns()

        t = time.perf_counter()
        text, run.mode = _compose(question, run.evs, request.format)
        if clip is not None and run.mode in ("description", "answer"):
            text = clips.describe(clip, run.evs, text, run.mode == "answer")
        run.compose_ms = round((time.perf_counter() - t) * 1000, 2)
        text = _apply_stops(text, request.options.stop)
        words = _WORD.findall(text)
        reason = "stop"
        limit = request.options.num_predict
        if limit is not None and 0 <= limit < len(words):
            words = words[:limit]
            words[-1:] = [w.rstrip() for w in words[-1:]]
            reason = "length"
        run.first_word = time.perf_counter_ns()
        for i in range(0, len(words), self.chunk_words):
            if cancel.is_set():
                reason = "cancel"
                break
            group = words[i : i + self.chunk_words]
            run.sent += len(group)
            yield Chunk(text="".join(group))
        yield run.done(reason)


class _Run:
    """One request's clock and counters, turned into the final chunk."""

    def __init__(self, start: int, load_ns: int):
        self.start = start
        self.load_ns = load_ns
        self.prompt_words = 0
        self.encode_start = self.encode_end = self.first_word = 0
        self.evs: list[dict[str, Any]] = []
        self.mode = ""
        self.compose_ms = 0.0
        self.sent = 0

    def done(self, reason: str) -> Chunk:
        end = time.perf_counter_ns()
        fresh = [ev for ev in self.evs if not ev.get("cached")]
        timings = {s: round(sum(ev["timings_ms"].get(s, 0.0) for ev in fresh), 2) for s in STAGES}
        timings["compose"] = self.compose_ms
        data = {
            "mode": self.mode,
            "images": self.evs,
            "timings_ms": timings,
            "cached_images": len(self.evs) - len(fresh),
        }
        begun = self.encode_start or end
        first = self.first_word or end
        metrics = Metrics(
            total_duration=end - self.start,
            load_duration=self.load_ns,
            prompt_eval_count=self.prompt_words,
            prompt_eval_duration=max(1, first - begun),
            eval_count=self.sent,
            eval_duration=max(1, end - first),
            image_encode_duration=(self.encode_end - self.encode_start) if self.encode_end else 0,
        )
        return Chunk(done=True, done_reason=reason, metrics=metrics, data=data)


def _question(request: ChatRequest) -> str:
    for m in reversed(request.messages):
        if m.role == "user":
            return m.content
    return ""


def _images(request: ChatRequest) -> list[Image]:
    """The images of the last user message; for a follow-up without images, those of the latest
    earlier message that had some."""
    for m in reversed(request.messages):
        if m.images:
            return list(m.images)
    return []


def _compose(question: str, evs: list[dict[str, Any]], fmt: Any) -> tuple[str, str]:
    """(the reply, the mode: description, answer, no_image, json or schema)."""
    from . import answer, compose, structured

    for ev in evs:
        ev["description"] = compose.describe(ev)
    reply = answer.answer(question, evs)
    asked = bool(question.strip()) and not answer.is_describe(question)
    if fmt == "json":
        return structured.as_json(evs, reply if asked or not evs else None), "json"
    if isinstance(fmt, dict):
        return structured.fill_schema(fmt, evs, reply if asked or not evs else None), "schema"
    if not evs:
        return reply, "no_image"
    return reply, "answer" if asked else "description"


def _apply_stops(text: str, stops: list[str] | None) -> str:
    hits = [text.find(s) for s in (stops or []) if s and s in text]
    return text[: min(hits)] if hits else text
