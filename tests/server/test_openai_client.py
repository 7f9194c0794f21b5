"""The ``openai`` PyPI client, unchanged, against imgscribe's ``/v1``."""

from __future__ import annotations

import base64

import openai
import pytest

from .conftest import image_bytes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="imgscribe", timeout=30, max_retries=0)


def _image_message(text: str = "What is in this image?") -> list[dict]:
    uri = "data:image/png;base64," + base64.b64encode(image_bytes()).decode()
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": uri}}]}
    ]


def test_chat_completion_with_a_data_uri(client):
    res = client.chat.completions.create(model="llava", messages=_image_message())
    choice = res.choices[0]
    assert res.object == "chat.completion" and res.model == "llava" and res.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content.startswith("echo: What is in this image? | 1 image(s): 64x48")
    assert (
        res.usage.completion_tokens > 0
        and res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    )


def test_chat_completion_streamed(client):
    stream = client.chat.completions.create(model="llava", messages=_image_message("describe"), stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: describe | 1 image(s)")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0


def test_max_tokens_stop_and_json(client):
    res = client.chat.completions.create(model="llava", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2)
    assert res.choices[0].finish_reason == "length" and res.usage.completion_tokens == 2
    messages = [{"role": "developer", "content": "sys"}, {"role": "user", "content": "q"}]
    res = client.chat.completions.create(
        model="llava", messages=messages, response_format={"type": "json_object"}, seed=3, temperature=0.2
    )
    assert res.choices[0].message.content.startswith('{"prompt": "q"')
    schema = {"name": "caption", "schema": {"type": "object", "properties": {"caption": {"type": "string"}}}}
    res = client.chat.completions.create(model="llava", messages=[{"role": "user", "content": "q"}],
                                         response_format={"type": "json_schema", "json_schema": schema})  # fmt: skip
    assert res.choices[0].message.content.startswith("{")


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert "llava:latest" in ids
    assert client.models.retrieve("llava").id == "llava:latest"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_errors_are_openai_shaped(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["type"] == "not_found_error"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo-text", messages=_image_message())
    assert "does not support images" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="llava", messages=[])
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="llava", messages=bad)


def test_http_image_urls_are_off_by_default(client):
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/cat.jpg"}}]}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="llava", messages=msg)
    assert "IMGSCRIBE_ALLOW_URLS" in err.value.body["message"]


def test_mid_stream_error_raises(client, store):
    from .conftest import add_echo

    add_echo(store, "crashy", fail_after=2)
    with pytest.raises(openai.APIError, match="simulated failure"):
        list(
            client.chat.completions.create(model="crashy", messages=[{"role": "user", "content": "a b c"}], stream=True)
        )
