"""``/v1/messages`` (Anthropic's Messages API, as Ollama serves it): through the ``anthropic`` PyPI
client with an image, streamed and not; Anthropic-shaped errors and the hostile requests in raw
HTTP."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from .conftest import add_echo, b64, image_bytes, live_server

pytestmark = pytest.mark.timeout(60)
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(image_bytes())}}


@pytest.fixture
def client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="imgscribe", timeout=30, max_retries=0)


def _ask(text: str = "What is in this image?") -> list[dict]:
    return [{"role": "user", "content": [IMAGE, {"type": "text", "text": text}]}]


def test_message_with_an_image(client):
    res = client.messages.create(model="llava", max_tokens=500, messages=_ask(), system="be brief",
                                 extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 20})  # fmt: skip
    assert res.type == "message" and res.role == "assistant" and res.id.startswith("msg_") and res.model == "llava"
    [block] = res.content
    assert block.type == "text" and block.text.startswith("echo: What is in this image? | 1 image(s): 64x48")
    assert res.stop_reason == "end_turn"
    assert res.usage.input_tokens > 0 and res.usage.output_tokens > 0


def test_system_as_blocks_and_a_conversation(client):
    res = client.messages.create(model="llava", max_tokens=100, system=[{"type": "text", "text": "sys"}],
                                 messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                           {"role": "user", "content": "again"}])  # fmt: skip
    assert res.content[0].text.startswith("echo: hi again")  # the echo engine repeats the user turns


def test_streamed_message_with_an_image(client):
    with client.messages.stream(model="llava", max_tokens=500, messages=_ask("describe")) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "content_block_start" in kinds and kinds[-1] == "message_stop"
    assert final.content[0].text.startswith("echo: describe | 1 image(s): 64x48")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_raw_stream_events_in_order(server):
    with httpx.stream("POST", server.url + "/v1/messages",
                      json={"model": "llava", "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "a b c"}]}) as res:  # fmt: skip
        assert res.headers["content-type"].startswith("text/event-stream")
        names = [line[7:] for line in res.iter_lines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "content_block_start"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_max_tokens_and_stop_sequences(client):
    res = client.messages.create(model="llava", max_tokens=2,
                                 messages=[{"role": "user", "content": "one two three four five"}])  # fmt: skip
    assert res.stop_reason == "max_tokens" and res.usage.output_tokens <= 2
    res = client.messages.create(model="llava", max_tokens=100, stop_sequences=["three"],
                                 messages=[{"role": "user", "content": "one two three four"}])  # fmt: skip
    assert "three" not in res.content[0].text


def test_errors_are_anthropic_shaped_in_the_client(client):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="echo-text", max_tokens=5, messages=_ask())
    assert "does not support images" in err.value.body["error"]["message"]


def _post(server, body, **kw):
    return httpx.post(server.url + "/v1/messages", json=body, **kw)


M = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "llava", "messages": M}, "max_tokens"),
        ({"model": "llava", "max_tokens": 0, "messages": M}, "max_tokens"),
        ({"model": "llava", "max_tokens": "10", "messages": M}, "max_tokens"),
        ({"model": "llava", "max_tokens": 2**70, "messages": M}, "max_tokens"),
        ({"model": "llava", "max_tokens": 5}, "messages"),
        ({"model": "llava", "max_tokens": 5, "messages": []}, "messages"),
        ({"max_tokens": 5, "messages": M}, "model is required"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]}, "content"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]}, "document"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]}, "source"),
        ({"model": "llava", "max_tokens": 5,
          "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "base64"),
        ({"model": "llava", "max_tokens": 5,
          "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": 5}}]}]}, "data"),
        ({"model": "llava", "max_tokens": 5,
          "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": ["base64"]}}]}]}, "base64"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": ["user"], "content": "x"}]}, "role"),
        ({"model": "llava", "max_tokens": 5, "messages": ["x"]}, "messages[0]"),
        ({"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}, "tools"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "tools": [{"name": "f", "input_schema": {}}]}, "tools"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "thinking": {"type": "enabled", "budget_tokens": 9}}, "thinking"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "system": [{"type": "image"}]}, "system"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "stop_sequences": "x"}, "stop_sequences"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "temperature": "hot"}, "temperature"),
        ({"model": "llava", "max_tokens": 5, "messages": M, "stream": "yes"}, "stream"),
    ],
)
def test_hostile_requests_are_anthropic_400s(server, body, words):
    res = _post(server, body)
    assert res.status_code == 400, res.text
    data = res.json()
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert words in data["error"]["message"], data
    assert "Traceback" not in res.text


@pytest.mark.parametrize("source", [{"type": "url", "url": "http://example.com/cat.png"},
                                    {"type": "url", "url": "http://169.254.169.254/latest/meta-data"},
                                    {"type": "url", "url": "file:///etc/passwd"}])  # fmt: skip
def test_url_images_are_refused_when_urls_are_off(server, source):
    res = _post(server, {"model": "llava", "max_tokens": 5,
                         "messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]})  # fmt: skip
    assert res.status_code == 400 and "URL" in res.json()["error"]["message"]


def test_bad_base64_names_its_place(server):
    bad = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!!"}}
    res = _post(server, {"model": "llava", "max_tokens": 5, "messages": [{"role": "user", "content": [bad]}]})
    assert res.status_code == 400 and "messages[0].content[0].source" in res.json()["error"]["message"]


def test_invalid_json_is_anthropic_shaped(server):
    res = httpx.post(server.url + "/v1/messages", content=b"{nope")
    assert res.status_code == 400 and res.json()["type"] == "error"


def test_huge_body_is_413(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_BYTES", "100000")
    with live_server(scheduler) as live:
        big = b'{"model":"llava","max_tokens":5,"messages":[{"role":"user","content":"' + b"a" * 2_000_000 + b'"}]}'
        res = httpx.post(live.url + "/v1/messages", content=big, timeout=60)
    assert res.status_code == 413 and res.json()["error"]["type"] == "request_too_large"


def test_foreign_origin_and_api_key(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", "k-123")
    with live_server(scheduler) as live:
        body = {"model": "llava", "max_tokens": 5, "messages": M}
        foreign = _post(live, body, headers={"x-api-key": "k-123", "Origin": "https://evil.example"})
        keyless = _post(live, body)
        assert foreign.status_code == 403 and keyless.status_code == 401
        for answer, kind in ((foreign, "permission_error"), (keyless, "authentication_error")):  # Anthropic's shape
            assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == kind, answer.text
        wrong = httpx.get(live.url + "/v1/messages", headers={"x-api-key": "k-123"}, trust_env=False)
        assert wrong.status_code == 405 and wrong.json()["type"] == "error"
        ok = anthropic.Anthropic(base_url=live.url, api_key="k-123", max_retries=0)  # sends x-api-key
        assert ok.messages.create(model="llava", max_tokens=50, messages=M).content[0].text.startswith("echo: x")


def test_mid_stream_error_is_an_error_event(server, store):
    add_echo(store, "crashy", fail_after=2)
    with httpx.stream("POST", server.url + "/v1/messages",
                      json={"model": "crashy", "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "a b c d"}]}) as res:  # fmt: skip
        lines = [line for line in res.iter_lines() if line.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert last["type"] == "error" and "simulated failure" in last["error"]["message"]
