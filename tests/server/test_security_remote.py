"""Remote models over the API (server/remotes.py, docs/security.md): no server secret leaves, and
no host the owner did not list is contacted.

The upstream is a small Ollama stand-in on 127.0.0.1 that records every request it gets, so each
test checks what was (not) sent, not only the status.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from imgscribe.server.remotes import check_remote

from .conftest import live_server

SECRET = "hf_not-to-be-sent-0123456789"


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, show: object = None):
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.show = show if show is not None else {"capabilities": ["completion", "vision"],
                                                   "details": {"family": "llava"}}  # fmt: skip
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path, dict(self.headers)))
        self._answer({"version": "0.6.0"} if self.path == "/api/version" else {"error": "no"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append(("POST", self.path, dict(self.headers)))
        if self.path == "/api/show":
            self._answer(self.server.show)
        else:
            self._answer({"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True,
                          "done_reason": "stop", "eval_count": 1})  # fmt: skip


@contextmanager
def upstream(**kwargs) -> Iterator[Upstream]:
    server = Upstream(**kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def imgscribe(monkeypatch, scheduler, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with live_server(scheduler) as live:
        yield live


def create(live, **body) -> tuple[int, str]:
    r = httpx.post(live.url + "/api/create", json={"model": "far", "stream": False, **body}, timeout=30)
    return r.status_code, r.text


def test_a_client_cannot_send_a_server_secret_anywhere(monkeypatch, scheduler, store):
    """The finding: {"remote": attacker, "api_key_env": "HF_TOKEN"} sent the token to that host,
    and an unset name answered "not set". Now: a 403 before any contact, the same for set and unset
    variables, even with the host allowed."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with upstream() as up, imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=up.url) as live:
        answers = [create(live, remote=up.url, api_key_env=name) for name in ("HF_TOKEN", "NO_SUCH_VARIABLE_X")]
        assert [status for status, _ in answers] == [403, 403]
        assert answers[0][1] == answers[1][1] and "IMGSCRIBE_REMOTE_KEYS" in answers[0][1]
        assert up.seen == [] and not store.exists("far")


def test_by_default_no_remote_is_registered_over_the_api(server, store):
    with upstream() as up:
        status, text = create(server, remote=up.url)
        assert status == 403 and "IMGSCRIBE_REMOTES" in text
        assert up.seen == [] and not store.exists("far")


@pytest.mark.parametrize("remote", ["http://127.0.0.1:{port}", "http://[::ffff:127.0.0.1]:{port}",
                                    "http://2130706433:{port}", "http://169.254.169.254", "http://[::1]:{port}",
                                    "http://localhost:{port}", "http://0.0.0.0:{port}"])  # fmt: skip
def test_this_machine_and_metadata_are_not_reachable_through_a_remote(monkeypatch, scheduler, store, remote):
    with upstream() as up:
        port = up.server_address[1]
        # Even with an allow-list naming another host, none of these forms gets through.
        with imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES="api.example.com,*.example.org") as live:
            status, text = create(live, remote=remote.format(port=port))
        assert status == 403, text
        assert up.seen == [] and not store.exists("far")


def test_an_allowed_name_that_resolves_inside_is_refused():
    """An entry names a host; the addresses it resolves to still go through the SSRF guard."""
    inside = {"evil.example.com": ["127.0.0.1"], "meta.example.com": ["169.254.169.254"],
              "lan.example.com": ["192.168.1.20", "8.8.8.8"]}  # fmt: skip
    for host in inside:
        with pytest.raises(Exception, match="resolves to") as caught:
            check_remote(f"http://{host}:80", ["*.example.com"], resolver=lambda h, p: inside[h])
        assert caught.value.status == 403
        assert "127.0.0.1" not in str(caught.value) and "192.168" not in str(caught.value)
    assert check_remote("https://api.example.com:443", ["api.example.com"], resolver=lambda h, p: ["8.8.4.4"])


@pytest.mark.parametrize("url, entries, allowed", [
    ("https://api.example.com:443", ["api.example.com"], True),
    ("https://api.example.com:443/v1", ["api.example.com"], True),
    ("https://api.example.com:443/admin", ["api.example.com"], False),  # the path is not kept at will
    ("https://api.example.com:443/openai/v1", ["https://api.example.com/openai/v1"], True),
    ("http://api.example.com:80/openai/v1", ["https://api.example.com/openai/v1"], False),
    ("https://api.example.com:8443", ["api.example.com:443"], False),
    ("https://x.example.org:443", ["*.example.org"], True),
    ("https://example.org.evil.com:443", ["*.example.org"], False),
])  # fmt: skip
def test_allow_list_entries(url, entries, allowed):
    public = lambda host, port: ["8.8.8.8"]  # noqa: E731
    if allowed:
        assert check_remote(url, entries, resolver=public) == url
    else:
        with pytest.raises(Exception, match="IMGSCRIBE_REMOTES"):
            check_remote(url, entries, resolver=public)


def test_the_owner_may_allow_a_server_on_this_machine(monkeypatch, scheduler, store):
    """An entry that names a loopback address is the owner's explicit choice; its path stays fixed."""
    with upstream() as up, imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=up.url) as live:
        assert create(live, remote=up.url + "/some/other/path")[0] == 403
        status, text = create(live, remote=up.url)
        assert status == 200, text
        assert store.exists("far") and [p for _, p, _ in up.seen] == ["/api/version", "/api/show"]


def test_a_key_given_at_create_time_is_stored_privately_and_never_shown(monkeypatch, scheduler, store):
    with upstream() as up, imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=up.url) as live:
        assert create(live, remote=up.url, api_key=SECRET)[0] == 200
        assert all(headers.get("Authorization") == f"Bearer {SECRET}" for _, _, headers in up.seen)
        files = [p for p in store.root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert files, "the key is kept with the manifest"
        assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files), [oct(os.stat(p).st_mode) for p in files]
        for route, body in [("/api/show", {"model": "far"}), ("/api/tags", None)]:
            r = httpx.post(live.url + route, json=body) if body else httpx.get(live.url + route)
            assert r.status_code == 200 and SECRET not in r.text
        r = httpx.post(live.url + "/api/chat", json={"model": "far", "stream": False,
                                                     "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert up.seen[-1][1] == "/api/chat" and up.seen[-1][2].get("Authorization") == f"Bearer {SECRET}"


def test_a_variable_the_owner_listed_may_be_named(monkeypatch, scheduler):
    monkeypatch.setenv("UPSTREAM_KEY", SECRET)
    with upstream() as up, imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=up.url,
                                     IMGSCRIBE_REMOTE_KEYS="UPSTREAM_KEY") as live:  # fmt: skip
        status, text = create(live, remote=up.url, api_key_env="UPSTREAM_KEY")
        assert status == 200, text
        assert up.seen and all(h.get("Authorization") == f"Bearer {SECRET}" for _, _, h in up.seen)


def test_a_bad_answer_from_the_remote_is_a_sentence_naming_it(monkeypatch, scheduler, store):
    """The finding: a remote answering /api/show with a JSON string gave "AttributeError: 'str' object
    has no attribute 'get'"."""
    with upstream(show="just a string") as up, imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=up.url) as live:
        r = httpx.post(live.url + "/api/create", json={"model": "far", "remote": up.url})  # streamed
        lines = [json.loads(line) for line in r.text.splitlines()]
        error = lines[-1]["error"]
        assert up.url in error and "not a JSON object" in error
        assert "AttributeError" not in r.text and not store.exists("far")


def test_an_allowed_host_with_nothing_listening_says_only_that(monkeypatch, scheduler):
    with upstream() as up:
        url = up.url
    with imgscribe(monkeypatch, scheduler, IMGSCRIBE_REMOTES=url) as live:  # the upstream has gone
        r = httpx.post(live.url + "/api/create", json={"model": "far", "remote": url})
        error = json.loads(r.text.splitlines()[-1])["error"]
        assert error.startswith("no Ollama or OpenAI-compatible server answers at") and "Errno" not in error
