"""The web page (``docs/ui.md``): static files shipped in ``server/ui/``, served at ``/ui`` and, for a
browser (``Accept: text/html``), at ``/``. Ollama's clients probing ``GET /`` still get the plain
"Ollama is running".

The page talks only to the public API, from the server's own origin (which the origin guard
allows on this machine). It holds no secret: with ``IMGSCRIBE_API_KEY`` set, the page and its
assets are open (``security.OPEN_PATHS``) and the page asks for the key before calling the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from . import ollama

ASSETS = Path(__file__).with_name("ui")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The page loads nothing from elsewhere; blob: and data: are the previews of the user's own images.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter()
PREVIEW_SIDE = 512


def wants_html(request: Request) -> bool:
    """Whether the client is a browser asking for a page (not an Ollama client probing ``/``)."""
    return "text/html" in request.headers.get("accept", "").lower()


def asset(name: str) -> Response:
    """One file from ``ui/``, by its plain name only (no folders, no ``..``, no hidden files)."""
    path = ASSETS / name
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or path.suffix not in TYPES
        or not path.is_file()
        or path.resolve().parent != ASSETS.resolve()
    ):
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(request: Request) -> Response:
    if wants_html(request):
        return asset("index.html")
    return await ollama.root()


@router.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
async def page() -> Response:
    return asset("index.html")


@router.api_route("/ui/", methods=["GET", "HEAD"], include_in_schema=False)
async def page_slash() -> Response:
    return RedirectResponse("/ui", status_code=308)


@router.post("/ui/preview", include_in_schema=False)
async def preview(request: Request) -> Response:
    """A JPEG thumbnail (at most :data:`PREVIEW_SIDE` px) of the image in the body, decoded by the
    server: the page's preview of what the browser cannot show itself (HEIC). The same reading as the
    API's (size and pixel limits, the decode budget, the body deadline); the API key when one is set."""
    import base64
    import io

    from starlette.concurrency import run_in_threadpool

    from .context import server_of
    from .jobs import read_body

    server = server_of(request)
    data = await read_body(request, server.settings.max_image_bytes, server.settings.body_timeout)

    def thumbnail() -> bytes:
        [[image]], held = server.reader.read_request([[(base64.b64encode(data).decode(), "image")]], None, PREVIEW_SIDE)
        try:
            pil = image.pil.copy()
            pil.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            out = io.BytesIO()
            pil.convert("RGB").save(out, "JPEG", quality=85)
            return out.getvalue()
        finally:
            held.release()

    return Response(await run_in_threadpool(thumbnail), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.api_route("/ui/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def ui_asset(name: str) -> Response:
    return asset(name)
