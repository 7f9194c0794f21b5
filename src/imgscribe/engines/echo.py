"""An instant, deterministic diagnostic engine: it answers with what it was given.

Tests and benchmarks use it to exercise every front door, the scheduler and the wire formats
without a real model. The answer names the prompt's words, the number of images and, for each
image, its size and the start of its SHA-256, so a test can check that the right bytes arrived.

Settings (:class:`EchoSettings`, ``manifest.engine_settings``), all optional:

``tokens``     answer with exactly this many tokens (the reply's words, repeated); default: the reply
``delay``      seconds to wait before each token (a slow model); default 0
``load_delay`` seconds :meth:`EchoEngine.load` takes; default 0
``parallel``   requests one runner serves at once; default 4
``memory``     bytes the runner says it holds; default 1 MB
``vision``     accept images; default: whether ``info.capabilities`` has "vision"
``fail_after`` raise ``EngineFailed`` after this many tokens (a crash mid-answer)
``fail_load``  raise ``EngineFailed`` when loading

Options honoured (the request's over the model's ``parameters``): ``num_predict`` (done_reason
"length"), ``stop``; ``format`` gives a JSON answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import EngineFailed, Unsupported
from ..types import ChatRequest, Chunk, Metrics, ModelInfo, ModelManifest, Options
from .base import EngineSettings
from .image_budget import ImageCost

IMAGE_TOKENS = 16  # what one image "costs" in prompt tokens


class EchoSettings(EngineSettings):
    engine = "echo"

    tokens: int | None = Field(None, ge=0)
    delay: float = Field(0, ge=0)
    load_delay: float = Field(0, ge=0)
    parallel: int = Field(4, ge=1)
    memory: int = Field(1_000_000, ge=0)
    vision: bool | None = None
    fail_after: int | None = Field(None, ge=0)
    fail_load: bool = False


class EchoRunner:
    def __init__(self, manifest: ModelManifest):
        s = EchoSettings.of(manifest)
        self.info: ModelInfo = manifest.info
        self.defaults = {k: v for k, v in manifest.parameters.items() if k in Options.model_fields and v is not None}
        self.parallel = s.parallel
        self.memory = s.memory
        self.tokens = s.tokens
        self.delay = s.delay
        self.vision = manifest.info.vision if s.vision is None else s.vision
        self.fail_after = s.fail_after
        # What tests look at: how much work was done, and whether a cancel stopped it.
        self.generated = 0
        self.cancelled = 0
        self.active = 0
        self.max_active = 0
        self.closed = False
        self._lock = threading.Lock()

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        if request.images and not self.vision:
            raise Unsupported(f"model '{self.info.name}' does not support images")
        return self._generate(request, cancel or threading.Event())

    def close(self) -> None:
        self.closed = True

    def _generate(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Chunk]:
        start = time.perf_counter_ns()
        images = request.images
        image_facts = [f"{i.size[0]}x{i.size[1]} sha256:{i.sha256[:12]}" for i in images]
        encoded = time.perf_counter_ns()
        prompt = " ".join(m.content for m in request.messages if m.role == "user")
        pieces = _tokens(_reply(prompt, image_facts, request.format), self.tokens)
        prompt_done = time.perf_counter_ns()

        options = Options.model_validate({**self.defaults, **request.options.model_dump(exclude_none=True)})
        limit = options.num_predict
        stops = [s for s in options.stop or [] if s]
        pending, count, reason = "", 0, "stop"  # pending: text that may still turn into a stop sequence
        self._enter()
        try:
            for piece in pieces:
                if limit is not None and 0 <= limit <= count:
                    reason = "length"
                    break
                if self.delay:
                    cancel.wait(self.delay)
                if cancel.is_set():
                    reason = "cancel"
                    with self._lock:
                        self.cancelled += 1
                    break
                if self.fail_after is not None and count >= self.fail_after:
                    raise EngineFailed(f"echo: simulated failure after {count} tokens")
                count += 1
                with self._lock:
                    self.generated += 1
                pending += piece
                ready, pending, stopped = _hold_back(pending, stops)
                if ready:
                    yield Chunk(text=ready)
                if stopped:
                    break
            else:
                if pending:
                    yield Chunk(text=pending)
        finally:
            self._leave()
        end = time.perf_counter_ns()
        metrics = Metrics(
            total_duration=end - start,
            prompt_eval_count=len(prompt.split()) + IMAGE_TOKENS * len(images),
            prompt_eval_duration=max(prompt_done - start, 1),
            eval_count=count,
            eval_duration=max(end - prompt_done, 1),
            image_encode_duration=encoded - start if images else 0,
        )
        costs = [ImageCost(i.size, i.size, IMAGE_TOKENS).as_dict() for i in images]  # a fixed-size encoder
        yield Chunk(done=True, done_reason=reason, metrics=metrics, data={"images": image_facts}, images=costs or None)

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1


def _reply(prompt: str, image_facts: list[str], format: Any) -> str:
    if format is not None:
        return json.dumps({"prompt": prompt, "images": image_facts})
    words = " ".join(prompt.split()) or "(empty)"
    facts = "; ".join(image_facts) or "none"
    return f"echo: {words} | {len(image_facts)} image(s): {facts}"


def _tokens(reply: str, count: int | None) -> list[str]:
    """Word-sized pieces that join back into ``reply``; exactly ``count`` of them when asked."""
    words = reply.split(" ")
    if count is not None:
        return [words[i % len(words)] + " " for i in range(count)]
    return [w + " " for w in words[:-1]] + [words[-1]]


def _hold_back(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split text into (what can be sent, what must wait, whether a stop sequence ended it)."""
    hits = [text.find(s) for s in stops if s in text]
    if hits:
        return text[: min(hits)], "", True
    keep = max((n for s in stops for n in range(len(s) - 1, 0, -1) if text.endswith(s[:n])), default=0)
    return text[: len(text) - keep], text[len(text) - keep :], False


class EchoEngine:
    name = "echo"
    settings = EchoSettings

    def load(self, manifest: ModelManifest) -> EchoRunner:
        s = EchoSettings.of(manifest)
        if s.load_delay:
            time.sleep(s.load_delay)
        if s.fail_load:
            raise EngineFailed(f"echo: simulated load failure for '{manifest.name}'")
        return EchoRunner(manifest)


ENGINE = EchoEngine()
