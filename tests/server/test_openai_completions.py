"""``/v1/completions`` (OpenAI's legacy text completions, as Ollama serves them): through the
official ``openai`` client, and the hostile requests in raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import add_echo, live_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="imgscribe", timeout=30, max_retries=0)


def test_completion_through_the_openai_client(client):
    res = client.completions.create(model="llava", prompt="say hello", temperature=0.1, top_p=0.9, seed=7)
    assert res.object == "text_completion" and res.id.startswith("cmpl-") and res.model == "llava"
    assert res.choices[0].text.startswith("echo: say hello")
    assert res.choices[0].finish_reason == "stop" and res.choices[0].index == 0
    assert res.usage.prompt_tokens > 0 and res.usage.completion_tokens > 0
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens


def test_completion_streamed_with_usage(client, server):
    stream = client.completions.create(model="llava", prompt="a b c d", stream=True,
                                       stream_options={"include_usage": True})  # fmt: skip
    events = list(stream)
    text = "".join(e.choices[0].text for e in events if e.choices)
    assert text.startswith("echo: a b c d")
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] == "stop"
    assert events[-1].usage is not None and events[-1].usage.completion_tokens > 0
    raw = httpx.post(server.url + "/v1/completions", json={"model": "llava", "prompt": "x", "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_max_tokens_and_stop(client):
    short = client.completions.create(model="llava", prompt="one two three four five six", max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens <= 2
    stopped = client.completions.create(model="llava", prompt="one two three four", stop=["three"])
    assert "three" not in stopped.choices[0].text and stopped.choices[0].text.startswith("echo: one two")


def test_suffix_is_refused_without_insert(client, store):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="llava", prompt="def f(", suffix="return 1")
    assert "does not support insert" in err.value.body["message"]
    add_echo(store, "echo-fim", capabilities=["completion", "insert"])
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="echo-fim", prompt="def f(", suffix="return 1")
    assert "fill in the middle" in err.value.body["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "llava", "prompt": "x", "echo": True}, "echo"),
        ({"model": "llava", "prompt": "x", "n": 2}, "one choice"),
        ({"model": "llava", "prompt": "x", "best_of": 3}, "one choice"),
        ({"model": "llava", "prompt": "x", "logprobs": 1}, "log probabilities"),
        ({"model": "llava", "prompt": ["a", "b"]}, "one prompt"),
        ({"model": "llava", "prompt": [1, 2, 3]}, "one prompt"),
        ({"model": "llava", "prompt": {"a": 1}}, "prompt"),
        ({"model": "llava"}, "prompt"),
        ({"prompt": "x"}, "model is required"),
        ({"model": "llava", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"model": "llava", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ({"model": "llava", "prompt": "x", "stream": "yes"}, "stream"),
        ({"model": "llava", "prompt": "x", "temperature": "hot"}, "temperature"),
        ({"model": "llava", "prompt": "x", "seed": 2**70}, "seed"),
        ({"model": "llava", "prompt": "x", "stop": [1]}, "stop"),
    ],
)
def test_hostile_requests_are_clear_400s(server, body, words):
    res = httpx.post(server.url + "/v1/completions", json=body)
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["type"] == "invalid_request_error" and words in err["message"]
    assert "Traceback" not in res.text


def test_unknown_model_is_openai_404(server):
    res = httpx.post(server.url + "/v1/completions", json={"model": "nope", "prompt": "x"})
    assert res.status_code == 404 and res.json()["error"]["type"] == "not_found_error"


def test_huge_prompt_is_413(server):
    res = httpx.post(server.url + "/v1/completions",
                     content=b'{"model":"llava","prompt":"' + b"a" * 17_000_000 + b'"}')  # fmt: skip
    assert res.status_code == 413 and "16,777,216" in res.json()["error"]["message"]


def test_foreign_origin_is_refused_before_the_body(server):
    res = httpx.post(server.url + "/v1/completions", json={"model": "llava", "prompt": "x"},
                     headers={"Origin": "https://evil.example"})  # fmt: skip
    assert res.status_code == 403 and "evil.example" in res.json()["error"]["message"]


def test_the_api_key_is_needed(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", "k-123")
    with live_server(scheduler) as live:
        body = {"model": "llava", "prompt": "x"}
        assert httpx.post(live.url + "/v1/completions", json=body).status_code == 401
        assert httpx.post(live.url + "/v1/completions", json=body, headers={"Authorization": "Bearer no"}).status_code == 401
        ok = openai.OpenAI(base_url=live.url + "/v1", api_key="k-123", max_retries=0)
        assert ok.completions.create(model="llava", prompt="x").choices[0].text.startswith("echo: x")


def test_a_simple_cross_site_post_is_refused(server):
    """A page's text/plain POST (no preflight) is refused, and nothing is loaded for it."""
    res = httpx.post(server.url + "/v1/completions", content=b'{"model":"llava","prompt":"x"}',
                     headers={"Content-Type": "text/plain", "Origin": "null"})  # fmt: skip
    assert res.status_code == 403 and server.scheduler.ps() == []
