"""``/v1/responses`` (OpenAI's Responses API, stateless, as Ollama serves it): through the official
``openai`` client with an image, streamed and not; the hostile requests in raw HTTP."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from .conftest import image_bytes, live_server

pytestmark = pytest.mark.timeout(60)
URI = "data:image/png;base64," + base64.b64encode(image_bytes()).decode()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="imgscribe", timeout=30, max_retries=0)


def _image_input(text: str = "What is in this image?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_text", "text": text},
                                         {"type": "input_image", "image_url": URI}]}]  # fmt: skip


def test_response_with_an_image(client):
    res = client.responses.create(model="llava", input=_image_input(), instructions="be brief",
                                  temperature=0.2, top_p=0.5, max_output_tokens=500)  # fmt: skip
    assert res.object == "response" and res.id.startswith("resp_") and res.status == "completed"
    assert res.model == "llava" and res.instructions == "be brief"
    assert res.temperature == 0.2 and res.top_p == 0.5 and res.max_output_tokens == 500 and res.store is False
    assert res.output_text.startswith("echo: What is in this image? | 1 image(s): 64x48")
    [item] = res.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert res.usage.total_tokens == res.usage.input_tokens + res.usage.output_tokens


def test_string_input(client):
    res = client.responses.create(model="llava", input="hello there")
    assert res.output_text.startswith("echo: hello there")


def test_streamed_response_with_an_image(client):
    events = list(client.responses.create(model="llava", input=_image_input("describe"), stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]  # fmt: skip
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("echo: describe | 1 image(s): 64x48")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.status == "completed" and done.output_text == text and done.usage.output_tokens > 0


def test_stream_helper_final_response(client):
    with client.responses.stream(model="llava", input="a b c") as stream:
        final = stream.get_final_response()
    assert final.output_text.startswith("echo: a b c")


def test_json_schema_format(client):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    res = client.responses.create(model="llava", input="x",
                                  text={"format": {"type": "json_schema", "name": "thing", "schema": schema}})  # fmt: skip
    assert res.text.format.type == "json_schema" and res.text.format.name == "thing"
    obj = client.responses.create(model="llava", input="x", text={"format": {"type": "json_object"}})
    assert obj.text.format.type == "json_object"


def test_max_output_tokens_limits_the_answer(client):
    res = client.responses.create(model="llava", input="one two three four five six seven", max_output_tokens=2)
    assert res.usage.output_tokens <= 2


def _post(server, body, **kw):
    return httpx.post(server.url + "/v1/responses", json=body, **kw)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "llava", "input": "x", "previous_response_id": "resp_1"}, "does not store"),
        ({"model": "llava", "input": "x", "store": True}, "does not store"),
        ({"model": "llava", "input": "x", "conversation": "c_1"}, "conversation"),
        ({"model": "llava", "input": "x", "background": True}, "background"),
        ({"model": "llava", "input": "x", "tools": [{"type": "function", "name": "f"}]}, "tools"),
        ({"model": "llava", "input": [{"type": "function_call_output", "call_id": "1", "output": "x"}]}, "tools"),
        ({"model": "llava", "input": [{"content": "x"}]}, "'type'"),
        ({"model": "llava", "input": [{"type": "bogus"}]}, "bogus"),
        ({"model": "llava", "input": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"model": "llava", "input": [{"role": ["user"], "content": "x"}]}, "role"),
        ({"model": "llava", "input": [{"type": {"a": 1}, "role": "user"}]}, "type"),
        ({"model": "llava", "input": ["just a string"]}, "input[0]"),
        ({"model": "llava", "input": [{"role": "user", "content": 5}]}, "content"),
        ({"model": "llava", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input_audio"),
        ({"model": "llava", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input_file"),
        ({"model": "llava", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "file_id"),
        ({"model": "llava", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "image_url"),
        ({"model": "llava", "input": [{"role": "user", "content": [{"type": "input_text", "text": 3}]}]}, "text"),
        ({"model": "llava", "input": 42}, "input"),
        ({"model": "llava", "input": []}, "input"),
        ({"model": "llava"}, "input"),
        ({"input": "x"}, "model is required"),
        ({"model": "llava", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "llava", "input": "x", "max_output_tokens": 2**70}, "max_output_tokens"),
        ({"model": "llava", "input": "x", "temperature": "warm"}, "temperature"),
        ({"model": "llava", "input": "x", "stream": 1}, "stream"),
        ({"model": "llava", "input": "x", "text": {"format": {"type": "yaml"}}}, "yaml"),
        ({"model": "llava", "input": "x", "text": {"format": {"type": "json_schema"}}}, "schema"),
        ({"model": "echo-text", "input": _image_input()}, "does not support images"),
    ],
)
def test_hostile_requests_are_clear_400s(server, body, words):
    res = _post(server, body)
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["type"] == "invalid_request_error" and words in err["message"], err
    assert "Traceback" not in res.text


@pytest.mark.parametrize("url", ["http://example.com/cat.png", "http://169.254.169.254/latest", "file:///etc/passwd"])
def test_url_images_are_refused_when_urls_are_off(server, url):
    body = {"model": "llava", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}
    res = _post(server, body)
    assert res.status_code == 400 and "URL" in res.json()["error"]["message"]


def test_bad_base64_image_names_its_place(server):
    body = {"model": "llava", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,!!!"}]}]}  # fmt: skip
    res = _post(server, body)
    assert res.status_code == 400 and "input[0].content[0].image_url" in res.json()["error"]["message"]


def test_huge_body_is_413(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_BYTES", "100000")  # the body limit: ~1.5 MB
    with live_server(scheduler) as live:
        big = b'{"model":"llava","input":"' + b"a" * 2_000_000 + b'"}'
        res = httpx.post(live.url + "/v1/responses", content=big, timeout=60)
    assert res.status_code == 413 and "over the limit" in res.json()["error"]["message"]


def test_the_api_key_is_needed(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", "k-123")
    with live_server(scheduler) as live:
        assert _post(live, {"model": "llava", "input": "x"}).status_code == 401
        ok = openai.OpenAI(base_url=live.url + "/v1", api_key="k-123", max_retries=0)
        assert ok.responses.create(model="llava", input="x").status == "completed"


def test_foreign_origin_is_refused(server):
    res = _post(server, {"model": "llava", "input": "x"}, headers={"Origin": "http://attacker.example"})
    assert res.status_code == 403 and res.json()["error"]["type"] == "permission_error"


def test_mid_stream_error_is_an_error_event(server, store):
    from .conftest import add_echo

    add_echo(store, "crashy", fail_after=2)
    with httpx.stream("POST", server.url + "/v1/responses",
                      json={"model": "crashy", "input": "a b c d", "stream": True}) as res:  # fmt: skip
        lines = [line for line in res.iter_lines() if line.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert last["type"] == "error" and "simulated failure" in last["error"]["message"]
