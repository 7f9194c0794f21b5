"""Prometheus metrics for ``GET /metrics``: requests and latency per route and model, queue depth,
loaded models, tokens and images. Each app has its own registry, so several can live in one process.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..scheduler import Scheduler
from ..types import Metrics as Timings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, scheduler: Scheduler):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imgscribe_requests", "HTTP requests answered.", ["route", "model", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "imgscribe_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (streams included).",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "imgscribe_tokens", "Tokens read (prompt) and written (completion).", ["model", "kind"],
            registry=self.registry,
        )  # fmt: skip
        self.images = Counter("imgscribe_images", "Images answered about.", ["model"], registry=self.registry)
        self.registry.register(_SchedulerCollector(scheduler))

    def answered(self, model: str, timings: Timings | None, images: int) -> None:
        """Count one finished answer."""
        if timings is not None:
            self.tokens.labels(model, "prompt").inc(timings.prompt_eval_count)
            self.tokens.labels(model, "completion").inc(timings.eval_count)
        if images:
            self.images.labels(model).inc(images)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SchedulerCollector:
    """Read at scrape time: what the scheduler is doing now."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def collect(self):
        queue = GaugeMetricFamily("imgscribe_queue_depth", "Requests waiting for a slot or a load.")
        queue.add_metric([], self.scheduler.queue_depth())
        running = GaugeMetricFamily("imgscribe_running_requests", "Requests being answered now.")
        running.add_metric([], self.scheduler.running())
        loaded = GaugeMetricFamily("imgscribe_loaded_models", "Models loaded now.")
        rows = self.scheduler.ps()
        loaded.add_metric([], len(rows))
        memory = GaugeMetricFamily("imgscribe_model_memory_bytes", "Memory a loaded model holds.", labels=["model"])
        for row in rows:
            memory.add_metric([row.info.name], row.memory)
        return [queue, running, loaded, memory]


class MetricsMiddleware:
    """Times every request to the end of its body, streamed or not, labelled with its route
    template and the model the handler resolved (``request.state.model``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            model = scope.get("state", {}).get("model", "")
            self.metrics.requests.labels(route, model, str(status)).inc()
            self.metrics.latency.labels(route, model).observe(time.perf_counter() - start)
