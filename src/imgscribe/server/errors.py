"""The one place that turns errors into HTTP answers.

Every :class:`~imgscribe.errors.ImgscribeError` carries its status (``err.status``); this module
only chooses the body's dialect: Ollama's ``{"error": "..."}`` on ``/api`` and the rest, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` on ``/v1``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import Busy, ImgscribeError

log = logging.getLogger("imgscribe.server")

RETRY_AFTER_SECONDS = 1
_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error"}


class NotImplementedYet(ImgscribeError):
    """A part of Ollama's API this server does not offer yet."""

    status = 501


def status_of(err: BaseException) -> int:
    return err.status if isinstance(err, ImgscribeError) else 500


def message_of(err: BaseException) -> str:
    if isinstance(err, ImgscribeError):
        return str(err)
    return f"internal error: {type(err).__name__}: {err}"


def ollama_body(err: BaseException) -> dict:
    return {"error": message_of(err)}


def openai_body(err: BaseException) -> dict:
    status = status_of(err)
    kind = _OPENAI_TYPES.get(status, "api_error")
    return {"error": {"message": message_of(err), "type": kind, "param": None, "code": None}}


def log_error(err: BaseException) -> None:
    """Server faults (5xx) go to the log with their traceback; a client's mistakes do not."""
    if status_of(err) >= 500:
        log.error("%s", message_of(err), exc_info=err)


def error_response(err: BaseException, openai: bool = False) -> JSONResponse:
    """The answer for an error raised before a response started."""
    log_error(err)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(err, Busy) else None
    body = openai_body(err) if openai else ollama_body(err)
    return JSONResponse(body, status_code=status_of(err), headers=headers)


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def install(app: FastAPI) -> None:
    """Route every error, ours, Starlette's (404, 405) and unexpected ones, through here."""

    async def on_imgscribe(request: Request, err: Exception) -> JSONResponse:
        return error_response(err, _is_openai(request))

    async def on_http(request: Request, err: HTTPException) -> JSONResponse:
        wrapped = ImgscribeError(str(err.detail))
        wrapped.status = err.status_code
        response = error_response(wrapped, _is_openai(request))
        if err.headers:
            response.headers.update(err.headers)
        return response

    app.add_exception_handler(ImgscribeError, on_imgscribe)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_imgscribe)
