"""What the scheduler keeps for each model (:class:`_Model`, a row of ``ps``: :class:`LoadedModel`)
and the answer that holds one of its slots (:class:`_Lease`); the capability check made before a
request is queued."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from ..engines import Runner
from ..errors import EngineFailed, ImgscribeError, Unsupported
from ..types import Chunk, ModelInfo, Stream

if TYPE_CHECKING:
    from . import Scheduler

log = logging.getLogger("imgscribe.scheduler")


@dataclass(frozen=True)
class LoadedModel:
    """One row of ``ps``."""

    info: ModelInfo
    memory: int
    active: int  # requests running now
    slots: int
    expires_at: datetime | None  # None: kept forever


def check_capabilities(
    info: ModelInfo, *, images: int = 0, think: bool | str | None = None, name: str | None = None
) -> None:
    """Refuse what the model cannot do, with Ollama's wording where Ollama has one.

    ``name`` is the model as the user called it, for the message (default: its full name).
    """
    name = name or info.name
    if "completion" not in info.capabilities:
        raise Unsupported(f'"{name}" does not support generate')
    if images and not info.vision:
        raise Unsupported(
            f"model '{name}' does not support images: it has no vision capability "
            "(send the request to a vision model, or leave the images out)"
        )
    if think and "thinking" not in info.capabilities:
        raise Unsupported(f'"{name}" does not support thinking')


@dataclass(eq=False)
class _Model:
    """A model that is loaded, or loading (``runner`` is None until it is)."""

    name: str
    estimate: int  # bytes, before the runner can tell
    keep_alive: float
    runner: Runner | None = None
    slots: int = 1
    active: int = 1  # the request that loads it holds the first slot
    last_used: float = 0.0
    expires: float | None = None  # monotonic deadline while idle; None while busy or kept forever

    @property
    def memory(self) -> int:
        return (self.runner.memory if self.runner is not None else 0) or self.estimate

    @property
    def idle(self) -> bool:
        return self.runner is not None and self.active == 0


class _Lease(Iterator[Chunk]):
    """A runner's answer while it holds a slot; the slot goes back when the answer ends or is dropped."""

    def __init__(self, scheduler: Scheduler, entry: _Model, chunks: Stream[Chunk], started: int, load_ns: int):
        self._scheduler = scheduler
        self._entry = entry
        self._chunks = chunks
        self._started = started
        self._load_ns = load_ns
        self._open = True

    def __next__(self) -> Chunk:
        if not self._open:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except BaseException as exc:
            self.close()
            _raise_as_engine_error(self._entry.name, exc)
        if chunk.done:
            self.close()
            if chunk.metrics is not None:
                total = max(chunk.metrics.total_duration, time.perf_counter_ns() - self._started)
                chunk = replace(
                    chunk, metrics=replace(chunk.metrics, load_duration=self._load_ns, total_duration=total)
                )
        return chunk

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._chunks.close()
            finally:
                self._scheduler._release(self._entry)

    def __del__(self) -> None:
        self.close()


def _raise_as_engine_error(model: str, exc: BaseException, doing: str = "failed") -> NoReturn:
    """Our own errors (and interrupts) pass through; any other error from an engine becomes
    EngineFailed, the original kept as its cause."""
    if isinstance(exc, Exception) and not isinstance(exc, ImgscribeError):
        raise EngineFailed(f"model '{model}' {doing}: {type(exc).__name__}: {exc}") from exc
    raise exc


def _close(entry: _Model) -> None:
    if entry.runner is not None:
        try:
            entry.runner.close()
        except Exception as exc:  # it is unloaded all the same
            log.warning("model '%s' did not close cleanly: %s", entry.name, exc)
