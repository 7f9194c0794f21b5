"""What every route shares: the scheduler, the image reader, metrics, limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response

from ..config import Settings
from ..scheduler import Scheduler, check_capabilities
from ..types import ChatRequest, Chunk, ModelInfo, Options
from .budget import Lease, map_large_blocks
from .inputs import ImageReader
from .jobs import Work, read_body, respond
from .metrics import Metrics
from .render import Dialect
from .wire import Body

B = TypeVar("B", bound=Body)


class Server:
    def __init__(self, scheduler: Scheduler, cfg: Settings):
        self.scheduler = scheduler
        self.store = scheduler.store
        self.settings = cfg
        self.reader = ImageReader(cfg)
        map_large_blocks()  # decoded images' memory goes back to the system when they are freed
        self.metrics = Metrics(scheduler)
        # One thread per request being answered or waiting in the queue (see jobs.py).
        self.threads = ThreadPoolExecutor(cfg.max_queue + 64, thread_name_prefix="imgscribe-request")
        # Room for four images at the size limit, in base64, and the text around them.
        limit = cfg.max_image_bytes
        self.body_limit = 4 * (limit * 4 // 3) + 1_000_000 if limit > 0 else 0

    async def respond(self, request: Request, work: Work, dialect: Dialect, stream: bool) -> Response:
        return await respond(request, work, dialect, stream, self.threads)

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def body(self, request: Request, cls: type[B]) -> B:
        return cls.parse(await read_body(request, self.body_limit, self.settings.body_timeout))

    def model(self, request: Request, name: str, *, images: int = 0, think: bool | str | None = None) -> ModelInfo:
        """The model's info (ModelNotFound otherwise), after checking it can do what is asked.

        Read on the event loop: a small manifest file, cheaper than a hop to a thread and back.
        The name labels this request's metrics from here on.
        """
        info = self.scheduler.info(name)
        request.state.model = info.name
        check_capabilities(info, images=images, think=think, name=name)
        return info

    def image_sides(self, info: ModelInfo, options: Options):
        """How small reading this request's images may decode them: for each image, the long side the
        loaded engine needs under the request's image budget (``Runner.image_side``); the model's
        ``max_image_side`` when it is not loaded or does not say."""
        runner = self.scheduler.loaded_runner(info.name)
        side = getattr(runner, "image_side", None)
        if side is None:
            return info.max_image_side
        return lambda width, height: side(width, height, options)

    def answer(
        self, request: ChatRequest, cancel: threading.Event, arrived: int, held: Lease | None = None
    ) -> Iterator[Chunk]:
        """The scheduler's answer, counted in the metrics; ``total_duration`` counts from
        ``arrived`` (``perf_counter_ns`` when the request came in), so it includes reading images.
        ``held``: the request's room in the pixel budget (``reader.read_request``), given back when
        the answer is finished, or fails, or its client leaves (the work's iterator is closed)."""
        try:
            chunks = self.scheduler.chat(request, cancel)
        except BaseException:
            if held is not None:
                held.release()
            raise
        try:
            for chunk in chunks:
                if chunk.done:
                    if chunk.metrics is not None:
                        elapsed = time.perf_counter_ns() - arrived
                        chunk.metrics.total_duration = max(chunk.metrics.total_duration, elapsed)
                    self.metrics.answered(request.model, chunk.metrics, len(request.images))
                yield chunk
        finally:
            try:
                chunks.close()
            finally:
                if held is not None:
                    held.release()


def server_of(request: Request) -> Server:
    return request.app.state.server
