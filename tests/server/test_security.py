"""Who may drive the server (docs/security.md): browser origins, the API key, what errors tell.

Each test sends the request a hostile web page or client sent when the finding was made, and checks
its effect, not only its status.
"""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest

from imgscribe.cli.serve import exposure_warning
from imgscribe.client import RemoteClient
from imgscribe.errors import EngineFailed
from imgscribe.server.security import ApiKeyCheck

from .conftest import b64, image_bytes, live_server

EVIL = "http://evil.com"
# A page's "simple" requests: text/plain bodies need no preflight, so the browser sends them as they are.
SIMPLE = {"Content-Type": "text/plain"}
DRIVE = [
    ("/api/create", {"model": "planted", "from": "llava"}),
    ("/api/copy", {"source": "llava", "destination": "planted"}),
    ("/api/pull", {"model": "planted"}),
    ("/api/generate", {"model": "llava", "prompt": "hi", "stream": False}),
    ("/api/chat", {"model": "llava", "messages": [{"role": "user", "content": "hi"}], "stream": False}),
    ("/v1/chat/completions", {"model": "llava", "messages": [{"role": "user", "content": "hi"}]}),
    ("/api/delete", {"model": "llava"}),
]


@pytest.mark.parametrize("origin", [EVIL, "null", "https://localhost.evil.com", "http://127.0.0.1.evil.com:80"])
@pytest.mark.parametrize("path, body", DRIVE, ids=[p for p, _ in DRIVE])
def test_a_web_page_cannot_drive_the_server(server, store, origin, path, body):
    method = "DELETE" if path == "/api/delete" else "POST"
    r = httpx.request(method, server.url + path, content=json.dumps(body), headers={**SIMPLE, "Origin": origin})
    assert r.status_code == 403
    error = r.json()["error"]
    message = error["message"] if path.startswith("/v1") else error
    assert "IMGSCRIBE_ORIGINS" in message
    assert not store.exists("planted") and store.exists("llava")
    assert server.scheduler.ps() == []  # nothing was loaded on the page's behalf


def test_a_refused_page_is_refused_before_its_body_is_read(server):
    """The 403 comes while the body is still on its way: a page cannot make the server read it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.com\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n{\"model\": ")  # fmt: skip
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443",
                                    "http://0.0.0.0:11434", "app://obsidian.md", "file://", "tauri://localhost",
                                    "vscode-webview://abc", "vscode-file://vscode-app"])  # fmt: skip
def test_this_machines_pages_and_apps_are_allowed(server, origin):
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "hi", "stream": False},
                   headers={"Origin": origin})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == origin


def test_origins_setting_allows_patterns(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_ORIGINS", "https://app.example.com, http://*.trusted.test")
    with live_server(scheduler) as live:
        for origin, status in [("https://app.example.com", 200), ("http://a.trusted.test", 200),
                               ("http://trusted.test.evil.com", 403), ("https://app.example.com.evil.com", 403)]:  # fmt: skip
            r = httpx.get(live.url + "/api/tags", headers={"Origin": origin})
            assert r.status_code == status, origin
        preflight = httpx.options(live.url + "/api/chat", headers={"Origin": "http://a.trusted.test",
                                                                    "Access-Control-Request-Method": "POST"})  # fmt: skip
        assert preflight.headers["access-control-allow-origin"] == "http://a.trusted.test"


def test_requests_without_an_origin_are_not_from_a_page(server):
    r = httpx.post(server.url + "/api/generate", content=json.dumps({"model": "llava", "prompt": "hi", "stream": False}))
    assert r.status_code == 200


# -- the API key ------------------------------------------------------------------------------------

KEY = "s3cret-key-0123456789"


@pytest.fixture
def keyed(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", KEY)
    with live_server(scheduler) as live:
        yield live


@pytest.mark.parametrize("path, body", DRIVE, ids=[p for p, _ in DRIVE])
def test_the_api_key_is_needed_on_every_route(keyed, store, path, body):
    method = "DELETE" if path == "/api/delete" else "POST"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"x-api-key": KEY[:-1]}):
        r = httpx.request(method, keyed.url + path, json=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert KEY not in r.text
    assert not store.exists("planted") and store.exists("llava")
    for get in ("/api/tags", "/api/ps", "/api/version", "/metrics", "/v1/models"):
        assert httpx.get(keyed.url + get).status_code == 401, get


def test_openai_routes_answer_401_in_their_dialect(keyed):
    r = httpx.get(keyed.url + "/v1/models")
    assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer  {KEY}"},
                                     {"x-api-key": KEY}, {"api-key": KEY}])  # fmt: skip
def test_the_key_in_the_forms_clients_send(keyed, headers):
    r = httpx.post(keyed.url + "/api/generate", json={"model": "llava", "prompt": "hi", "stream": False}, headers=headers)
    assert r.status_code == 200, r.text


def test_root_health_and_preflight_need_no_key(keyed):
    assert httpx.get(keyed.url + "/").status_code == 200
    assert httpx.get(keyed.url + "/health").status_code == 200
    preflight = httpx.options(keyed.url + "/api/chat", headers={"Origin": "http://localhost:3000",
                                                                "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert preflight.status_code == 200


def test_clients_with_the_key_work(keyed):
    import ollama
    import openai

    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    assert client.generate(model="llava", prompt="hi", images=[image_bytes()]).response.startswith("echo: hi")
    oa = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY)
    assert oa.chat.completions.create(model="llava", messages=[{"role": "user", "content": "hi"}]).choices
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope").models.list()


def test_the_cli_sends_the_key(keyed, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", KEY)
    assert "llava:latest" in [m.name for m in RemoteClient(keyed.url).list()]
    from imgscribe.errors import ImgscribeError

    with pytest.raises(ImgscribeError, match="unauthorized"):
        RemoteClient(keyed.url, api_key="wrong").list()


def test_the_key_is_never_logged(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    httpx.get(keyed.url + "/api/tags", headers={"Authorization": "Bearer wrong-" + KEY})
    httpx.get(keyed.url + "/api/tags", headers={"Authorization": f"Bearer {KEY}"})
    assert KEY not in caplog.text


def test_key_comparison_is_constant_time_by_construction():
    """hmac.compare_digest is what compares: a prefix of the key is no nearer than any other guess."""
    check = ApiKeyCheck(lambda *a: None, KEY)
    assert check.key == KEY.encode()
    import inspect

    assert "compare_digest" in inspect.getsource(ApiKeyCheck.__call__)


def test_serving_beyond_this_machine_without_a_key_warns():
    assert "IMGSCRIBE_API_KEY" in exposure_warning("0.0.0.0", "")
    assert "IMGSCRIBE_API_KEY" in exposure_warning("192.168.1.10", "")
    assert exposure_warning("0.0.0.0", KEY) is None
    for host in ("127.0.0.1", "::1", "localhost"):
        assert exposure_warning(host, "") is None


# -- what errors tell a client ------------------------------------------------------------------------


def _failing(err: BaseException):
    def chat(request, cancel=None):
        raise err

    return chat


def test_an_unexpected_error_tells_the_client_one_sentence(server, monkeypatch, caplog):
    monkeypatch.setattr(server.scheduler, "chat", _failing(AttributeError("'str' object has no attribute 'get'")))
    caplog.set_level(logging.INFO, logger="imgscribe.server")
    for path, body in [("/api/generate", {"model": "llava", "prompt": "x", "stream": False}),
                       ("/v1/chat/completions", {"model": "llava", "messages": [{"role": "user", "content": "x"}]})]:  # fmt: skip
        r = httpx.post(server.url + path, json=body)
        assert r.status_code == 500
        assert "internal error: the server failed to answer this request" in r.text
        assert "AttributeError" not in r.text and "attribute" not in r.text
    assert "AttributeError" in caplog.text and "Traceback" not in caplog.text  # the traceback is for debug level


def test_an_errors_details_stay_in_the_log(server, monkeypatch, caplog):
    err = EngineFailed("llama-server for 'llava' exited with code 1 while loading",
                       detail="log: /secret/place/server.log\nerror loading model")  # fmt: skip
    monkeypatch.setattr(server.scheduler, "chat", _failing(err))
    caplog.set_level(logging.DEBUG, logger="imgscribe.server")
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "x"})
    assert r.status_code == 500 and r.json() == {"error": "llama-server for 'llava' exited with code 1 while loading"}
    assert "/secret/place/server.log" in caplog.text  # the owner still finds it
    assert "/secret/place" in str(err)  # and so does a local CLI user, who prints str(err)


def test_an_image_in_a_request_is_still_read(server):
    """The checks above leave ordinary requests alone."""
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "what", "stream": False,
                                                       "images": [b64(image_bytes())]})  # fmt: skip
    assert r.status_code == 200 and "1 image(s)" in r.json()["response"]
