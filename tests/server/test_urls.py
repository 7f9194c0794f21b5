"""Image URLs: off by default; when on, guarded against SSRF on every hop, with size and time limits."""

from __future__ import annotations

import base64
import ipaddress
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from imgscribe.config import settings
from imgscribe.errors import ImageTooLarge, InvalidImage, InvalidRequest
from imgscribe.scheduler import Scheduler
from imgscribe.server.urls import UrlFetcher, refusal
from imgscribe.testing.peers import peer, trickle

from .conftest import image_bytes, live_server

pytestmark = pytest.mark.timeout(30)
PNG = image_bytes((32, 16))


class Handler(BaseHTTPRequestHandler):
    """/cat.png, /big (20 kB, no length), /slow, /dawdle/N, /redirect?to=URL, /missing (404)."""

    seen_hosts: list[str] = []

    def do_GET(self):  # noqa: N802
        Handler.seen_hosts.append(self.headers["Host"])
        if self.path == "/cat.png":
            self._send(200, PNG, {"Content-Type": "image/png", "Content-Length": str(len(PNG))})
        elif self.path == "/big":
            self._send(200, b"x" * 20_000, {})
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, PNG, {"Content-Length": str(len(PNG))})
        elif self.path.startswith("/dawdle/"):  # /dawdle/N: 0.4 s, then a redirect to /dawdle/N-1
            hops = int(self.path.rsplit("/", 1)[1])
            time.sleep(0.4)
            self._send(302, b"", {"Location": f"/dawdle/{hops - 1}" if hops > 1 else "/cat.png", "Content-Length": "0"})
        elif self.path.startswith("/redirect?to="):
            self._send(302, b"", {"Location": self.path.split("=", 1)[1], "Content-Length": "0"})
        else:
            self._send(404, b"no", {"Content-Length": "2"})

    def _send(self, status: int, body: bytes, headers: dict) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (the time and size limits under test) is expected: no traceback
        on stderr, which pytest shows between tests. Anything else is still printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def image_host(address: str = "127.0.0.1") -> Iterator[str]:
    httpd = QuietServer((address, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("address", "allowed", "allowed_with_private"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("10.1.2.3", False, True),
        ("192.168.0.10", False, True),
        ("100.64.0.1", False, True),  # shared address space (CGNAT)
        ("::1", False, True),
        ("fe80::1", False, True),
        ("::ffff:127.0.0.1", False, True),  # IPv4-mapped
        ("2002:7f00:1::", False, True),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", False, True),  # NAT64 around 10.0.0.1
        ("0.0.0.0", False, True),
        ("169.254.169.254", False, False),  # cloud metadata: never
        ("fd00:ec2::254", False, False),
    ],
)
def test_address_policy(address, allowed, allowed_with_private):
    ip = ipaddress.ip_address(address)
    assert (refusal(ip, allow_private=False) is None) is allowed
    assert (refusal(ip, allow_private=True) is None) is allowed_with_private


def test_off_unless_enabled():
    with pytest.raises(InvalidRequest, match="IMGSCRIBE_ALLOW_URLS=1"):
        UrlFetcher(enabled=False).fetch("https://example.com/cat.png")


def test_loopback_refused_unless_private_allowed():
    with image_host() as base:
        with pytest.raises(InvalidRequest, match="127.0.0.1 is a loopback address.*IMGSCRIBE_ALLOW_PRIVATE_URLS"):
            UrlFetcher(enabled=True).fetch(base + "/cat.png")
        assert UrlFetcher(enabled=True, allow_private=True).fetch(base + "/cat.png") == PNG


def test_schemes_other_than_http_are_refused():
    fetcher = UrlFetcher(enabled=True, allow_private=True)
    for url in ("file:///etc/passwd", "ftp://example.com/x.png", "gopher://127.0.0.1/"):
        with pytest.raises(InvalidRequest, match="only http and https"):
            fetcher.fetch(url)


class OnlyFirstLoopback(UrlFetcher):
    """Treats 127.0.0.1 as if it were public, every other address as usual."""

    def refusal(self, ip):
        return None if str(ip) == "127.0.0.1" else super().refusal(ip)


def test_every_redirect_is_checked_again():
    with image_host() as allowed, image_host("127.0.0.2") as forbidden:
        fetcher = OnlyFirstLoopback(enabled=True)
        assert fetcher.fetch(f"{allowed}/redirect?to={allowed}/cat.png") == PNG
        with pytest.raises(InvalidRequest, match="127.0.0.2 is a loopback address"):
            fetcher.fetch(f"{allowed}/redirect?to={forbidden}/cat.png")
        with pytest.raises(InvalidImage, match="more than 5 redirects"):
            fetcher.fetch(
                f"{allowed}/redirect?to=/redirect?to=/redirect?to=/redirect?to=/redirect?to=/redirect?to=/cat.png"
            )


def test_connects_to_the_checked_address_keeping_the_name():
    """The name is resolved once, by the guard; the connection uses that address, Host keeps the name."""
    with image_host() as base:
        port = base.rsplit(":", 1)[1]
        fetcher = UrlFetcher(enabled=True, allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
        Handler.seen_hosts.clear()
        assert fetcher.fetch(f"http://images.invalid:{port}/cat.png") == PNG
        assert Handler.seen_hosts == [f"images.invalid:{port}"]


def test_a_name_with_any_private_address_is_refused():
    fetcher = UrlFetcher(enabled=True, resolver=lambda host, port: ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(InvalidRequest, match="mixed.invalid: it resolves to a private address") as caught:
        fetcher.fetch("http://mixed.invalid/cat.png")
    assert "10.0.0.1" not in str(caught.value)


def test_size_time_and_status_limits():
    with image_host() as base:
        with pytest.raises(ImageTooLarge, match="IMGSCRIBE_MAX_IMAGE_BYTES"):
            UrlFetcher(enabled=True, allow_private=True, max_bytes=10_000).fetch(base + "/big")
        with pytest.raises(ImageTooLarge):
            UrlFetcher(enabled=True, allow_private=True, max_bytes=len(PNG) - 1).fetch(base + "/cat.png")
        with pytest.raises(InvalidImage, match="IMGSCRIBE_URL_TIMEOUT"):
            UrlFetcher(enabled=True, allow_private=True, timeout=0.3).fetch(base + "/slow")
        with pytest.raises(InvalidImage, match="HTTP 404"):
            UrlFetcher(enabled=True, allow_private=True).fetch(base + "/missing")


@pytest.mark.parametrize("private", [False, True])
def test_image_urls_through_the_server(store, monkeypatch, private):
    monkeypatch.setenv("IMGSCRIBE_ALLOW_URLS", "1")
    monkeypatch.setenv("IMGSCRIBE_ALLOW_PRIVATE_URLS", "1" if private else "0")
    scheduler = Scheduler(store)
    try:
        with image_host() as base, live_server(scheduler) as server:
            content = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": base + "/cat.png"}}]
            body = {"model": "llava", "messages": [{"role": "user", "content": content}]}
            r = httpx.post(server.url + "/v1/chat/completions", json=body)
            ollama = httpx.post(
                server.url + "/api/generate",
                json={"model": "llava", "prompt": "what", "images": [base + "/cat.png"], "stream": False},
            )
            if private:
                assert r.status_code == 200 and "1 image(s): 32x16" in r.json()["choices"][0]["message"]["content"]
                assert ollama.status_code == 200 and "1 image(s): 32x16" in ollama.json()["response"]
            else:
                assert r.status_code == 400 and "loopback" in r.json()["error"]["message"]
                assert ollama.status_code == 400 and "loopback" in ollama.json()["error"]
    finally:
        scheduler.close()


def test_data_uri_of_any_supported_format(server):
    gif = base64.b64encode(image_bytes((8, 8), format="GIF")).decode()
    content = [{"type": "image_url", "image_url": f"data:image/gif;base64,{gif}"}]
    r = httpx.post(
        server.url + "/v1/chat/completions", json={"model": "llava", "messages": [{"role": "user", "content": content}]}
    )
    assert r.status_code == 200 and "1 image(s): 8x8" in r.json()["choices"][0]["message"]["content"]


@contextmanager
def trickler(head: bytes, every: float) -> Iterator[str]:
    """A server on 127.0.0.1 that reads a request, sends ``head``, then one more byte every
    ``every`` seconds (``X``: a header, or a body, that never ends)."""
    with peer(trickle(head, every)) as url:
        yield url + "/cat.png"


def fetcher_with(timeout: str) -> UrlFetcher:
    env = {"IMGSCRIBE_ALLOW_URLS": "1", "IMGSCRIBE_ALLOW_PRIVATE_URLS": "1", "IMGSCRIBE_URL_TIMEOUT": timeout}
    return UrlFetcher.from_settings(settings(env))


@pytest.mark.parametrize(
    ("head", "every"),
    [
        (b"HTTP/1.1 200 OK\r\n", 1.0),  # header bytes, one a second: each read gets one in time
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 0.2),  # the body, a byte at a time
    ],
)
def test_a_trickling_server_is_cut_at_the_url_timeout(head, every):
    """IMGSCRIBE_URL_TIMEOUT bounds the whole fetch, not each read: a server that keeps sending
    a little could otherwise hold it for as long as it likes."""
    with trickler(head, every) as url:
        start = time.monotonic()
        with pytest.raises(InvalidImage, match=r"took longer than 2s \(IMGSCRIBE_URL_TIMEOUT\)"):
            fetcher_with("2").fetch(url)
        assert time.monotonic() - start < 2 + 3


def test_the_url_timeout_spans_every_redirect():
    """Five hops of 0.4 s each: under the limit one by one, over it together."""
    with image_host() as base:
        start = time.monotonic()
        with pytest.raises(InvalidImage, match="IMGSCRIBE_URL_TIMEOUT"):
            fetcher_with("1").fetch(base + "/dawdle/5")
        assert time.monotonic() - start < 1 + 3
        assert fetcher_with("10").fetch(base + "/dawdle/5") == PNG


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.20.30.40", "a private address"),
        ("fe80::1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("::ffff:192.168.7.7", "a private address"),
    ],
)
def test_refusals_name_the_host_but_not_what_it_resolved_to(answer, why, caplog):
    """What a name resolves to is this server's DNS talking: a client could map the network
    behind it. The message says which host and why; the address goes to the debug log only."""
    fetcher = UrlFetcher(enabled=True, resolver=lambda host, port: ["93.184.216.34", answer])
    with caplog.at_level(logging.DEBUG, logger="imgscribe.server"), pytest.raises(InvalidRequest) as caught:
        fetcher.fetch("http://inside.invalid/cat.png")
    message = str(caught.value)
    assert f"inside.invalid: it resolves to {why}" in message
    assert answer not in message and "93.184.216.34" not in message
    assert answer in caplog.text


def test_an_address_in_the_url_is_named_as_given():
    with pytest.raises(InvalidRequest, match=r"from 10.1.2.3: 10.1.2.3 is a private address"):
        UrlFetcher(enabled=True).fetch("http://10.1.2.3/cat.png")
