"""An httpx client whose every socket operation ends by one total deadline, or when cancelled.

httpx's timeouts bound each operation on its own: a read waits at most ``read`` seconds, but a peer
that sends one byte a second never makes a read wait that long, and holds the request for as long
as it likes. Every connect, TLS handshake, read and write of a :class:`DeadlineClient` waits at most
the time left until its :class:`Deadline`, so connecting, the headers, redirects and the body
together end by then. With a ``cancel`` event, reads and writes wake every :data:`SLICE` seconds
to look at it.

It plugs in where httpcore lets the network code be chosen, ``httpcore.ConnectionPool(
network_backend=...)``: :class:`DeadlineBackend` wraps ``httpcore.SyncBackend``. httpx has no
public way to hand its transport a backend, so :class:`DeadlineTransport` is httpx's
``HTTPTransport`` with its pool replaced by one built from the same settings and this backend
(httpx keeps mapping httpcore's errors to its own, in requests and while a body is read).

:class:`StreamedPost` is the one streamed request every client of a model server uses (the llamacpp
engine with its ``llama-server``, the remote engine, the CLI): a POST on its own client, with no
total by default (a generation takes as long as it takes) and cut by ``cancel`` or ``close()``; its
body read as lines, NDJSON objects or server-sent events.

When the deadline passes, the operation raises ``httpx.ConnectTimeout``, ``ReadTimeout`` or
``WriteTimeout`` (each an ``httpx.TimeoutException``) that names the limit; when ``cancel`` is set,
:class:`imgscribe.errors.Cancelled`.

Not bounded here: the name lookup inside a connect (the system resolver has its own timeouts) and
waiting for a free connection of the pool (httpx's ``pool`` timeout). The connect and the TLS
handshake are bounded by the deadline but look at ``cancel`` only before and after.

Generic: nothing here knows about the server, engines or the CLI.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpcore
import httpx

from ..errors import Cancelled

__all__ = [
    "SLICE",
    "Deadline",
    "DeadlineBackend",
    "DeadlineClient",
    "DeadlineTransport",
    "StreamedPost",
    "error_message",
    "get_json",
    "ndjson",
    "sse",
]

SLICE = 0.25  # longest wait between two looks at a cancel event
T = TypeVar("T")
Timeout = type[httpcore.TimeoutException]


class Deadline:
    """When a piece of work must be over (``seconds`` from now; None: no limit), and an event
    that ends it sooner. One object serves every connection of a client."""

    def __init__(self, seconds: float | None, cancel: threading.Event | None = None):
        self.seconds = seconds
        self.cancel = cancel
        self.ends: float | None = None
        self.restart()

    def restart(self, seconds: float | None = None) -> None:
        """Count again from now (``seconds``, if given, replaces the limit): e.g. for the next
        request of a client that is kept."""
        if seconds is not None:
            self.seconds = seconds
        self.ends = None if self.seconds is None else time.monotonic() + self.seconds

    def left(self) -> float | None:
        return None if self.ends is None else self.ends - time.monotonic()

    def check(self, error: Timeout = httpcore.ReadTimeout) -> None:
        """Raise Cancelled, or ``error``, when the work must stop."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the request was cancelled")
        left = self.left()
        if left is not None and left <= 0:
            raise error(f"not done within the total time limit of {self.seconds:g}s")

    def limit(self, timeout: float | None, error: Timeout) -> float | None:
        """The longest one blocking step may wait: ``timeout`` or the time left, the smaller."""
        self.check(error)
        left = self.left()
        if left is None or (timeout is not None and timeout < left):
            return timeout
        return left

    def run(self, step: Callable[[float | None], T], timeout: float | None, error: Timeout) -> T:
        """``step(wait)`` until it does not time out. Each try waits at most the deadline's time
        left and, with a cancel event, SLICE; ``timeout`` (the operation's own limit, e.g. httpx's
        read timeout) counts across tries. A try that timed out did nothing (a read read nothing,
        a send sent nothing), so trying again is safe."""
        ends = None if timeout is None else time.monotonic() + timeout
        while True:
            self.check(error)
            own = None if ends is None else ends - time.monotonic()
            if own is not None and own <= 0:
                raise error("timed out")  # the operation's own timeout, in httpcore's words
            wait = self.limit(own, error)
            if self.cancel is not None:
                wait = SLICE if wait is None else min(wait, SLICE)
            try:
                return step(wait)
            except error:
                pass  # a slice, the operation's timeout or the deadline ended: the top says which


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline):
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._deadline.run(lambda wait: self._inner.read(max_bytes, wait), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket")
        if not isinstance(sock, socket.socket):  # not SyncBackend's stream: one bounded write
            self._inner.write(buffer, self._deadline.limit(timeout, httpcore.WriteTimeout))
            return
        # send() by send(): a send that times out sent nothing (for TLS: try the same bytes again,
        # as OpenSSL asks), where httpcore's own loop could not say how much of the buffer went.
        data = memoryview(buffer)
        while data:
            data = data[self._deadline.run(functools.partial(_send, sock, data), timeout, httpcore.WriteTimeout):]

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        wait = self._deadline.limit(timeout, httpcore.ConnectTimeout)
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, wait)
        except httpcore.ConnectTimeout:
            self._deadline.check(httpcore.ConnectTimeout)  # say it was the deadline, when it was
            raise
        return _Stream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _send(sock: socket.socket, data: memoryview, wait: float | None) -> int:
    try:
        sock.settimeout(wait)
        return sock.send(data)
    except TimeoutError:
        raise httpcore.WriteTimeout("timed out") from None
    except OSError as exc:
        raise httpcore.WriteError(str(exc)) from exc


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network code (``backend``: SyncBackend) with every step bounded by ``deadline``."""

    def __init__(self, deadline: Deadline, backend: httpcore.NetworkBackend | None = None):
        self.deadline = deadline
        self._backend = backend or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._connect(lambda wait: self._backend.connect_tcp(host, port, wait, local_address, socket_options),
                             timeout)  # fmt: skip

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return self._connect(lambda wait: self._backend.connect_unix_socket(path, wait, socket_options), timeout)

    def sleep(self, seconds: float) -> None:  # httpcore's pause between retries
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            self._backend.sleep(min(self.deadline.limit(left, httpcore.ConnectTimeout) or left, SLICE))

    def _connect(self, connect: Callable[[float | None], httpcore.NetworkStream], timeout: float | None):
        try:
            stream = connect(self.deadline.limit(timeout, httpcore.ConnectTimeout))
        except httpcore.ConnectTimeout:
            self.deadline.check(httpcore.ConnectTimeout)
            raise
        try:
            self.deadline.check(httpcore.ConnectTimeout)  # cancelled while connecting
        except BaseException:
            stream.close()
            raise
        return _Stream(stream, self.deadline)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport, its connections made by a :class:`DeadlineBackend`. Never uses proxies
    or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment."""

    def __init__(
        self,
        deadline: Deadline,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        retries: int = 0,
    ):
        context = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
        super().__init__(verify=context, trust_env=False, limits=limits, retries=retries)
        # httpx cannot hand the pool it just made a backend: an alike pool (still empty) with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=DeadlineBackend(deadline),
        )


@functools.cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    """httpx's context (certifi's CAs), made once: loading the CAs takes a while, and a client is
    made per fetch. A context may serve any number of connections, in any thread."""
    return httpx.create_ssl_context(verify, trust_env=False)


class DeadlineClient(httpx.Client):
    """An ``httpx.Client`` whose requests end by ``total`` seconds from now (None: no total), or
    when ``cancel`` is set. ``client.deadline.restart()`` counts again, e.g. before the next request
    of a client that is kept. Other keywords go to ``httpx.Client``: ``timeout`` still bounds each
    operation on its own (httpx's default: 5 s; None leaves only the total)."""

    def __init__(
        self,
        total: float | None,
        *,
        cancel: threading.Event | None = None,
        verify: ssl.SSLContext | bool = True,
        retries: int = 0,
        **kwargs: Any,
    ):
        self.deadline = Deadline(total, cancel)
        super().__init__(transport=DeadlineTransport(self.deadline, verify=verify, retries=retries), **kwargs)


# -- streaming ---------------------------------------------------------------------------------------


def ndjson(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an NDJSON stream (Ollama's), blank lines passed over."""
    for line in lines:
        if line.strip():
            yield json.loads(line)


def sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream (OpenAI's, llama-server's), up to ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments (": ping"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def error_message(text: str, status: int) -> str:
    """What an error answer says: its body OpenAI-shaped (``{"error": {"message"}}``), Ollama-shaped
    (``{"error": "..."}``) or plain text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or f"HTTP {status}"
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


class StreamedPost:
    """A streamed POST of a JSON ``body``, its answer read line by line. It ends by ``total``
    seconds (None: no total, for a generation), or when ``cancel`` is set (from any thread: the
    read in progress raises :class:`~imgscribe.errors.Cancelled` within :data:`SLICE`) or
    ``close()`` is called: the connection is closed, and a server such as llama-server or Ollama
    stops working on a request whose client has gone.

    ``with StreamedPost(...) as post`` (or ``post.open()``) sends it: a peer that cannot be reached,
    or breaks the connection, is a ``ConnectionError``; ``post.status`` is the answer's status,
    ``error_text()`` an error answer's message, ``lines()``/``ndjson()``/``sse()`` its body.
    ``connect_timeout`` bounds connecting, ``read_timeout`` (None: none) each wait for data.
    """

    def __init__(self, url: str, body: dict[str, Any], cancel: threading.Event | None = None, *,
                 headers: dict[str, str] | None = None, connect_timeout: float = 10.0,
                 read_timeout: float | None = None, total: float | None = None):  # fmt: skip
        self.url = url
        self.body = body
        self.cancel = cancel or threading.Event()
        self.headers = {"Accept": "application/x-ndjson, text/event-stream, */*", "User-Agent": "imgscribe",
                        **(headers or {})}  # fmt: skip
        self.timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None)
        self.total = total
        self.status = 0
        self._client: DeadlineClient | None = None
        self._response: httpx.Response | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def open(self) -> StreamedPost:
        if self.cancelled:
            raise Cancelled("request canceled")
        client = DeadlineClient(self.total, cancel=self.cancel, timeout=self.timeout, trust_env=False)
        self._client = client
        try:
            request = client.build_request("POST", self.url, json=self.body, headers=self.headers)
            self._response = client.send(request, stream=True)
        except BaseException as exc:
            self.close()
            if isinstance(exc, httpx.UnsupportedProtocol):
                raise ConnectionError(f"unsupported URL {self.url!r}: use http:// or https://") from None
            if isinstance(exc, httpx.HTTPError):
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
            raise
        self.status = self._response.status_code
        return self

    def __enter__(self) -> StreamedPost:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (an answer not read to its end is cut there). From the thread
        that reads it; from another, set ``cancel``."""
        response, client, self._response, self._client = self._response, self._client, None, None
        if response is not None:
            response.close()
        if client is not None:
            client.close()

    def error_text(self) -> str:
        """The body of an error answer, as a message (see :func:`error_message`)."""
        assert self._response is not None
        try:
            raw = b"".join(_capped(self._response.iter_bytes(), 100_000)).decode("utf-8", "replace")
        except httpx.HTTPError:
            return f"HTTP {self.status}"
        return error_message(raw, self.status)

    def lines(self) -> Iterator[str]:
        """The body's lines, without line ends. Raises ConnectionError when the connection breaks,
        Cancelled when ``cancel`` is set."""
        if self._response is None:
            return
        try:
            yield from self._response.iter_lines()
        except httpx.HTTPError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None

    def ndjson(self) -> Iterator[dict[str, Any]]:
        return ndjson(self.lines())

    def sse(self) -> Iterator[dict[str, Any]]:
        return sse(self.lines())


def _capped(parts: Iterable[bytes], limit: int) -> Iterator[bytes]:
    for part in parts:
        yield part[:limit]
        limit -= len(part)
        if limit <= 0:
            return


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    """GET a JSON document (small answers: health, props, model lists), all of it within ``timeout``."""
    with DeadlineClient(timeout, timeout=timeout, trust_env=False) as client:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response.json()
