"""How uvicorn serves the app: its own HTTP/1.1 protocol, with a time limit on request headers.

uvicorn waits for a request's headers as long as the client likes: a connection that sends half a
header block and then nothing (or a byte now and then) stays open, and a few hundred of them hold
the server's sockets. Here a connection has ``IMGSCRIBE_HEADER_TIMEOUT`` seconds to finish a
request's headers, counted from when it is made and again from the end of each response (a
keep-alive connection waiting for its next request); then it is closed. Once the headers are
complete the timer has no say: the body has its own limit (``IMGSCRIBE_BODY_TIMEOUT``, see
``jobs.read_body``) and an answer takes as long as it takes.

:func:`uvicorn_config` builds the ``uvicorn.Config`` for the app, with that protocol: ``imgscribe
serve`` and the tests' live server use it, so both speak the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn

from ..config import Settings
from .security import HIDE_QUERIES

log = logging.getLogger("imgscribe.server")


class HeaderTimeout:
    """Mixed in before one of uvicorn's HTTP/1.1 protocols (httptools or h11): both keep the
    request being answered in ``self.cycle``, call ``on_response_complete`` after each response,
    and (httptools) queue pipelined requests in ``self.pipeline``."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _waiting_for_headers(self) -> bool:
        """No request is being answered or queued: the next one's headers are not complete."""
        cycle = getattr(self, "cycle", None)
        return (cycle is None or cycle.response_complete) and not getattr(self, "pipeline", None)

    def _await_headers(self) -> None:
        self._stop_header_timer()
        transport: asyncio.Transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing() and self._waiting_for_headers():
            loop: asyncio.AbstractEventLoop = self.loop  # type: ignore[attr-defined]
            self._header_timer = loop.call_later(self.header_timeout, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        transport: asyncio.Transport = self.transport  # type: ignore[attr-defined]
        # get_protocol: a connection upgraded to another protocol is no longer ours to time.
        if transport.is_closing() or transport.get_protocol() is not self or not self._waiting_for_headers():
            return
        log.debug("closing a connection whose request headers took longer than %gs (IMGSCRIBE_HEADER_TIMEOUT)",
                  self.header_timeout)  # fmt: skip
        transport.close()


def http_protocol(header_timeout: float, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol ``http`` (``auto``: httptools when installed, else h11, as
    uvicorn chooses) with the header time limit."""
    if http == "auto":
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base
    elif http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    elif http == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        raise ValueError(f"unknown uvicorn HTTP protocol {http!r}: use auto, httptools or h11")
    return type(f"HeaderTimeout{base.__name__}", (HeaderTimeout, base), {"header_timeout": header_timeout})


def uvicorn_config(app: Any, cfg: Settings, *, http: str = "auto", **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` that serves ``app`` with ``cfg``'s header time limit; ``options``
    go to uvicorn.Config (log_level, timeout_graceful_shutdown, ...)."""
    config = uvicorn.Config(app, http=http_protocol(cfg.header_timeout, http), **options)  # configures logging
    logging.getLogger("uvicorn.access").addFilter(HIDE_QUERIES)  # no ?key=... in the log (once: same filter)
    return config
