"""The one extension point for running models: an ``Engine`` loads, a ``Runner`` answers.

An engine knows nothing about HTTP or the CLI. The scheduler is the only caller of ``load`` and
``close``; everything else reaches a runner through the scheduler.

Each engine declares its own settings (``Engine.settings``): a typed :class:`EngineSettings` that
reads ``manifest.engine_settings`` and refuses a setting it does not know. Only importers and the
store write those; a model's options (``manifest.parameters``) are a separate, fixed set.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import EngineFailed
from ..types import ChatRequest, Chunk, ModelInfo, ModelManifest, Stream


class EngineSettings(BaseModel):
    """An engine's settings (``manifest.engine_settings``), typed; unknown ones are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: ClassVar[str] = ""

    @classmethod
    def of(cls, manifest: ModelManifest) -> Self:
        """The manifest's settings; ``EngineFailed`` naming the first unknown or bad one."""
        try:
            return cls.model_validate(manifest.engine_settings)
        except ValidationError as exc:
            raise EngineFailed(f"model '{manifest.name}': {cls.problem(exc)}") from None

    @classmethod
    def problem(cls, exc: ValidationError) -> str:
        """A ValidationError of these settings in one sentence."""
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        kind = f"{cls.engine} setting" if cls.engine else "setting"
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(cls.model_fields)) or "none"
            return f"unknown {kind} '{name}' (known: {known})"
        return f"{kind} '{name}': {err['msg']}"


@runtime_checkable
class Runner(Protocol):
    """A loaded model."""

    info: ModelInfo
    #: how many requests it can serve at once (parallel slots); the scheduler respects it.
    parallel: int
    #: bytes of memory it holds (for ``ps`` and the memory budget); 0 if unknown.
    memory: int

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Stream[Chunk]:
        """Stream the answer to the last user message. Stops early when ``cancel`` is set.

        The last chunk has ``done=True``, ``done_reason`` and ``metrics``.
        """
        ...

    def close(self) -> None: ...


class Engine(Protocol):
    name: str
    #: the engine's settings (``manifest.engine_settings``), typed
    settings: type[EngineSettings]

    def load(self, manifest: ModelManifest) -> Runner: ...

    # Optional, for an engine whose slots cost memory (llama.cpp's KV cache): ``fit_slots(manifest,
    # offered)``, an object with ``slots``, ``limited`` and ``reason()``: how many of ``offered`` fit
    # now; and ``slot_name``, what they are called ("llama-server slots").
