"""Who may talk to the server: browser origins and the API key (``docs/security.md``).

**Origins.** A web page in the user's browser can send a "simple" request (a POST with
``Content-Type: text/plain``) to any address without a CORS preflight, and the request runs even
though the page cannot read the answer. So a request that carries an ``Origin`` header which is not
allowed is refused with 403 before its body is read, on every route, as Ollama refuses it. Allowed:
this machine's pages (``http(s)://localhost``, ``127.0.0.1``, ``[::1]``, ``0.0.0.0``, any port),
desktop-app schemes (``app://``, ``file://``, ``tauri://``, ``vscode-webview://``,
``vscode-file://``), and the patterns in ``IMGSCRIBE_ORIGINS`` (``*`` matches anything). Requests
without an ``Origin`` (curl, SDKs, the CLI) are not from a page and pass. ``Origin: null`` (a
sandboxed frame, a ``data:`` page) is refused.

**API key.** With ``IMGSCRIBE_API_KEY`` set, every request but ``GET /``, ``/health``, the web
page's files (``/ui``, ``/ui/*``: the page asks for the key) and CORS preflights must carry it, as
``Authorization: Bearer KEY`` (OpenAI's and Ollama's clients) or
``x-api-key: KEY`` (Anthropic's); it is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, Unauthorized
from .errors import error_response, is_openai_path

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")
LOCAL_ORIGINS = tuple(
    [f"{scheme}://{host}{port}" for host in _LOCAL_HOSTS for scheme in ("http", "https") for port in ("", ":*")]
    + [f"{scheme}://*" for scheme in ("app", "file", "tauri", "vscode-webview", "vscode-file")]
)
#: Paths anyone may ask without the key: whether a server runs here, and whether it is healthy;
#: and the web page's static files (they hold no secret; the page asks for the key).
OPEN_PATHS = ("/", "/health", "/ui")
OPEN_PREFIXES = ("/ui/",)


def allowed_origins(extra: Iterable[str] = ()) -> str:
    """One regular expression for this machine's origins and ``extra`` patterns, in which ``*``
    stands for any text (as ``OLLAMA_ORIGINS``); also what the CORS headers are given."""
    parts = [re.escape(p.strip().rstrip("/")).replace(r"\*", ".*") for p in (*LOCAL_ORIGINS, *extra) if p.strip()]
    return "(?i)" + "|".join(f"(?:{p})" for p in parts)


class OriginCheck:
    """403 for a request from a web page whose origin is not allowed."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()):
        self.app = app
        self.allowed = re.compile(allowed_origins(origins))

    def allows(self, origin: str) -> bool:
        return self.allowed.fullmatch(origin.strip()) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and not self.allows(origin):
                shown = origin if len(origin) <= 100 else origin[:97] + "..."
                err = Forbidden(
                    f"forbidden: requests from web pages at {shown!r} are not allowed "
                    "(the server's owner can allow that origin with IMGSCRIBE_ORIGINS)"
                )
                await error_response(err, is_openai_path(scope["path"]))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApiKeyCheck:
    """401 for a request without the server's key (when it has one)."""

    def __init__(self, app: ASGIApp, key: str):
        self.app = app
        self.key = key.encode()

    def sent_key(self, headers: Headers) -> bytes | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip().encode()
        key = headers.get("x-api-key") or headers.get("api-key")
        return key.strip().encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key and not self._open(scope):
            sent = self.sent_key(Headers(scope=scope))
            if sent is None or not hmac.compare_digest(sent, self.key):
                err = Unauthorized(
                    "unauthorized: this server needs its API key "
                    "(send 'Authorization: Bearer KEY'; the CLI sends IMGSCRIBE_API_KEY)"
                    if sent is None
                    else "unauthorized: wrong API key"
                )
                response = error_response(err, is_openai_path(scope["path"]))
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _open(scope: Scope) -> bool:
        method = scope.get("method", "GET")
        if method == "OPTIONS":  # a browser's preflight never carries credentials
            return True
        path = scope["path"]
        return method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


class HideQueries(logging.Filter):
    """Access-log lines (uvicorn's) without their query strings: a client may send a secret in one
    (``?key=``, as some SDKs do) and the log never needs it; the path stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?...", *args[3:])
        return True


HIDE_QUERIES = HideQueries()
