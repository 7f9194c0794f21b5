"""The one place that turns errors into HTTP answers.

Every :class:`~imgscribe.errors.ImgscribeError` carries its status (``err.status``); this module
only chooses the body's dialect: Ollama's ``{"error": "..."}`` on ``/api`` and the rest, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` on ``/v1``.
"""

from __future__ import annotations

import uuid

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Busy, ImgscribeError
from ..wire import ollama, openai

log = logging.getLogger("imgscribe.server")

RETRY_AFTER_SECONDS = 1


class NotImplementedYet(ImgscribeError):
    """A part of Ollama's API this server does not offer yet."""

    status = 501


def status_of(err: BaseException) -> int:
    return err.status if isinstance(err, ImgscribeError) else 500


def message_of(err: BaseException) -> str:
    """What a client is told: the error's one sentence. An unexpected error's text (a bug's
    ``AttributeError: ...``) and an error's details (log paths, a child's log) stay in the log."""
    if isinstance(err, ImgscribeError):
        return err.message
    return "internal error: the server failed to answer this request (the server's log has the details)"


def ollama_body(err: BaseException) -> dict:
    return ollama.error_body(message_of(err))


def openai_body(err: BaseException) -> dict:
    return openai.error_body(message_of(err), status_of(err))


def log_error(err: BaseException) -> None:
    """Server faults (500) go to the log in one line, their traceback and details at debug level;
    answers that are no fault (501 not offered, 502 another server's fault, 503 busy) are one
    warning; a client's mistakes are not logged."""
    status = status_of(err)
    if status < 500:
        return
    text = str(err) if isinstance(err, ImgscribeError) else f"unexpected {type(err).__name__}: {err}"
    first, _, detail = text.partition("\n")
    if status == 500:
        log.error("%s", first)
        log.debug("details: %s", detail or "-", exc_info=err)
    else:
        log.warning("%s", first)
        if detail:
            log.debug("details: %s", detail)


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip


def anthropic_body(err: BaseException) -> dict:
    """Anthropic's error answer (Ollama's ``anthropic.NewError``), for ``/v1/messages``."""
    status = status_of(err)
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message_of(err)},
            "request_id": f"req_{uuid.uuid4().hex[:24]}"}  # fmt: skip


def error_response(err: BaseException, openai: bool | str = False) -> JSONResponse:
    """The answer for an error raised before a response started, in the dialect of the route:
    ``openai`` True (or the request's path: ``/v1/messages`` is Anthropic's, other ``/v1`` OpenAI's)."""
    log_error(err)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(err, Busy) else None
    kind = dialect_of(openai) if isinstance(openai, str) else "openai" if openai else "ollama"
    body = {"openai": openai_body, "anthropic": anthropic_body}.get(kind, ollama_body)(err)
    return JSONResponse(body, status_code=status_of(err), headers=headers)


def dialect_of(path: str) -> str:
    """Whose error shape a path's clients read: ``anthropic``, ``openai`` or ``ollama``."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    return "openai" if path == "/v1" or path.startswith("/v1/") else "ollama"


def is_openai_path(path: str) -> str:
    """The path itself when it is an OpenAI-style (``/v1``) one, for :func:`error_response`."""
    return path if dialect_of(path) != "ollama" else ""


def _is_openai(request: Request) -> str:
    return request.url.path


def _http_message(request: Request, err: HTTPException) -> str:
    """Starlette's bare "Not Found" / "Method Not Allowed", saying what was asked."""
    where = f"{request.method} {request.url.path}"
    if err.status_code == 404:
        return f"not found: {where}: no such route"
    if err.status_code == 405:
        allowed = (err.headers or {}).get("Allow", "")
        return f"method not allowed: {where}" + (f"; use {allowed}" if allowed else "")
    return str(err.detail)


class CatchAll:
    """Answers an unexpected error (a bug) like any other, a 500 in the route's dialect.

    Starlette sends its own 500 and then raises the error again, so the server drops the
    connection and a client's next request on it fails. Once a response has started the error is
    raised as before: there is nothing else to do with it.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as err:
            if started:
                raise
            response = error_response(err, _is_openai(Request(scope)))
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Route every error, ours, Starlette's (404, 405) and unexpected ones, through here."""

    async def on_imgscribe(request: Request, err: Exception) -> JSONResponse:
        return error_response(err, _is_openai(request))

    async def on_http(request: Request, err: HTTPException) -> JSONResponse:
        wrapped = ImgscribeError(_http_message(request, err))
        wrapped.status = err.status_code
        response = error_response(wrapped, _is_openai(request))
        if err.headers:
            response.headers.update(err.headers)
        return response

    app.add_exception_handler(ImgscribeError, on_imgscribe)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_imgscribe)
