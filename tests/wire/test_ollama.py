"""Ollama's dialect: /api/chat bodies from a ChatRequest, NDJSON events as Chunks, the final
object's metrics, error answers back as the errors they were."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from imgscribe import errors
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Chunk, Message, Metrics, Options
from imgscribe.wire import ollama
from imgscribe.wire.media import decodable
from imgscribe.wire.transport import ndjson


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_chat_body_from_a_request():
    data = png()
    request = ChatRequest("llava:7b", [Message("user", "what is this?", [intake(data)])],
                          options=Options(temperature=0.2, num_predict=8), format="json", keep_alive=30.0)  # fmt: skip
    body = ollama.chat_body(request)
    assert body == {
        "model": "llava:7b",
        "messages": [{"role": "user", "content": "what is this?", "images": [base64.b64encode(data).decode()]}],
        "stream": True,
        "options": {"temperature": 0.2, "num_predict": 8},
        "format": "json",
        "keep_alive": 30.0,
    }


def test_chat_body_for_another_server():
    """The model's name there, a system prompt first, the merged options, decodable images; what is
    not set is left out; forever is -1."""
    request = ChatRequest("here", [Message("user", "hi", [intake(png())])], keep_alive=float("inf"), think=True)
    body = ollama.chat_body(request, model="there", system="be brief", options=Options(seed=3), image=decodable)
    assert body["model"] == "there"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][1]["images"] == [decodable(request.images[0])]
    assert body["options"] == {"seed": 3}
    assert body["keep_alive"] == -1 and body["think"] is True and "format" not in body
    # a request with its own system prompt keeps it
    own = ChatRequest("m", [Message("system", "mine"), Message("user", "hi")])
    assert [m["content"] for m in ollama.messages(own, "default")] == ["mine", "hi"]


def test_stream_events_become_chunks():
    lines = [
        '{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}',
        "",
        '{"model":"m","message":{"role":"assistant","content":"lo"},"done":false}',
        '{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length",'
        '"total_duration":9,"prompt_eval_count":3,"eval_count":2,"eval_duration":4,"data":{"k":1}}',
    ]
    got = list(ollama.chunks(ndjson(lines)))
    assert [c.text for c in got] == ["Hel", "lo", ""]
    final = got[-1]
    assert final.done and final.done_reason == "length" and final.data == {"k": 1}
    assert final.metrics == Metrics(total_duration=9, prompt_eval_count=3, eval_count=2, eval_duration=4)
    # /api/generate's "response"; the caller's data; an unknown reason is "stop"
    events = [{"response": "a", "done": False}, {"response": "", "done": True, "done_reason": "odd"}]
    got = list(ollama.chunks(events, "peer", data={"remote": "x"}))
    assert got[0] == Chunk("a") and got[-1].done_reason == "stop" and got[-1].data == {"remote": "x"}


def test_error_events_and_a_cut_stream_fail():
    with pytest.raises(errors.EngineFailed, match="^remote server x: out of memory$"):
        list(ollama.chunks([{"error": "out of memory"}], "remote server x"))
    with pytest.raises(errors.EngineFailed, match="^boom$"):
        list(ollama.chunks([{"error": {"message": "boom"}}]))
    with pytest.raises(errors.EngineFailed, match="without a final message"):
        list(ollama.chunks([{"message": {"content": "a"}, "done": False}], "remote server x"))


def test_metric_fields_leave_zeros_out():
    assert ollama.metric_fields(Metrics(eval_count=2, image_encode_duration=5)) == {
        "eval_count": 2, "image_encode_duration": 5}  # fmt: skip
    assert ollama.metric_fields(None) == {}
    assert ollama.metrics({"eval_count": 2, "image_encode_duration": 5}) == Metrics(eval_count=2,
                                                                                    image_encode_duration=5)  # fmt: skip


@pytest.mark.parametrize(("status", "kind"), [
    (400, errors.InvalidRequest), (413, errors.ImageTooLarge), (499, errors.Cancelled), (503, errors.Busy), (500, errors.ImgscribeError),
    (502, errors.ImgscribeError),
])  # fmt: skip
def test_error_answers_are_the_errors_they_were(status, kind):
    err = ollama.error_from(status, "what went wrong", "m")
    assert type(err) is kind and err.message == "what went wrong" and err.status == status


def test_a_404_is_model_not_found_with_the_servers_words():
    err = ollama.error_from(404, "model 'm' not found, try pulling it first", "m")
    assert isinstance(err, errors.ModelNotFound) and err.name == "m" and err.message.endswith("pulling it first")


def test_error_body():
    assert ollama.error_body("no") == {"error": "no"}


def test_events_of_a_stream_raise_its_error():
    got = ollama.events(['{"status":"pulling"}', "", '{"error":"disk full"}', '{"status":"success"}'])
    assert next(got) == {"status": "pulling"}
    with pytest.raises(errors.EngineFailed, match="^disk full$"):
        next(got)
    lines = ['{"message":{"content":"a"},"done":false}', '{"message":{"content":""},"done":true}']
    assert [c.text for c in ollama.chunks(ollama.events(lines))] == ["a", ""]
