"""OpenAI's dialect: chat-completions bodies from a ChatRequest, SSE events as Chunks, usage and
llama-server's timings as metrics, finish reasons, error bodies; and a peer's error by status."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image as PILImage

from imgscribe.errors import EngineFailed, InvalidRequest, ModelNotFound
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Message, Metrics, Options
from imgscribe.wire import openai
from imgscribe.wire.common import peer_error
from imgscribe.wire.transport import error_message, sse


def png() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 6), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_chat_body_from_a_request():
    request = ChatRequest("here", [Message("user", "what is this?", [intake(png())])], format="json",
                          options=Options(temperature=0.5, top_k=4, seed=-1, num_predict=16, stop=["", "END"]))  # fmt: skip
    body = openai.chat_body(request, model="gpt-x", system="be brief", extra={"user": "me"})
    assert body["model"] == "gpt-x" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    parts = body["messages"][1]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1] == {"type": "text", "text": "what is this?"}
    # OpenAI's sampling fields only; a random seed and an empty stop are left out
    assert {k: body[k] for k in ("temperature", "max_tokens", "stop", "user")} == {
        "temperature": 0.5, "max_tokens": 16, "stop": ["END"], "user": "me"}  # fmt: skip
    assert "top_k" not in body and "seed" not in body
    assert body["response_format"] == {"type": "json_object"}


def test_llama_server_gets_every_sampling_option():
    fields = openai.sampling(Options(top_k=4, min_p=0.1, repeat_penalty=1.1, seed=7), llama=True)
    assert fields == {"top_k": 4, "min_p": 0.1, "repeat_penalty": 1.1, "seed": 7}


def test_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert openai.response_format(None) is None and openai.response_format("") is None
    assert openai.response_format(schema)["json_schema"] == {"name": "response", "schema": schema, "strict": True}
    with pytest.raises(InvalidRequest, match="unsupported format"):
        openai.response_format("yaml")


def test_stream_events_become_chunks_with_usage_and_timings():
    lines = [
        ": ping",
        'data: {"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        "",
        'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}',
        'data: {"choices":[{"delta":{},"finish_reason":"length"}],"timings":{"prompt_ms":1.5,"predicted_ms":2}}',
        'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}',
        "data: [DONE]",
        'data: {"choices":[{"delta":{"content":"after the end"}}]}',
    ]
    got = list(openai.chunks(sse(lines), time.perf_counter_ns(), "peer", data={"remote": "x"}))
    assert [c.text for c in got] == ["Hi", ""]
    final = got[-1]
    assert final.done and final.done_reason == "length" and final.data == {"remote": "x"}
    m = final.metrics
    assert (m.prompt_eval_count, m.eval_count, m.prompt_eval_duration, m.eval_duration) == (7, 1, 1_500_000, 2_000_000)
    assert m.total_duration > 0


def test_without_timings_the_clock_times_the_answer():
    start = time.perf_counter_ns()
    final = list(openai.chunks([{"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}]}], start))[-1]
    m = final.metrics
    assert final.done_reason == "stop" and m.prompt_eval_duration + m.eval_duration == m.total_duration


def test_timed_metrics():
    m = openai.timed_metrics(10, "3", None, {"predicted_ms": "0.5"}, clock=(4, 5))
    assert m == Metrics(total_duration=10, prompt_eval_count=3, prompt_eval_duration=4, eval_duration=500_000)


def test_an_error_event_fails():
    with pytest.raises(EngineFailed, match="^remote server x: too long$"):
        list(openai.chunks(sse(['data: {"error":{"message":"too long","type":"x"}}']), 0, "remote server x"))


def test_finish_and_done_reasons():
    assert [openai.finish_reason(r) for r in ("length", "stop", "cancel", None)] == ["length", "stop", "stop", "stop"]
    assert [openai.done_reason(r) for r in ("length", "stop", "content_filter", None)] == ["length", "stop", "stop",
                                                                                          "stop"]  # fmt: skip


def test_usage():
    assert openai.usage(Metrics(prompt_eval_count=3, eval_count=2)) == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}  # fmt: skip


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error"),
                                              (404, "not_found_error"), (500, "api_error"), (503, "api_error")])  # fmt: skip
def test_error_body(status, kind):
    assert openai.error_body("no", status) == {"error": {"message": "no", "type": kind, "param": None, "code": None}}


@pytest.mark.parametrize(("text", "message"), [
    ('{"error":{"message":"bad image","type":"invalid_request_error"}}', "bad image"),  # OpenAI
    ('{"error":"model not found"}', "model not found"),  # Ollama
    ("upstream broke\n", "upstream broke"),  # plain
    ("", "HTTP 502"),
])  # fmt: skip
def test_error_bodies_are_read_in_either_dialect(text, message):
    assert error_message(text, 502) == message


def test_a_peers_error_by_status():
    err = peer_error(404, "model 'x' not found", "the remote server u", "x")
    assert isinstance(err, ModelNotFound) and err.message == "model 'x' not found, on the remote server u (model 'x' not found)"
    err = peer_error(400, "bad", "the remote server u", "x")
    assert type(err) is InvalidRequest and err.message == "the remote server u refused the request (400): bad"
    err = peer_error(404, "no route", "the remote server u", "x")
    assert type(err) is InvalidRequest
    err = peer_error(500, "oom", "llama-server")
    assert type(err) is EngineFailed and err.message == "llama-server failed (500): oom"
