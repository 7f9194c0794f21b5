"""``imgscribe create NAME --remote URL`` asks the remote once, within one total time limit: a
remote that trickles bytes (each read in time, the whole never done) cannot hold it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from imgscribe.errors import InvalidRequest
from imgscribe.store import import_remote

pytestmark = pytest.mark.timeout(60)


@contextmanager
def trickling_remote() -> Iterator[str]:
    """On 127.0.0.1: reads a request, then sends a status line and a header a byte per 0.2 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def talk(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.2):
                    conn.sendall(b"X")
            except OSError:  # the client gave up
                pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=talk, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("api", [None, "ollama"])  # detecting the dialect; asking /api/show
def test_a_trickling_remote_cannot_hold_the_check(monkeypatch, api):
    monkeypatch.setattr(import_remote, "_TIMEOUT", 1.0)
    with trickling_remote() as url:
        start = time.monotonic()
        with pytest.raises(InvalidRequest, match=url):
            import_remote.manifest_for_remote("far", url, "m", api=api)
        assert time.monotonic() - start < 1 + 3
