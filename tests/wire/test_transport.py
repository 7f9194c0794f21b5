"""The deadline client against slow peers on 127.0.0.1: trickled headers, a trickled body, silence,
a peer that never reads; each ends by the deadline with a clear error, and ``cancel`` stops it."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from imgscribe.errors import Cancelled
from imgscribe.testing.peers import peer, read_head, trickle
from imgscribe.wire.transport import DeadlineClient

pytestmark = pytest.mark.timeout(60)
SLACK = 1.5  # the machine is slow and shared: timing checks are coarse
trickle_headers = trickle(b"HTTP/1.1 200 OK\r\n", 0.2)  # a header that never ends, a byte at a time


def trickle_body(conn: socket.socket, stop: threading.Event) -> None:
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not stop.is_set():
        conn.sendall(b"x")
        time.sleep(0.2)


def flood_body(conn: socket.socket, stop: threading.Event) -> None:
    """Fast and endless: every read has data, only a total limit ends it."""
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    while not stop.is_set():
        conn.sendall(chunk)


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)  # accepts, then neither reads nor writes


def answer(conn: socket.socket, stop: threading.Event) -> None:
    while True:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(BaseException) as caught:
        call()
    return caught.value, time.monotonic() - start


@pytest.mark.parametrize("behave", [trickle_headers, trickle_body, flood_body, silent])
def test_a_slow_peer_ends_by_the_deadline(behave):
    def fetch(url: str) -> None:
        with DeadlineClient(1.0, timeout=None) as client:  # the deadline counts from here
            client.get(url).read()

    with peer(behave) as url:
        error, took = timed(lambda: fetch(url))
    assert isinstance(error, httpx.TimeoutException), repr(error)
    assert "total time limit of 1s" in str(error)
    assert 0.9 <= took < 1.0 + SLACK


def test_streaming_a_body_stops_at_the_deadline():
    """A body read piece by piece (as the URL fetcher reads one) is cut too."""
    with peer(trickle_body) as url, DeadlineClient(1.0, timeout=None) as client:
        start = time.monotonic()
        with client.stream("GET", url) as response, pytest.raises(httpx.ReadTimeout, match="total time limit"):
            for _ in response.iter_bytes():
                pass
        assert time.monotonic() - start < 1.0 + SLACK


def test_a_peer_that_never_reads_a_big_body_ends_by_the_deadline():
    with peer(silent) as url, DeadlineClient(1.0, timeout=None) as client:
        error, took = timed(lambda: client.post(url, content=b"x" * (64 << 20)))
    assert isinstance(error, httpx.WriteTimeout) and "total time limit" in str(error), repr(error)
    assert took < 1.0 + SLACK


@pytest.mark.parametrize("body", [None, b"x" * (64 << 20)])  # blocked reading; blocked writing
def test_cancel_stops_a_blocked_request_promptly(body):
    cancel = threading.Event()
    with peer(silent) as url, DeadlineClient(30, cancel=cancel, timeout=None) as client:
        timer = threading.Timer(0.5, cancel.set)  # from when the request starts
        timer.start()
        try:
            error, took = timed(lambda: client.request("POST", url, content=body))
        finally:
            timer.cancel()
    assert isinstance(error, Cancelled), repr(error)
    assert 0.4 <= took < 0.5 + SLACK


def test_the_operation_timeout_still_counts_across_slices():
    """With a cancel event reads wait in slices; httpx's read timeout is still one limit."""
    with peer(silent) as url, DeadlineClient(30, cancel=threading.Event(), timeout=0.6) as client:
        error, took = timed(lambda: client.get(url))
    assert isinstance(error, httpx.ReadTimeout) and "total time limit" not in str(error), repr(error)
    assert 0.5 <= took < 0.6 + SLACK


def test_a_prompt_peer_is_answered_and_restart_counts_again():
    with peer(answer) as url, DeadlineClient(1.0, cancel=threading.Event()) as client:
        assert client.get(url).text == "ok"
        time.sleep(1.1)
        with pytest.raises(httpx.TimeoutException, match="total time limit"):
            client.get(url)  # the deadline is the client's, not a request's
        client.deadline.restart()
        assert client.get(url).text == "ok"
    with peer(answer) as url, DeadlineClient(None) as client:  # no total at all
        assert client.get(url).text == "ok"


def test_a_connect_that_cannot_finish_ends_by_the_deadline():
    """A listener whose backlog is full: the handshake is never answered (on Linux, SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue; connects that no longer succeed are the test's
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
            fillers.append(s)
        url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        with DeadlineClient(1.0, timeout=None) as client:
            error, took = timed(lambda: client.get(url))
        assert isinstance(error, httpx.TimeoutException), repr(error)
        assert took < 1.0 + SLACK
    finally:
        for s in fillers:
            s.close()
        listener.close()


def digest_slowly(conn: socket.socket, stop: threading.Event) -> None:
    """Reads a body in small pieces, pausing (so the client's sends block and wait in slices),
    and answers with its SHA-256."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    digest = hashlib.sha256(body)
    while (length := length - len(body)) > 0:
        time.sleep(0.01)
        body = conn.recv(min(length, 65536))
        if not body:
            return
        digest.update(body)
    answer = digest.hexdigest().encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client one that trusts it."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


@pytest.mark.parametrize("over_tls", [False, True])
def test_a_big_body_to_a_slow_reader_arrives_whole(over_tls, request):
    """Sends that block wait in slices (there is a cancel event) and are tried again: nothing is
    lost or sent twice, in plain TCP or TLS."""
    server_context, client_context = request.getfixturevalue("tls") if over_tls else (None, True)
    body = os.urandom(6 << 20)
    with peer(digest_slowly, server_context) as url, \
            DeadlineClient(60, cancel=threading.Event(), verify=client_context, timeout=None) as client:  # fmt: skip
        assert client.post(url, content=body).text == hashlib.sha256(body).hexdigest()


def test_tls_peers_are_bounded_too(tls):
    server_context, client_context = tls
    with peer(trickle_headers, server_context) as url, DeadlineClient(1.0, verify=client_context, timeout=None) as client:
        error, took = timed(lambda: client.get(url))
    assert isinstance(error, httpx.ReadTimeout) and "total time limit" in str(error), repr(error)
    assert took < 1.0 + SLACK
    with peer(silent) as url, DeadlineClient(1.0, verify=client_context, timeout=None) as client:
        error, took = timed(lambda: client.get(url.replace("http:", "https:")))  # no TLS handshake at all
    assert isinstance(error, httpx.ConnectTimeout) and "total time limit" in str(error), repr(error)
    assert took < 1.0 + SLACK
