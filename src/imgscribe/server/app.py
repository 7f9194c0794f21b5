"""The FastAPI application: Ollama's API, the OpenAI-compatible API, ``/health`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..config import settings
from ..scheduler import Scheduler
from . import errors, ollama, openai
from .context import Server, server_of
from .hosts import HostCheck
from .metrics import MetricsMiddleware

# Browser origins allowed by default, as Ollama allows them: this machine, and desktop-app schemes.
LOCAL_ORIGINS = r"^(https?://(localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(:\d+)?|(app|file|tauri|vscode-webview)://.*)$"


def create_app(scheduler: Scheduler | None = None) -> FastAPI:
    """The app, serving ``scheduler`` (a new one, closed when the app shuts down, if None)."""
    owned = scheduler is None
    scheduler = scheduler or Scheduler()
    cfg = settings()

    server = Server(scheduler, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        server.close()
        if owned:
            await run_in_threadpool(scheduler.close)

    app = FastAPI(title="imgscribe", version=__version__, lifespan=lifespan, openapi_url=None)
    app.state.server = server
    app.include_router(ollama.router)
    app.include_router(openai.router)
    app.add_api_route("/health", health, methods=["GET", "HEAD"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    errors.install(app)
    app.add_middleware(errors.CatchAll)  # innermost: its answers get CORS headers too
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.origins),
        allow_origin_regex=LOCAL_ORIGINS,
        allow_methods=["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta"],
    )
    app.add_middleware(HostCheck)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    return app


async def health(request: Request) -> dict:
    scheduler = server_of(request).scheduler
    return {
        "status": "ok",
        "version": __version__,
        "loaded": [row.info.name for row in scheduler.ps()],
        "running": scheduler.running(),
        "queue_depth": scheduler.queue_depth(),
    }


async def metrics(request: Request) -> Response:
    m = server_of(request).metrics
    return Response(m.render(), media_type=m.content_type)
