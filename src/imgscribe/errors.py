"""One small error hierarchy for the whole package.

Front doors map these to HTTP status codes (``server/errors.py``) and exit codes (``cli``) in one
place each; nothing else decides how an error is shown.
"""

from __future__ import annotations


class ImgscribeError(Exception):
    """Base class: the message is meant for a user, so it says what is wrong and what to do.

    ``detail`` holds what only the machine's owner should see (a log file's path and its last
    lines): ``str(err)`` includes it, for the CLI and the server's log; a client over HTTP gets
    ``err.message`` alone.
    """

    status = 500

    def __init__(self, message: str = "", *, detail: str = ""):
        super().__init__(message)
        self.detail = detail

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return f"{self.message}\n{self.detail}" if self.detail else self.message


class InvalidRequest(ImgscribeError):
    status = 400


class InvalidImage(InvalidRequest):
    """The image could not be read, or is over a limit (the message names the limit's setting)."""


class ImageTooLarge(InvalidImage):
    status = 413


class ModelNotFound(ImgscribeError):
    status = 404

    def __init__(self, name: str, hint: str = ""):
        self.name = name
        msg = f"model '{name}' not found"
        super().__init__(f"{msg}, {hint}" if hint else msg)


class Unsupported(InvalidRequest):
    """The model cannot do what was asked (images on a text-only model, thinking, ...)."""


class Busy(ImgscribeError):
    status = 503


class Cancelled(ImgscribeError):
    status = 499


class EngineFailed(ImgscribeError):
    status = 500


class RequestTimeout(InvalidRequest):
    """A client took longer than its setting allows to send a request."""

    status = 408


class Forbidden(ImgscribeError):
    """The server's owner has not allowed this over the API (the message names the setting)."""

    status = 403


class Unauthorized(ImgscribeError):
    """The request lacks the server's API key, or sends a wrong one."""

    status = 401


class RemoteFailed(EngineFailed):
    """Another server (a remote model, a registry) answered with something unusable: a bad gateway."""

    status = 502
