"""Slow clients on a real server: half-sent headers are closed after IMGSCRIBE_HEADER_TIMEOUT, a
body slower than IMGSCRIBE_BODY_TIMEOUT gets 408, and a slow but complete request is answered.
Over both of uvicorn's HTTP/1.1 protocols (httptools, what it picks when installed; h11)."""

from __future__ import annotations

import functools
import json
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from imgscribe.server.protocol import uvicorn_config

from . import conftest
from .conftest import LiveServer, live_server

pytestmark = pytest.mark.timeout(60)
SLACK = 3.0  # the machine is slow and shared: timing checks are coarse
HALF = b"POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Half: "
SHOW = json.dumps({"model": "llava"}).encode()


@pytest.fixture(params=["httptools", "h11"])
def http(request) -> str:
    return request.param


@contextmanager
def serving(scheduler, monkeypatch, http: str, **env: str) -> Iterator[LiveServer]:
    for name, value in env.items():
        monkeypatch.setenv(f"IMGSCRIBE_{name}", value)
    monkeypatch.setattr(conftest, "uvicorn_config", functools.partial(uvicorn_config, http=http))
    with live_server(scheduler) as server:
        yield server


def post_head(server: LiveServer, length: int) -> bytes:
    return (f"POST /api/show HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one response (with a Content-Length) read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"the server closed the connection after {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        part = sock.recv(65536)
        assert part, "the server closed the connection in the middle of a response"
        body += part
    return int(lines[0].split()[1]), body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (saying nothing) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_half_sent_headers_are_closed_after_the_header_timeout(scheduler, monkeypatch, http):
    with serving(scheduler, monkeypatch, http, HEADER_TIMEOUT="1") as server:
        socks: list[socket.socket] = []
        selector = selectors.DefaultSelector()
        try:
            for _ in range(300):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                sock.sendall(HALF)
                socks.append(sock)
                selector.register(sock, selectors.EVENT_READ)
            opened = time.monotonic()
            assert httpx.get(server.url + "/api/version", timeout=10).status_code == 200  # meanwhile
            left, ends = len(socks), opened + 1 + SLACK
            while left and time.monotonic() < ends:
                for key, _ in selector.select(0.2):
                    try:
                        said = key.fileobj.recv(1024)
                    except ConnectionError:
                        said = b""
                    assert said == b"", f"the server answered a half-sent request: {said!r}"
                    selector.unregister(key.fileobj)
                    left -= 1
            assert left == 0, f"{left} of 300 half-sent requests still open after {1 + SLACK:g}s"
            assert time.monotonic() - opened > 0.5  # after the timeout, not at once
        finally:
            selector.close()
            for sock in socks:
                sock.close()
        assert httpx.get(server.url + "/api/version", timeout=10).status_code == 200  # afterwards


def test_a_slow_but_complete_request_is_answered_and_the_timer_starts_again(scheduler, monkeypatch, http):
    """The header timer stops once a request's headers are complete: a body sent over more than the
    header timeout is answered (the body timeout governs it). After the response the timer counts
    again, for the next request's headers on the same connection."""
    with serving(scheduler, monkeypatch, http, HEADER_TIMEOUT="1", BODY_TIMEOUT="30") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(post_head(server, len(SHOW)))
            start = time.monotonic()
            for byte in SHOW:  # 17 bytes, 0.15 s apart: more than the header timeout
                sock.sendall(bytes([byte]))
                time.sleep(0.15)
            assert time.monotonic() - start > 1.5
            status, body = read_response(sock)
            assert status == 200, body
            assert "details" in json.loads(body)

            sock.sendall(post_head(server, len(SHOW)) + SHOW)  # keep-alive: the next one, at once
            assert read_response(sock)[0] == 200

            sock.sendall(HALF)  # and half of a third (which stops uvicorn's own keep-alive timer)
            assert closed_within(sock, 1 + SLACK), "a keep-alive connection held half-sent headers"


def test_a_body_slower_than_the_body_timeout_gets_408(scheduler, monkeypatch, http):
    with serving(scheduler, monkeypatch, http, BODY_TIMEOUT="1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(post_head(server, 200))
            start = time.monotonic()
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                for _ in range(200):  # a byte every 0.2 s, until the server answers
                    sock.sendall(b" ")
                    if selector.select(0.2):
                        break
            status, body = read_response(sock)
            took = time.monotonic() - start
    assert status == 408, body
    assert "took longer than 1s to arrive (IMGSCRIBE_BODY_TIMEOUT)" in json.loads(body)["error"]
    assert 0.8 < took < 1 + SLACK
