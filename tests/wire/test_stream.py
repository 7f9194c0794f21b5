"""StreamedPost, the one streamed request of every model-server client: lines, NDJSON and SSE;
a cancel cuts it mid-answer at once; a peer that dies or is not there is a ConnectionError."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from imgscribe.errors import Cancelled
from imgscribe.testing import peers
from imgscribe.testing.peers import read_head
from imgscribe.wire.transport import SLICE, StreamedPost

pytestmark = pytest.mark.timeout(60)


@contextmanager
def peer(behave: Callable[[socket.socket], None]) -> Iterator[str]:
    """A peer that reads one POST of ``{"q": 1}`` whole, then does ``behave(conn)``."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        head, _, rest = read_head(conn).partition(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += conn.recv(65536)
        if json.loads(rest) == {"q": 1}:
            behave(conn)

    with peers.peer(answer) as url:
        yield url + "/x"


def chunked(conn: socket.socket, status: str, *pieces: bytes, then: Callable[[], None] = lambda: None) -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for piece in pieces:
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    then()


def test_ndjson_and_sse_lines():
    def ndjson(conn: socket.socket) -> None:
        chunked(conn, "200 OK", b'{"a":1}\n\n{"a"', b':2}\n', then=lambda: conn.sendall(b"0\r\n\r\n"))

    with peer(ndjson) as url, StreamedPost(url, {"q": 1}) as post:
        assert post.status == 200 and list(post.ndjson()) == [{"a": 1}, {"a": 2}]

    def events(conn: socket.socket) -> None:
        chunked(conn, "200 OK", b": ping\r\n\r\ndata: {\"b\":1}\r\n\r\n", b"data: [DONE]\n\n",
                then=lambda: conn.sendall(b"0\r\n\r\n"))  # fmt: skip

    with peer(events) as url, StreamedPost(url, {"q": 1}) as post:
        assert list(post.sse()) == [{"b": 1}]


def test_an_error_answer_has_its_message():
    def refuse(conn: socket.socket) -> None:
        body = b'{"error":{"message":"the prompt is too long"}}'
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with peer(refuse) as url, StreamedPost(url, {"q": 1}) as post:
        assert post.status == 400 and post.error_text() == "the prompt is too long"


def test_cancel_cuts_a_silent_answer_at_once():
    """The server has sent a piece and thinks: setting cancel from another thread ends the read."""
    gone = threading.Event()

    def think(conn: socket.socket) -> None:
        chunked(conn, "200 OK", b'data: {"content":"a"}\n\n')
        conn.settimeout(20)
        try:
            while conn.recv(1):  # until the client closes
                pass
        finally:
            gone.set()

    cancel = threading.Event()
    with peer(think) as url, StreamedPost(url, {"q": 1}, cancel) as post:
        events = post.sse()
        assert next(events) == {"content": "a"}
        threading.Timer(0.3, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(Cancelled):
            next(events)
        assert time.monotonic() - start < 0.3 + SLICE + 1.0
    assert gone.wait(5), "the server did not see the client go"


def test_a_peer_that_dies_mid_answer_is_a_connection_error():
    def die(conn: socket.socket) -> None:
        chunked(conn, "200 OK", b'data: {"content":"a"}\n\n')
        conn.shutdown(socket.SHUT_RDWR)

    with peer(die) as url, StreamedPost(url, {"q": 1}) as post, pytest.raises(ConnectionError):
        list(post.sse())


def test_no_server_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectionError):
            StreamedPost(f"http://127.0.0.1:{port}/x", {"q": 1}).open()
    with pytest.raises(ConnectionError, match="use http"):
        StreamedPost("ftp://127.0.0.1/x", {"q": 1}).open()


def test_a_set_cancel_sends_nothing():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        StreamedPost("http://127.0.0.1:9/x", {"q": 1}, cancel).open()
