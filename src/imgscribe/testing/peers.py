"""Misbehaving peers on 127.0.0.1 for tests of slow or broken networks: a server that runs a
function for each connection (trickle bytes, stay silent, die mid-answer), stopped on exit."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: what a peer does with each connection; ``stop`` is set when the peer shuts down
Behaviour = Callable[[socket.socket, threading.Event], None]


@contextmanager
def peer(behave: Behaviour, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A server on 127.0.0.1 that runs ``behave(connection, stop)`` for each connection, on a
    thread of its own (over TLS with the ``tls`` server context); its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                if tls is not None:
                    conn = tls.wrap_socket(conn, server_side=True)
                behave(conn, stop)
            except OSError:  # the client gave up: what these tests make it do
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:  # a look at ``stop`` every 0.1 s
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def read_head(conn: socket.socket) -> bytes:
    """A request's head (up to the blank line), and whatever of its body came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            raise ConnectionError("closed")
        data += part
    return data


def trickle(head: bytes, every: float) -> Behaviour:
    """Read a request, send ``head``, then one more byte (``X``) every ``every`` seconds: a header
    or a body that never ends, each read in time."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        read_head(conn)
        conn.sendall(head)
        while not stop.wait(every):
            conn.sendall(b"X")

    return behave
