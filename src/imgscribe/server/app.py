"""The FastAPI application: Ollama's API, the OpenAI-compatible API, ``/health`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..version import __version__
from ..config import settings
from ..scheduler import Scheduler
from . import errors, ollama, openai, ui
from . import anthropic, openai_completions, responses
from .context import Server, server_of
from .hosts import HostCheck
from .metrics import MetricsMiddleware
from .security import ApiKeyCheck, OriginCheck, allowed_origins


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
    # `/` first: the page for a browser, Ollama's probe answer otherwise; the web page's other
    # routes last: the API's are matched first.
    page_root = [r for r in ui.router.routes if getattr(r, "path", None) == "/"]
    page_rest = [r for r in ui.router.routes if r not in page_root]
    routes = [*page_root, *(route for router in (ollama.router, openai.router, openai_completions.router,
                                                 responses.router, anthropic.router) for route in router.routes),
              *page_rest]  # fmt: skip
    _add_routes(app, routes)
    app.add_api_route("/health", health, methods=["GET", "HEAD"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    errors.install(app)
    # Outermost last: metrics see every answer; the host, origin and key checks refuse a request
    # before its body is read; CORS headers go on every answer a page may read.
    app.add_middleware(errors.CatchAll)  # innermost: its answers get CORS headers too
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=allowed_origins(cfg.origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
                       "OpenAI-Beta", "x-api-key", "anthropic-version"],  # fmt: skip
    )
    app.add_middleware(ApiKeyCheck, key=cfg.api_key)
    app.add_middleware(OriginCheck, origins=cfg.origins)
    app.add_middleware(HostCheck)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    return app


def _add_routes(app: FastAPI, routes: list) -> None:
    """The routers' routes on the app itself, in one flat list: FastAPI (0.165) matches an included
    router as a nested object, through each router in turn, at about 0.1 ms a request before the
    route is found (three of them before ``/api/chat``)."""
    app.router.routes.extend(routes)


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
