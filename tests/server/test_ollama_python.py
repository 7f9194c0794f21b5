"""The ``ollama`` PyPI client, unchanged, against a real imgscribe server."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import ollama
import pytest

from .conftest import image_bytes

pytestmark = pytest.mark.timeout(60)

SURVEY_SNIPPET = """
import ollama

res = ollama.chat(
    model="llava",
    messages=[
        {
            'role': 'user',
            'content': 'Describe this image:',
            'images': ['./art.jpg']
        }
    ]
)
print(res['message']['content'])
"""


@pytest.fixture
def client(server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=30)


def test_survey_snippet_runs_unchanged(server, art):
    """The survey's Python example, word for word; only OLLAMA_HOST points at imgscribe."""
    env = {**os.environ, "OLLAMA_HOST": server.host}
    out = subprocess.run([sys.executable, "-c", SURVEY_SNIPPET], cwd=art.parent, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("echo: Describe this image: | 1 image(s): 96x64")


def test_chat_with_an_image_path(client, art):
    res = client.chat(model="llava", messages=[{"role": "user", "content": "Describe this image:", "images": [art]}])
    assert res.message.role == "assistant"
    assert "1 image(s): 96x64" in res.message.content
    assert res.done and res.done_reason == "stop" and res.eval_count > 0 and res.total_duration > 0


def test_generate_with_base64_images_streamed(client):
    data = base64.b64encode(image_bytes()).decode()
    parts = list(client.generate(model="llava", prompt="What is in this picture?", images=[data, data], stream=True))
    assert all(p.model == "llava" for p in parts)
    assert parts[-1].done and parts[-1].eval_count == len(parts) - 1
    assert "".join(p.response for p in parts).startswith("echo: What is in this picture? | 2 image(s)")


def test_chat_streamed(client):
    parts = list(client.chat(model="llava", messages=[{"role": "user", "content": "hello"}], stream=True))
    assert parts[-1].done and all(p.message.role == "assistant" for p in parts)
    assert "".join(p.message.content for p in parts) == "echo: hello | 0 image(s): none"


def test_options_format_and_keep_alive(client):
    res = client.generate(
        model="llava", prompt="a b c d", options={"num_predict": 2, "temperature": 0}, keep_alive="10m"
    )
    assert res.done_reason == "length" and res.eval_count == 2
    res = client.generate(model="llava", prompt="q", format="json", options=ollama.Options(seed=1, stop=["zzz"]))
    assert res.response.startswith("{")


def test_list_show_ps(client):
    names = [m.model for m in client.list().models]
    assert "llava:latest" in names
    shown = client.show("llava")
    assert "vision" in shown.capabilities and shown.modelinfo is not None and shown.details.family == "echo"
    client.generate(model="echo-test", keep_alive=60)
    running = client.ps().models
    assert [m.model for m in running] == ["echo-test:latest"] and running[0].expires_at is not None


def test_copy_delete_create_pull(client, store, monkeypatch):
    from .test_ollama_wire import PROGRESS, fake_pull

    client.copy("llava", "llava-copy")
    assert client.delete("llava-copy").status == "success"
    assert client.create(model="terse", from_="llava", system="be terse").status == "success"
    assert "be terse" in client.show("terse").modelfile
    monkeypatch.setattr(store, "pull", fake_pull())
    assert client.pull("llava:13b").status == "success"
    parts = list(client.pull("llava:13b", stream=True))
    assert [p.status for p in parts] == [p["status"] for p in PROGRESS] and parts[1].completed == 5
    monkeypatch.setattr(store, "pull", fake_pull(fail_at=0))
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("nope")
    assert err.value.status_code == 404


def test_errors_raise_response_error_with_status(client):
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="llava", prompt="x", images=["bm90IGFuIGltYWdl"])  # base64 of "not an image"
    assert err.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as err:  # the client's lenient check lets it through
        client.generate(model="llava", prompt="x", images=["ab$cd"])
    assert err.value.status_code == 400 and "invalid base64 image data: unexpected character '$'" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="echo-text", prompt="x", images=[base64.b64encode(image_bytes()).decode()])
    assert err.value.status_code == 400 and "does not support images" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="llava", prompt="x", think=True)
    assert err.value.status_code == 400


def test_mid_stream_error_raises_in_the_client(client, store):
    from .conftest import add_echo

    add_echo(store, "crashy", fail_after=2)
    with pytest.raises(ollama.ResponseError) as err:
        list(client.chat(model="crashy", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert "simulated failure" in err.value.error


def test_image_as_path_object_and_bytes(client, art: Path):
    res = client.generate(model="llava", prompt="x", images=[art, art.read_bytes()])
    assert "2 image(s)" in res.response
