"""Clips on every route (issue 18): a model's ``PARAMETER video_max_tokens`` applies at intake unless
the request sets its own; ``video_sampling`` ("uniform" | "scenes") chooses the frames, a bad value is
a 400 in the route's dialect; /v1/messages and /v1/responses take a clip where an image goes,
through the official ``anthropic`` and ``openai`` clients."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from .conftest import add_echo, b64, live_server

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_video import moving_clip, scene_clip  # noqa: E402

pytestmark = pytest.mark.timeout(60)
CLIP = moving_clip()  # 4 s: 8 frames at the default 4096 tokens, 2 at 1024, 4 at 2048
URI = "data:video/mp4;base64," + base64.b64encode(CLIP).decode()
#: the times echo reports for scene_clip() at 1536 tokens (3 frames): uniform, and at its cuts
UNIFORM = "frame at 0:01.4, frame at 0:04.0, frame at 0:06.7"
SCENES = "frame at 0:00.5, frame at 0:02.3, frame at 0:03.2"


@pytest.fixture
def served(scheduler):
    add_echo(scheduler.store, "echo-short-clips", video_max_tokens=1024)  # PARAMETER video_max_tokens 1024
    add_echo(scheduler.store, "echo-scenes", video_sampling="scenes", video_max_tokens=1536)
    with live_server(scheduler) as live:
        yield live


def _ollama(served, model: str, images: list[str], **options) -> httpx.Response:
    body = {"model": model, "stream": False, "options": options,
            "messages": [{"role": "user", "content": "What happens?", "images": images}]}  # fmt: skip
    return httpx.post(served.url + "/api/chat", json=body, timeout=30)


def test_the_models_video_max_tokens_applies_unless_the_request_sets_one(served):
    text = _ollama(served, "echo-short-clips", [b64(CLIP)]).json()["message"]["content"]
    assert "the 2 images after" in text and "| 2 image(s)" in text
    text = _ollama(served, "echo-short-clips", [b64(CLIP)], video_max_tokens=2048).json()["message"]["content"]
    assert "| 4 image(s)" in text  # the request's option first
    assert "| 8 image(s)" in _ollama(served, "echo-test", [b64(CLIP)]).json()["message"]["content"]  # the default
    r = httpx.post(served.url + "/api/generate", json={"model": "echo-short-clips", "stream": False, "prompt": "x",
                                                       "images": [b64(CLIP)]}, timeout=30)  # fmt: skip
    assert "| 2 image(s)" in r.json()["response"]
    oa = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    parts = [{"type": "text", "text": "What happens?"}, {"type": "video_url", "video_url": {"url": URI}}]
    res = oa.chat.completions.create(model="echo-short-clips", messages=[{"role": "user", "content": parts}])
    assert "| 2 image(s)" in res.choices[0].message.content


def test_video_sampling_scenes_picks_the_frames_at_the_cuts(served):
    clip = b64(scene_clip())
    text = _ollama(served, "echo-test", [clip], video_max_tokens=1536).json()["message"]["content"]
    assert UNIFORM in text
    text = _ollama(served, "echo-test", [clip], video_max_tokens=1536, video_sampling="scenes").json()["message"]["content"]
    assert SCENES in text
    assert SCENES in _ollama(served, "echo-scenes", [clip]).json()["message"]["content"]  # PARAMETER video_sampling
    assert UNIFORM in _ollama(served, "echo-scenes", [clip], video_sampling="uniform").json()["message"]["content"]
    oa = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    uri = "data:video/mp4;base64," + clip
    parts = [{"type": "text", "text": "What happens?"}, {"type": "video_url", "video_url": {"url": uri}}]
    res = oa.chat.completions.create(model="echo-test", messages=[{"role": "user", "content": parts}],
                                     extra_body={"video_max_tokens": 1536, "video_sampling": "scenes"})  # fmt: skip
    assert SCENES in res.choices[0].message.content


def test_a_bad_video_sampling_is_a_400_on_every_route(served):
    r = _ollama(served, "echo-test", [b64(CLIP)], video_sampling="random")
    assert r.status_code == 400 and "video_sampling" in r.json()["error"] and "'scenes'" in r.json()["error"]
    oa = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    parts = [{"type": "text", "text": "x"}, {"type": "video_url", "video_url": {"url": URI}}]
    with pytest.raises(openai.BadRequestError, match="video_sampling"):
        oa.chat.completions.create(model="echo-test", messages=[{"role": "user", "content": parts}],
                                   extra_body={"video_sampling": "random"})  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="video_sampling"):
        oa.responses.create(model="echo-test", input="x", extra_body={"video_sampling": 3})
    an = anthropic.Anthropic(base_url=served.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="video_sampling"):
        an.messages.create(model="echo-test", max_tokens=10, messages=[{"role": "user", "content": "x"}],
                           extra_body={"video_sampling": "random"})  # fmt: skip


def test_a_clip_on_v1_messages_through_the_anthropic_client(served):
    an = anthropic.Anthropic(base_url=served.url, api_key="x", max_retries=0)
    block = {"type": "image", "source": {"type": "base64", "media_type": "video/mp4", "data": b64(CLIP)}}
    res = an.messages.create(model="echo-test", max_tokens=200,
                             messages=[{"role": "user", "content": [block, {"type": "text", "text": "What happens?"}]}])
    text = res.content[0].text
    assert "Video messages[0].content[0].source (0:04 long): the 8 images" in text and "| 8 image(s): 128x96" in text
    res = an.messages.create(model="echo-short-clips", max_tokens=200, extra_body={"video_sampling": "uniform"},
                             messages=[{"role": "user", "content": [block, {"type": "text", "text": "x"}]}])
    assert "| 2 image(s)" in res.content[0].text  # the model's PARAMETER video_max_tokens
    block["source"]["data"] = b64(CLIP[:1000])
    with pytest.raises(anthropic.BadRequestError, match="could not be read as an MP4 video"):
        an.messages.create(model="echo-test", max_tokens=10, messages=[{"role": "user", "content": [block]}])


def test_a_clip_on_v1_responses_through_the_openai_client(served):
    oa = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    item = {"role": "user", "content": [{"type": "input_text", "text": "What happens?"},
                                        {"type": "input_image", "image_url": URI}]}  # fmt: skip
    res = oa.responses.create(model="echo-test", input=[item])
    assert "Video input[0].content[1].image_url (0:04 long): the 8 images" in res.output_text
    assert "| 8 image(s): 128x96" in res.output_text
    res = oa.responses.create(model="echo-test", input=[item], extra_body={"video_max_tokens": 1024})
    assert "| 2 image(s)" in res.output_text
    res = oa.responses.create(model="echo-short-clips", input=[item])
    assert "| 2 image(s)" in res.output_text  # the model's PARAMETER video_max_tokens


def test_run_through_a_server_sends_a_clip_as_its_frames(served, tmp_path):
    """``imgscribe run --host``: Ollama's API carries images, so the clip goes as its frames with the
    line that says which images are which frames (it was dropped before)."""
    import os
    import subprocess

    (tmp_path / "clip.mp4").write_bytes(CLIP)
    done = subprocess.run([sys.executable, "-m", "imgscribe", "run", "--host", served.url, "echo-test",
                           "what happens? ./clip.mp4"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(0:04 long): the 8 images" in done.stdout and "| 8 image(s): 128x96" in done.stdout
