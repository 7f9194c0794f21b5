"""Bad input over HTTP: always a clear 4xx in the route's dialect, never a 500, a hang or a dropped
connection, and nothing already done is lost.

Ollama's routes answer ``{"error": "..."}``; the OpenAI routes ``{"error": {"message", "type", ...}}``.
Each case checks the status, the shape, and that the message names what is wrong.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from .conftest import LiveServer, add_echo, b64, image_bytes, live_server

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": "llava", "messages": [{"role": "user", "content": "hi"}], "stream": False}
GENERATE = {"model": "llava", "prompt": "hi", "stream": False}
V1 = {"model": "llava", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveServer]:
    """One server for the tables of stateless cases below."""
    store = Store(tmp_path_factory.mktemp("bad-input") / "models")
    add_echo(store, "llava")
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as server:
        yield server
    scheduler.close()


def ollama_error(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    return body["error"]


def openai_error(response: httpx.Response, status: int = 400, kind: str = "invalid_request_error") -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and {"message", "param", "code"} <= set(error)
    return error["message"]


def error_of(path: str, response: httpx.Response, status: int = 400) -> str:
    return openai_error(response, status) if path.startswith("/v1") else ollama_error(response, status)


# -- bodies that are not the JSON they should be ------------------------------------------------------

ROUTES = ["/api/generate", "/api/chat", "/api/show", "/api/create", "/api/pull", "/api/embed",
          "/v1/chat/completions"]  # fmt: skip
RAW_SURROGATE = '{"model": "llava", "prompt": "\udcff"}'.encode("utf-8", "surrogatepass")
BODIES = [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested more than 64 levels", id="deep-array"),
    pytest.param(b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested more than 64 levels", id="deep-object"),
    pytest.param(b'{"model": "llava", "x": NaN}', "NaN is not a JSON value", id="nan"),
    pytest.param(b'{"model": "llava", "x": -Infinity}', "-Infinity is not a JSON value", id="infinity"),
    pytest.param(b'{"model": "llava", "x": 1e400}', "too large for a 64-bit float", id="float-overflow"),
    pytest.param(b'{"x": ' + b"9" * 5_000 + b"}", "too many digits", id="huge-integer"),
    pytest.param(b"\xff\xfe\x00garbage", "not UTF-8 (byte 0xff at position 0)", id="not-utf8"),
    pytest.param(RAW_SURROGATE, "not UTF-8", id="raw-surrogate"),
    pytest.param(b"5", "must be a JSON object, not a number", id="number"),
    pytest.param(b"null", "must be a JSON object, not null", id="null"),
]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(("raw", "message"), BODIES)
def test_malformed_bodies_are_a_400(live, path, raw, message):
    with httpx.Client(base_url=live.url, timeout=10) as client:
        response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert message in error_of(path, response)
        assert client.get("/api/version").status_code == 200, "the connection survives"


def test_escaped_lone_surrogate_becomes_a_replacement_character(live):
    """As Go's decoder (so Ollama) reads it: U+FFFD, not an error half-way through the stream."""
    raw = b'{"model": "llava", "prompt": "a\\ud800b", "stream": true}'
    response = httpx.post(live.url + "/api/generate", content=raw)
    assert response.status_code == 200
    objects = [json.loads(line) for line in response.text.splitlines()]
    assert all("error" not in o for o in objects) and objects[-1]["done"]
    assert "a\ufffdb" in "".join(o["response"] for o in objects)


# -- fields of the wrong type or out of range ---------------------------------------------------------

FIELDS = [
    # Ollama's routes: types are strict, as Go's decoder is.
    ("/api/generate", {**GENERATE, "stream": "yes"}, "stream: Input should be a valid boolean, got a string"),
    ("/api/generate", {**GENERATE, "stream": 1}, "stream: Input should be a valid boolean, got 1"),
    ("/api/pull", {"model": "x", "insecure": "yes"}, "insecure: Input should be a valid boolean"),
    ("/api/generate", {**GENERATE, "context": [1.5]}, "context[0]: Input should be a valid integer, got 1.5"),
    ("/api/generate", {**GENERATE, "images": [{"url": "x"}]}, "images[0]: Input should be a valid string, got an object"),
    ("/api/chat", {**CHAT, "messages": [1]}, "messages[0]: Input should be an object, got 1"),
    ("/api/chat", {**CHAT, "messages": {"role": "user"}}, "messages: Input should be an array, got an object"),
    ("/api/generate", {**GENERATE, "options": {"temperature": True}}, 'option "temperature" must be of type float, got a boolean'),
    ("/api/generate", {**GENERATE, "options": {"num_predict": "5"}}, 'option "num_predict" must be of type integer, got a string'),
    ("/api/generate", {**GENERATE, "options": {"seed": 10**30}}, 'option "seed" is out of range'),
    ("/api/generate", {**GENERATE, "options": {"temperature": 10**400}}, 'option "temperature" is out of range'),
    ("/api/chat", {**CHAT, "options": [1]}, "options must be a JSON object, not an array"),
    # values outside their meaning, refused before an engine trips on them
    ("/api/generate", {**GENERATE, "options": {"temperature": -1}}, 'option "temperature": Input should be greater than or equal to 0, got -1'),
    ("/api/chat", {**CHAT, "options": {"top_p": 2}}, 'option "top_p": Input should be less than or equal to 1, got 2'),
    ("/api/chat", {**CHAT, "options": {"num_predict": -3}}, 'option "num_predict": Input should be greater than or equal to -2'),
    ("/api/chat", {**CHAT, "options": {"repeat_penalty": 0}}, 'option "repeat_penalty": Input should be greater than 0'),
    ("/api/generate", {**GENERATE, "keep_alive": "nan"}, "keep_alive: invalid duration 'nan'"),
    ("/api/generate", {**GENERATE, "images": ["file:///etc/passwd"]}, "images[0]: file: URLs are not accepted"),
    ("/api/chat", {**CHAT, "messages": [{"role": "user", "content": "x", "images": ["javascript:alert(1)"]}]},
     "messages[0].images[0]: javascript: URLs are not accepted"),
    # OpenAI's route: its own limits, and places written as in the request, not pydantic's.
    ("/v1/chat/completions", {"model": "llava"}, "Missing required parameter: 'messages'"),
    ("/v1/chat/completions", {**V1, "stream": "yes"}, "stream: Input should be a valid boolean, got a string"),
    ("/v1/chat/completions", {**V1, "max_tokens": 0}, "Invalid 'max_tokens': integer below minimum value"),
    ("/v1/chat/completions", {**V1, "max_completion_tokens": -5}, "Invalid 'max_completion_tokens'"),
    ("/v1/chat/completions", {**V1, "max_tokens": 10**30}, "max_tokens is out of range"),
    ("/v1/chat/completions", {**V1, "seed": 10**30}, "seed is out of range"),
    ("/v1/chat/completions", {**V1, "n": 3}, "n: 3 choices were asked for"),
    ("/v1/chat/completions", {**V1, "temperature": -0.5}, 'option "temperature": Input should be greater than or equal to 0'),
    ("/v1/chat/completions", {**V1, "top_p": 1.5}, 'option "top_p": Input should be less than or equal to 1'),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "user"}]}, "Missing required parameter: 'messages[0].content'"),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "user", "content": 5}]},
     "messages[0].content: Input should be a valid string or an array, got 5"),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "Missing required parameter: 'messages[0].content[0].text'"),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url: Input should be a valid string, got 5"),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x"}}]}]},
     "messages[0].content[0].image_url: file: URLs are not accepted"),
    ("/v1/chat/completions", {**V1, "messages": [{"role": "wizard", "content": "x"}]},
     "messages[0].role: invalid role 'wizard': use system, developer, user, assistant or tool"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "message"), FIELDS, ids=[f"{p}:{m[:40]}" for p, _, m in FIELDS])
def test_wrong_fields_are_a_400_that_names_them(live, path, body, message):
    response = httpx.post(live.url + path, json=body, timeout=10)
    assert message in error_of(path, response)


def test_null_stream_is_the_default_on_v1(live):
    response = httpx.post(live.url + "/v1/chat/completions", json={**V1, "stream": None}, timeout=10)
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"


def test_a_huge_keep_alive_is_forever_and_keep_alive_still_works(server):
    """Past threading's TIMEOUT_MAX the keep-alive thread died of an OverflowError: from then on
    no model was ever unloaded."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/api/generate", json={"model": "llava", "keep_alive": 10**30}).status_code == 200
        assert client.post("/api/generate", json={"model": "echo-test", "keep_alive": "0.2s"}).status_code == 200
        rows = {m["name"]: m["expires_at"] for m in client.get("/api/ps").json()["models"]}
        assert int(rows["llava:latest"][:4]) > 2200, "kept forever (as Ollama: now + Go's largest duration)"
        deadline = time.monotonic() + 5
        while "echo-test:latest" in rows and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = {m["name"] for m in client.get("/api/ps").json()["models"]}
        assert rows == {"llava:latest"}


# -- create: checked before the stream starts ---------------------------------------------------------

CREATES = [
    ({"model": "../../y", "from": "llava"}, "invalid model name '../../y'"),
    ({"model": "a:b:c", "from": "llava"}, "invalid model name 'a:b:c'"),
    ({"model": "hot", "from": "llava", "parameters": {"temperature": "hot"}}, 'parameters: option "temperature" must be of type float'),
    ({"model": "big", "from": "llava", "parameters": {"num_ctx": "big"}}, 'parameters: option "num_ctx" must be of type integer'),
    ({"model": "cold", "from": "llava", "parameters": {"temperature": -1}}, 'parameters: option "temperature": Input should be greater than or equal to 0'),
    ({"model": "x", "remote": "file:///etc"}, "invalid remote URL 'file:///etc': unsupported scheme 'file' (use http or https)"),
]


@pytest.mark.parametrize(("body", "message"), CREATES, ids=[m[:40] for _, m in CREATES])
def test_create_refuses_bad_input_with_a_status(server, body, message):
    """A 400, not a 200 whose stream ends in an error; and no broken model is written."""
    response = httpx.post(server.url + "/api/create", json=body, timeout=10)  # streams by default
    assert message in ollama_error(response)
    names = [m["name"] for m in httpx.get(server.url + "/api/tags").json()["models"]]
    assert not any(n.startswith(("hot:", "big:", "x:")) for n in names)


def test_create_with_good_parameters_still_works(server):
    body = {"model": "tuned", "from": "llava", "parameters": {"temperature": 0, "num_ctx": 2048.0, "stop": "END"}}
    response = httpx.post(server.url + "/api/create", json=body, timeout=10)
    assert response.status_code == 200 and json.loads(response.text.splitlines()[-1]) == {"status": "success"}


# -- routes and methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/nope", 404, "not found: GET /api/nope"),
        ("PUT", "/api/generate", 405, "method not allowed: PUT /api/generate; use POST"),
        ("GET", "/v1", 404, "not found: GET /v1"),
        ("POST", "/v1/models", 405, "method not allowed: POST /v1/models; use GET"),
    ],
)
def test_unknown_routes_and_wrong_methods_say_what_was_asked(live, method, path, status, message):
    response = httpx.request(method, live.url + path, timeout=10)
    if path.startswith("/v1"):
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        assert message in openai_error(response, status, kind)
    else:
        assert message in ollama_error(response, status)


# -- the server's own faults and a client that goes away ------------------------------------------------


def _raw_exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Each request's status line, all sent one after another on one connection."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        for request in requests:
            sock.sendall(request)
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            answers.append(status)
    return answers


def test_an_unexpected_error_is_a_500_in_the_dialect_and_keeps_the_connection(server, monkeypatch, caplog):
    """Starlette's own 500 re-raised the error, so the server dropped the connection and the
    client's next request on it failed."""

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.scheduler, "ps", broken)
    monkeypatch.setattr(server.scheduler.store, "list", broken)
    response = httpx.get(server.url + "/api/ps")
    internal = "internal error: the server failed to answer this request (the server's log has the details)"
    assert ollama_error(response, 500) == internal
    assert openai_error(httpx.get(server.url + "/v1/models"), 500, "api_error") == internal
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "unexpected RuntimeError: boom" in logged, "a fault is logged, in one line (its traceback at debug level)"

    get = lambda path: f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()  # noqa: E731
    answers = _raw_exchange(server.port, [get("/api/ps"), get("/api/version")])
    assert answers[0].startswith(b"HTTP/1.1 500") and answers[1].startswith(b"HTTP/1.1 200")


def test_a_client_that_leaves_mid_body_is_no_fault(server, caplog):
    body = json.dumps({"model": "llava", "prompt": "hi", "images": [b64(image_bytes())]}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head = f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body[: len(body) // 2])
    # Wait for the positive signal that the server saw the request end (counted as a 499), so that
    # "nothing logged" below is checked after the fact, not before it happened on a slow machine.
    seen = 'route="/api/generate",status="499"'
    deadline = time.monotonic() + 30
    while seen not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline, "the server never finished the abandoned request"
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "nothing logged as a server fault"


def test_not_offered_is_logged_without_a_traceback(live, caplog):
    response = httpx.post(live.url + "/api/push", json={"model": "llava"}, timeout=10)
    assert "not available" in ollama_error(response, 501)
    assert not [r for r in caplog.records if r.exc_info], "a 501 is no fault to trace"
