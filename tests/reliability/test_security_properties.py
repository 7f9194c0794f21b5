"""Property tests for the SSRF guards (issue 17, "security, kept"): every form of a loopback,
private, link-local or metadata address is refused, whatever way it is written and however it is
reached (an address in the URL, a name that resolves to it, a redirect, a remote model); bodies are
cut at the size and time limits however they are framed. Connections go to loopback servers these
tests start, standing in for public hosts through the fetcher's resolver seam. Then the logs: no
image data and no key in what ``imgscribe serve`` prints, nor in the DEBUG records of the app, and
the llama-server child on loopback with a key of its own."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscribe.config import settings as config_settings
from imgscribe.errors import Forbidden, ImageTooLarge, ImgscribeError, InvalidImage, InvalidRequest
from imgscribe.scheduler import Scheduler
from imgscribe.server.remotes import check_remote
from imgscribe.server.urls import MAX_REDIRECTS, METADATA, UrlFetcher, embedded_ipv4, refusal
from imgscribe.store import Store
from imgscribe.store.import_remote import manifest_for_remote

from server.conftest import noise_bytes

from .conftest import add_echo, error_message, live_server, serve_process

pytestmark = pytest.mark.timeout(180)

NOT_PUBLIC = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8")]  # fmt: skip


@st.composite
def inner(draw) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(NOT_PUBLIC))
    return net[draw(st.integers(0, net.num_addresses - 1))]


def forms(ip: ipaddress.IPv4Address) -> list[ipaddress._BaseAddress]:
    """The same IPv4 address as IPv6 carries it: mapped, 6to4, NAT64."""
    n = int(ip)
    return [ip, ipaddress.IPv6Address(f"::ffff:{ip}"), ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),
            ipaddress.IPv6Address((0x64FF9B << 96) | n)]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(inner())
def test_every_form_of_a_non_public_address_is_refused(ip):
    """Hypothesis over the non-public IPv4 ranges: the address and its IPv6 wrappings are refused."""
    for form in forms(ip):
        assert refusal(form, allow_private=False) is not None, form


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_an_address_is_allowed_only_when_it_and_what_it_carries_are_public(n):
    """Hypothesis over all of IPv4: the guard allows an address exactly when it is global unicast,
    and gives the same answer for its IPv4-mapped, 6to4 and NAT64 forms."""
    ip = ipaddress.IPv4Address(n)
    allowed = refusal(ip, allow_private=False) is None
    assert allowed == (ip.is_global and not ip.is_multicast)  # 224/4 counts as global in ipaddress
    assert all((refusal(form, allow_private=False) is None) == allowed for form in forms(ip))


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f000001", "017700000001",
                                  "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "169.254.169.254", "0251.0376.0251.0376",
                                  "2852039166", "[::]", "0"])  # fmt: skip
def test_numeric_spellings_of_loopback_and_metadata_are_refused(host):
    """Decimal, octal and hex IPv4 forms resolve (glibc's inet_aton) to the address they spell: the
    guard checks what they resolve to, so each is refused before any connection."""
    fetcher = UrlFetcher(enabled=True)
    with pytest.raises(ImgscribeError) as caught:
        fetcher.fetch(f"http://{host}/cat.png")
    message = str(caught.value)
    assert caught.value.status == 400 and "refusing to fetch" in message
    assert any(kind in message for kind in ("loopback", "private", "metadata")), message


def test_the_metadata_address_is_refused_even_with_private_addresses_allowed():
    """With IMGSCRIBE_ALLOW_PRIVATE_URLS on, 169.254.169.254 is still refused, however written."""
    fetcher = UrlFetcher(enabled=True, allow_private=True)
    for host in ("169.254.169.254", "[::ffff:169.254.169.254]", "2852039166"):
        with pytest.raises(ImgscribeError, match="metadata"):
            fetcher.fetch(f"http://{host}/latest/meta-data/")


# -- names that resolve inside, redirects, bodies (a loopback server stands in for the internet) --------

NON_PUBLIC_V6 = [ipaddress.ip_network(n) for n in ("::1/128", "fe80::/10", "fc00::/7", "ff00::/8", "::/128")]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "2001:4860:4860::8888"]
BOUNDED = settings(max_examples=60, deadline=None, database=None)


@st.composite
def inside_address(draw) -> str:
    """A non-public address as a resolver would answer it: IPv4, IPv4 inside IPv6, IPv6, metadata."""
    kind = draw(st.sampled_from(["v4", "wrapped", "v6", "metadata"]))
    if kind == "metadata":
        return str(draw(st.sampled_from(sorted(METADATA, key=str))))
    if kind == "v6":
        net = draw(st.sampled_from(NON_PUBLIC_V6))
        return str(net[draw(st.integers(0, min(net.num_addresses, 2**64) - 1))])
    ip = draw(inner())
    return str(draw(st.sampled_from(forms(ip)))) if kind == "wrapped" else str(ip)


@contextmanager
def no_connections() -> Iterator[list]:
    """Every outgoing connection attempt, recorded and failed (the guard must refuse before one)."""
    tried: list = []

    def refuse(address, *args, **kwargs):
        tried.append(address)
        raise OSError("connections are off in this test")

    with mock.patch.object(socket, "create_connection", refuse):
        yield tried


def test_a_name_resolving_to_any_inside_address_is_refused_before_connecting(tally):
    """Hypothesis: a host name whose resolver answer holds public addresses and at least one
    non-public one (any IPv4 range, IPv4 inside IPv6, IPv6 loopback/link-local/ULA/multicast, a
    metadata address), in any order, is refused with a 400 that names the host and not the
    addresses, and no connection is tried; the same answer with only the public addresses does try
    to connect (the control that shows the socket patch sees connections)."""

    @BOUNDED
    @given(st.lists(st.sampled_from(PUBLIC), max_size=3), st.lists(inside_address(), min_size=1, max_size=3),
           st.randoms(use_true_random=False))  # fmt: skip
    def check(public, inside, rnd):
        answer = public + inside
        rnd.shuffle(answer)
        fetcher = UrlFetcher(enabled=True, resolver=lambda host, port: answer)
        with no_connections() as tried, pytest.raises(InvalidRequest) as caught:
            fetcher.fetch("http://images.example.com/cat.png")
        message = str(caught.value)
        assert tried == [] and "refusing to fetch an image from images.example.com" in message
        assert not any(a in message for a in answer), message
        tally.add("refused before connecting")
        if public:
            with no_connections() as tried, pytest.raises(InvalidImage):
                UrlFetcher(enabled=True, resolver=lambda host, port: public).fetch("http://images.example.com/cat.png")
            assert tried and tried[0][0] == public[0]
            tally.add("public-only control connected")

    check()


def spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """Ways to write ``ip`` in a URL's host that the C resolver (inet_aton) or an IPv6 parser accept."""
    a, b, c, d = ip.packed
    n = int(ip)
    return [str(ip), str(n), hex(n), f"0{n:o}", f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"{hex(a)}.{b}.{c}.{d}",
            f"{a}.{(b << 16) | (c << 8) | d}", f"[::ffff:{ip}]", f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]"]  # fmt: skip


class FirstHopPublic(UrlFetcher):
    """``public.test`` stands for a public host (it is this test's server on 127.0.0.1); every other
    host, including whatever a redirect names, goes through the real guard."""

    def _check(self, host: str, port: int) -> str:
        return "127.0.0.1" if host == "public.test" else super()._check(host, port)


class Redirector(BaseHTTPRequestHandler):
    """``/to?u=URL`` answers ``STATUS`` with ``Location: URL``; ``/loop`` redirects to itself;
    ``/hop/N`` to ``/hop/N-1`` (``/hop/0`` is the image); it counts the requests it gets."""

    hits: list[str] = []
    status = 302

    def do_GET(self):  # noqa: N802
        Redirector.hits.append(self.path)
        if self.path.startswith("/to?u="):
            self._redirect(unquote(self.path.split("=", 1)[1]))
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path.startswith("/hop/") and self.path != "/hop/0":
            self._redirect(f"/hop/{int(self.path[5:]) - 1}")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"img")

    def _redirect(self, location: str) -> None:
        self.send_response(Redirector.status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving(handler, address: str = "127.0.0.1") -> Iterator[int]:
    httpd = ThreadingHTTPServer((address, 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_redirect_to_an_inside_address_in_any_spelling_is_refused_not_followed(tally):
    """Hypothesis over a non-public IPv4 address (loopback, RFC 1918, link-local/metadata, CGNAT,
    0/8), each of its spellings (dotted, decimal, hex, octal, mixed, IPv4-mapped IPv6), the redirect
    status (301, 302, 303, 307, 308) and the URL's form (absolute, scheme-relative, upper-case
    scheme, user info): a public host (the test's server) answering with that redirect gets a 400
    "refusing to fetch" (or, for spellings httpx cannot parse, "Invalid URL in location header"),
    the first hop is the only request made, and a server listening on
    127.0.0.2 (the target of the 127/8 cases) receives nothing. ``localhost`` and ``[::1]`` too."""
    with serving(Redirector) as port, serving(Redirector, "127.0.0.2") as inside_port:

        def attempt(target_host: str, form: str, status: int) -> None:
            Redirector.status, Redirector.hits = status, []
            location = form.format(host=target_host, port=inside_port)
            fetcher = FirstHopPublic(enabled=True, timeout=5)
            with pytest.raises(InvalidRequest) as caught:
                fetcher.fetch(f"http://public.test:{port}/to?u={quote(location, safe='')}")
            # refused by the guard, or (a spelling httpx cannot parse) an unreadable Location
            why = "guard" if "refusing to fetch an image from" in str(caught.value) else "bad Location"
            assert caught.value.status == 400 and (why == "guard" or "Invalid URL in location" in str(caught.value))
            assert Redirector.hits == [f"/to?u={quote(location, safe='')}"], (location, Redirector.hits)
            tally.add(f"redirect refused: {why}")

        forms_ = ["http://{host}:{port}/cat.png", "//{host}:{port}/x", "HTTP://{host}:{port}/",
                  "http://user:pw@{host}:{port}/", "https://{host}/latest/meta-data/"]  # fmt: skip

        @BOUNDED
        @given(inner() | st.sampled_from([ipaddress.IPv4Address("127.0.0.2"), ipaddress.IPv4Address("169.254.169.254")]),
               st.data(), st.sampled_from([301, 302, 303, 307, 308]), st.sampled_from(forms_))  # fmt: skip
        def check(ip, data, status, form):
            attempt(data.draw(st.sampled_from(spellings(ip))), form, status)

        check()
        for host in ("localhost", "[::1]", "127.0.0.2", "[::ffff:127.0.0.2]", "2130706434", "0x7f000002"):
            attempt(host, "http://{host}:{port}/cat.png", 302)
        # the control: the same redirect to the public host is followed
        Redirector.hits = []
        assert FirstHopPublic(enabled=True).fetch(f"http://public.test:{port}/to?u=/hop/0") == b"img"
        assert Redirector.hits == ["/to?u=/hop/0", "/hop/0"]


def test_redirect_loops_and_chains_are_bounded(tally):
    """A redirect to itself, and chains one longer than the limit, end after MAX_REDIRECTS + 1
    requests with "more than 5 redirects" (for every redirect status); a chain of exactly
    MAX_REDIRECTS hops is followed to the image."""
    with serving(Redirector) as port:
        fetcher = FirstHopPublic(enabled=True, timeout=10)
        for status in (301, 302, 303, 307, 308):
            for path in ("/loop", f"/hop/{MAX_REDIRECTS + 1}", "/hop/50"):
                Redirector.status, Redirector.hits = status, []
                with pytest.raises(InvalidImage, match=f"more than {MAX_REDIRECTS} redirects"):
                    fetcher.fetch(f"http://public.test:{port}{path}")
                assert len(Redirector.hits) == MAX_REDIRECTS + 1
                tally.add("bounded")
        Redirector.hits = []
        assert fetcher.fetch(f"http://public.test:{port}/hop/{MAX_REDIRECTS}") == b"img"
        assert len(Redirector.hits) == MAX_REDIRECTS + 1


class Bodies(BaseHTTPRequestHandler):
    """``/N/MODE``: N bytes, with a Content-Length (``length``), chunked (``chunked``) or ended by
    closing the connection (``close``); ``/lie``: declares 100 MB and sends nothing more;
    ``/endless``: chunks until the client goes away; ``/drip``: chunked, one byte a second."""

    protocol_version = "HTTP/1.1"
    sent: list[int] = []

    def do_GET(self):  # noqa: N802
        if self.path == "/lie":
            self._head({"Content-Length": str(100 * 2**20)})
            time.sleep(3)
        elif self.path in ("/endless", "/drip"):
            self._head({"Transfer-Encoding": "chunked"})
            size, every = (1, 1.0) if self.path == "/drip" else (16384, 0)
            total = 0
            with contextlib.suppress(OSError):
                for _ in range(200_000 if every == 0 else 30):
                    self.wfile.write(b"%x\r\n%s\r\n" % (size, b"x" * size))
                    self.wfile.flush()
                    total += size
                    time.sleep(every)
            Bodies.sent.append(total)
        else:
            _, n, mode = self.path.split("/")
            body = bytes(int(n))
            if mode == "length":
                self._head({"Content-Length": n})
                self.wfile.write(body)
            elif mode == "chunked":
                self._head({"Transfer-Encoding": "chunked"})
                for i in range(0, len(body), 1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.close_connection = True
                self._head({"Connection": "close"})
                self.wfile.write(body)

    def _head(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


LIMIT = 5000


def test_a_body_is_accepted_exactly_when_it_fits_the_limit_however_it_is_framed(tally):
    """Hypothesis over a body's size (0 to 3x the limit) and framing (Content-Length, chunked,
    ended by closing): the fetch returns the body when it is at most IMGSCRIBE_MAX_IMAGE_BYTES
    and is a 413 naming that setting when it is over; a server that declares 100 MB and then
    stalls is refused at once, from the header."""
    with serving(Bodies) as port:
        fetcher = UrlFetcher(enabled=True, allow_private=True, max_bytes=LIMIT, timeout=10)

        @BOUNDED
        @given(st.integers(0, 3 * LIMIT) | st.sampled_from([LIMIT, LIMIT + 1]),
               st.sampled_from(["length", "chunked", "close"]))  # fmt: skip
        def check(size, mode):
            url = f"http://127.0.0.1:{port}/{size}/{mode}"
            if size <= LIMIT:
                assert fetcher.fetch(url) == bytes(size)
                tally.add("within the limit: fetched")
            else:
                with pytest.raises(ImageTooLarge, match="IMGSCRIBE_MAX_IMAGE_BYTES") as caught:
                    fetcher.fetch(url)
                assert caught.value.status == 413
                tally.add(f"over the limit ({mode}): 413")

        check()
        start = time.monotonic()
        with pytest.raises(ImageTooLarge, match="104,857,600 bytes"):
            fetcher.fetch(f"http://127.0.0.1:{port}/lie")
        assert time.monotonic() - start < 1.5


def test_endless_and_dripping_bodies_are_cut_off(tally):
    """A chunked body without end is cut off once it passes the size limit (the server stops
    sending when the fetcher hangs up); a chunked body of one byte a second ends at
    IMGSCRIBE_URL_TIMEOUT (2 s here) with a sentence naming that setting, well before the body
    would end by itself (30 s)."""
    with serving(Bodies) as port:
        Bodies.sent = []
        start = time.monotonic()
        with pytest.raises(ImageTooLarge):
            UrlFetcher(enabled=True, allow_private=True, max_bytes=64 * 1024).fetch(f"http://127.0.0.1:{port}/endless")
        assert time.monotonic() - start < 5
        tally.add("endless body cut at the size limit")
        start = time.monotonic()
        with pytest.raises(InvalidImage, match=r"took longer than 2s \(IMGSCRIBE_URL_TIMEOUT\)"):
            fetcher_with_timeout(2).fetch(f"http://127.0.0.1:{port}/drip")
        elapsed = time.monotonic() - start
        assert elapsed < 2 + 1.5, elapsed
        tally.add("dripping body cut at the time limit")
        wait_until(lambda: len(Bodies.sent) == 2, 15)
        assert Bodies.sent[0] < 64 * 2**20, Bodies.sent  # the endless server was stopped, not drained


def fetcher_with_timeout(seconds: float) -> UrlFetcher:
    env = {"IMGSCRIBE_ALLOW_URLS": "1", "IMGSCRIBE_ALLOW_PRIVATE_URLS": "1", "IMGSCRIBE_URL_TIMEOUT": str(seconds)}
    return UrlFetcher.from_settings(config_settings(env))


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_oversized_and_slow_images_through_the_api_are_clear_4xx(monkeypatch, echo_store, tally):
    """/api/generate and /v1/chat/completions with an image URL (URLs and private addresses
    allowed, a 5000-byte limit, a 2 s URL timeout): an over-limit body is a 413 and a dripping one
    a 400 naming IMGSCRIBE_URL_TIMEOUT, each within the timeout plus slack, in the route's dialect."""
    for name, value in {"IMGSCRIBE_ALLOW_URLS": "1", "IMGSCRIBE_ALLOW_PRIVATE_URLS": "1",
                        "IMGSCRIBE_MAX_IMAGE_BYTES": str(LIMIT), "IMGSCRIBE_URL_TIMEOUT": "2"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    scheduler = Scheduler(echo_store, num_parallel=0)
    try:
        with serving(Bodies) as port, live_server(scheduler) as server:
            for path, status, words in ((f"/{3 * LIMIT}/chunked", 413, "IMGSCRIBE_MAX_IMAGE_BYTES"),
                                        ("/drip", 400, "IMGSCRIBE_URL_TIMEOUT")):  # fmt: skip
                url = f"http://127.0.0.1:{port}{path}"
                bodies = {"/api/generate": {"model": "llava", "prompt": "x", "images": [url], "stream": False},
                          "/v1/chat/completions": {"model": "llava", "messages": [{"role": "user", "content": [
                              {"type": "image_url", "image_url": {"url": url}}]}]}}  # fmt: skip
                for route, body in bodies.items():
                    start = time.monotonic()
                    r = httpx.post(server.url + route, json=body, timeout=30)
                    assert r.status_code == status, r.text
                    assert words in error_message(route, r) and time.monotonic() - start < 2 + 3
                    tally.add(f"{route} {status}")
    finally:
        scheduler.close()


# -- remotes: the same guard, and no redirects ----------------------------------------------------------


def test_an_allowed_remote_name_resolving_inside_is_refused(tally):
    """Hypothesis: a host under an allowed ``*.example.com`` entry whose resolver answer holds any
    non-public address (mixed with public ones or not) is a 403 that does not echo the addresses;
    an entry that names a private address itself lets that address through (the owner's choice)
    but never a metadata address; public-only answers pass."""

    @BOUNDED
    @given(st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True), st.lists(st.sampled_from(PUBLIC), max_size=2),
           inside_address())  # fmt: skip
    def check(label, public, inside):
        url = f"https://{label}.example.com:443"
        with pytest.raises(Forbidden, match="resolves to") as caught:
            check_remote(url, ["*.example.com"], resolver=lambda h, p: public + [inside])
        assert inside not in str(caught.value)
        tally.add("inside answer refused")
        if public:
            assert check_remote(url, ["*.example.com"], resolver=lambda h, p: public) == url
        wrapped = embedded_ipv4(ipaddress.ip_address(inside))
        named = f"http://[{inside}]:80" if ":" in inside else f"http://{inside}:80"
        entry = named.removeprefix("http://").removesuffix(":80")
        if wrapped in METADATA:
            with pytest.raises(Forbidden, match="metadata"):
                check_remote(named, [entry], resolver=lambda h, p: [inside])
            tally.add("metadata refused although named")
        else:
            assert check_remote(named, [entry], resolver=lambda h, p: [inside]) == named
            tally.add("named private address allowed")

    check()


class Upstream(BaseHTTPRequestHandler):
    """An Ollama stand-in whose every answer is a 302 to ``Upstream.location``; counts requests."""

    hits: list[str] = []
    location = ""

    def _answer(self) -> None:
        Upstream.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(302)
        self.send_header("Location", Upstream.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args) -> None:
        pass


def test_a_remote_never_reaches_inside_by_spelling_or_redirect(monkeypatch, echo_store, tally):
    """Over /api/create with ``IMGSCRIBE_REMOTES=*`` (any name allowed, no address named):
    every spelling of 127.0.0.1 for a listening upstream is a 403 and the upstream gets nothing.
    Then with the owner naming the upstream on 127.0.0.1 (allowed): its answers are 302s to a
    server on 127.0.0.2, which is not followed (create fails with a 4xx), nor at chat time by a
    remote model that points at it; the 127.0.0.2 server gets no request."""
    with serving(Upstream) as port, serving(Redirector, "127.0.0.2") as inside_port:
        Upstream.location, Upstream.hits = f"http://127.0.0.2:{inside_port}/api/version", []
        Redirector.hits = []
        scheduler = Scheduler(echo_store, num_parallel=0)
        try:
            monkeypatch.setenv("IMGSCRIBE_REMOTES", "*")
            with live_server(scheduler) as server:
                for host in spellings(ipaddress.IPv4Address("127.0.0.1")) + ["localhost", "[::1]"]:
                    r = httpx.post(server.url + "/api/create", timeout=30,
                                   json={"model": "far", "remote": f"http://{host}:{port}", "stream": False})
                    assert r.status_code == 403, (host, r.text)
                    tally.add("remote spelling refused")
            assert Upstream.hits == [] and not echo_store.exists("far")
            monkeypatch.setenv("IMGSCRIBE_REMOTES", f"http://127.0.0.1:{port}")
            with live_server(scheduler) as server:
                r = httpx.post(server.url + "/api/create", timeout=30,
                               json={"model": "far", "remote": f"http://127.0.0.1:{port}", "stream": False})
                assert 400 <= r.status_code < 500 and not echo_store.exists("far"), r.text
                assert Upstream.hits and Redirector.hits == []
                tally.add("create: redirect not followed")
                echo_store.create("far", manifest_for_remote("far", f"http://127.0.0.1:{port}", "m", "ollama", check=False))
                Upstream.location = f"http://127.0.0.2:{inside_port}/api/chat"
                r = httpx.post(server.url + "/api/chat", timeout=30, json={
                    "model": "far", "stream": False, "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code >= 400 and "error" in r.json(), r.text
                assert Redirector.hits == [] and "/api/chat" in Upstream.hits
                tally.add("chat: redirect not followed")
        finally:
            scheduler.close()
            echo_store.delete("far") if echo_store.exists("far") else None


# -- logs hold no image data and no keys -------------------------------------------------------------------

WINDOW = 24


def windows(text: str) -> set[str]:
    return {text[i:i + WINDOW] for i in range(max(0, len(text) - WINDOW + 1))}


class Remote(BaseHTTPRequestHandler):
    """An Ollama stand-in for remote models: ``boom`` answers 500, others one chat answer; it
    keeps the Authorization headers it gets."""

    auth: list[str] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        Remote.auth.append(self.headers.get("Authorization", ""))
        data, status = json.dumps({"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True,
                                   "done_reason": "stop", "eval_count": 1}).encode(), 200  # fmt: skip
        if body.get("model") == "boom":
            data, status = b'{"error": "upstream exploded"}', 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        data = b'{"version": "0.6.0"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class Leaky:
    """Requests that carry images and secrets, including failing ones, and what must not be logged."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.secrets = {name: f"{name}-{os.urandom(12).hex()}" for name in
                        ("server_key", "wrong_key", "remote_key", "create_key", "query", "url_query",
                         "url_password")}  # fmt: skip
        self.images = [noise_bytes((40, 40)) for _ in range(8)] + [os.urandom(3000) for _ in range(3)]
        self.b64 = [base64.b64encode(i).decode() for i in self.images]
        self.settings = {"debug": "1", "api_key": self.secrets["server_key"], "allow_urls": "1",
                         "allow_private_urls": "1", "remotes": upstream}  # fmt: skip

    def store(self, root) -> Store:
        store = Store(root)
        add_echo(store, "llava")
        for name in ("far", "boom"):
            store.create(name, manifest_for_remote(name, self.upstream, name, "ollama", check=False,
                                                   api_key=self.secrets["remote_key"]))  # fmt: skip
        return store

    def send(self, url: str, tally) -> list[int]:
        key, b64s = self.secrets["server_key"], self.b64
        auth, x_key = {"Authorization": f"Bearer {key}"}, {"x-api-key": key}
        uri = lambda i: "data:image/png;base64," + b64s[i]  # noqa: E731
        gen = lambda i, **kw: {"model": "llava", "prompt": "x", "images": [b64s[i]], "stream": False, **kw}  # noqa: E731
        chat = lambda m, i: {"model": m, "stream": False,  # noqa: E731
                             "messages": [{"role": "user", "content": "x", "images": [b64s[i]]}]}
        image_url = f"http://u:{self.secrets['url_password']}@127.0.0.1:9/x.png?key={self.secrets['url_query']}"
        sent = [
            ("/api/generate", gen(0), auth),
            ("/api/chat", chat("far", 1), auth),
            ("/v1/chat/completions", {"model": "llava", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": uri(2)}}]}]}, x_key),
            ("/v1/messages", {"model": "llava", "max_tokens": 8, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64s[3]}}]}]}, x_key),
            ("/api/generate", gen(8), auth),  # not an image
            ("/api/generate", gen(9, prompt=123), auth),  # a wrong type
            ("/api/generate", gen(4, model="nope"), auth),
            ("/api/chat", chat("boom", 5), auth),  # the remote answers 500
            ("/api/generate", gen(6), {"Authorization": f"Bearer {self.secrets['wrong_key']}"}),
            (f"/api/generate?key={self.secrets['query']}", gen(10, prompt=[]), auth),
            ("/v1/chat/completions", {"model": "llava", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_url}}]}]}, auth),
            ("/api/create", {"model": "made", "remote": self.upstream, "api_key": self.secrets["create_key"],
                             "stream": False}, auth),
        ]  # fmt: skip
        statuses = []
        for path, body, headers in sent:
            r = httpx.post(url + path, json=body, headers=headers, timeout=30)
            statuses.append(r.status_code)
            assert r.status_code != 500 or path == "/api/chat", (path, r.text)
            tally.add(f"{path.split('?')[0]}: {r.status_code}")
        truncated = b'{"model": "llava", "prompt": "x", "images": ["' + b64s[7].encode()
        r = httpx.post(url + "/api/generate", content=truncated, headers={**auth, "Content-Type": "application/json"})
        statuses.append(r.status_code)
        assert statuses[:4] == [200] * 4 and all(400 <= s < 600 for s in statuses[4:11]), statuses
        assert statuses[11] == 200 and statuses[12] == 400, statuses
        keys = {f"Bearer {self.secrets['remote_key']}", f"Bearer {self.secrets['create_key']}"}
        assert f"Bearer {self.secrets['remote_key']}" in Remote.auth and set(Remote.auth) <= keys, Remote.auth
        return statuses

    def assert_clean(self, text: str, where: str) -> None:
        logged = windows(text) | windows(text.lower())
        for i, (raw, encoded) in enumerate(zip(self.images, self.b64)):
            assert not windows(encoded) & logged, f"image {i}'s base64 is in the {where}"
            assert not windows(raw.hex()) & logged, f"image {i}'s bytes are in the {where} (hex)"
        for name, secret in self.secrets.items():
            assert secret not in text, f"the {name} is in the {where}"


def test_logs_hold_no_image_data_and_no_keys(tmp_path, cli_env, monkeypatch, caplog, tally):
    """``imgscribe serve`` (its own process, IMGSCRIBE_DEBUG=1, an API key, image URLs on) with an
    echo model and two remote models whose key is stored: requests carrying random-noise images as
    base64, data URIs and Anthropic blocks, the key as Bearer, x-api-key and a wrong one, a secret
    in a ``?key=`` query and in an image URL's query and user info, and failing requests (a bad
    image, a wrong type, a truncated body, a missing model, a remote answering 500, a create whose
    ``api_key`` is new). Afterwards the server's stdout/stderr hold no 24-character window of any
    image's base64 or its bytes' hex, and none of the keys or secrets; the remote got its key. The
    same requests to the app in this process, with every logger at DEBUG, leave none of it in the
    captured records either."""
    with serving(Remote) as port:
        leaky = Leaky(f"http://127.0.0.1:{port}")
        store = leaky.store(tmp_path / "models")
        log = tmp_path / "serve.log"
        Remote.auth = []
        with serve_process(store.root, cli_env, log, ready="/health", **leaky.settings) as (url, _):
            leaky.send(url, tally)
        text = log.read_text(errors="replace")
        assert "DEBUG:     imgscribe.server: listening on" in text, text[-2000:]  # imgscribe's own debug records too
        leaky.assert_clean(text, "serve log")
        tally.add(f"serve log lines checked: {len(text.splitlines())}")

        for name, value in leaky.settings.items():
            monkeypatch.setenv(f"IMGSCRIBE_{name.upper()}", value)
        store.delete("made")
        scheduler, main = Scheduler(store, num_parallel=0), threading.get_ident()
        try:
            with caplog.at_level(logging.DEBUG), live_server(scheduler) as server:
                Remote.auth = []
                leaky.send(server.url, tally)
        finally:
            scheduler.close()
        records = [r for r in caplog.records if r.thread != main]  # the server's, not this test's client
        logged = "\n".join(logging.Formatter("%(name)s %(message)s").format(r) for r in records)
        assert any(r.levelno == logging.DEBUG for r in records)
        leaky.assert_clean(logged, "debug log")
        tally.add(f"debug records checked: {len(records)}")


FAKE_LLAMA_SERVER = """#!{python}
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
key = os.environ.get("LLAMA_API_KEY", "")
with open({dump!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "key": key, "pid": os.getpid()}}) + "\\n")
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health" or self.headers.get("Authorization") == "Bearer " + key
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer((host, port), H).serve_forever()
"""


def test_the_llama_server_child_listens_on_loopback_with_its_own_key(tmp_path, caplog, tally):
    """Two llama-server children (a stand-in binary that records its command line and
    environment, then serves /health) started the way the engine starts them: each gets
    ``--host 127.0.0.1`` and a key of its own (32 hex digits, different per child) in
    LLAMA_API_KEY, never on its command line (``/proc/PID/cmdline``, visible to every user), and
    only the key opens its other routes; neither the child's log nor our log records (DEBUG)
    hold the key."""
    from imgscribe.engines.llamacpp.process import ServerProcess

    dump = tmp_path / "started.jsonl"
    binary = tmp_path / "llama-server"
    binary.write_text(FAKE_LLAMA_SERVER.format(python=sys.executable, dump=str(dump)))
    binary.chmod(0o755)
    children = [ServerProcess(binary, ["-m", "/models/x.gguf"], log_path=tmp_path / f"child{i}.log", ready_timeout=30)
                for i in range(2)]  # fmt: skip
    try:
        with caplog.at_level(logging.DEBUG):
            for child in children:
                child.start()
                tally.add("child started")
            started = [json.loads(line) for line in dump.read_text().splitlines()]
            for child, seen in zip(children, started):
                argv = seen["argv"]
                assert argv[argv.index("--host") + 1] == "127.0.0.1" and child.url.startswith("http://127.0.0.1:")
                assert seen["key"] == child.api_key and len(child.api_key) == 32 and int(child.api_key, 16) >= 0
                cmdline = open(f"/proc/{seen['pid']}/cmdline", "rb").read().decode()
                assert child.api_key not in cmdline and child.api_key not in " ".join(argv)
                assert httpx.get(child.url + "/props", trust_env=False).status_code == 401
                assert httpx.get(child.url + "/props", headers=child.headers, trust_env=False).status_code == 200
            assert children[0].api_key != children[1].api_key
    finally:
        for child in children:
            child.stop()
    logs = caplog.text + "".join(p.read_text() for p in tmp_path.glob("child*.log"))
    assert "--host 127.0.0.1" in logs  # the command line is logged, the key is not
    assert not any(child.api_key in logs for child in children)
