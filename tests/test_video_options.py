"""A clip's options outside the HTTP routes, and its room in a server's limits (issue 18): the Python
API and ``imgscribe run`` (in a subprocess) apply a model's ``PARAMETER video_max_tokens`` and the
``video_sampling`` option; a server counts each sampled frame against IMGSCRIBE_MAX_REQUEST_IMAGES
and takes the clip's decode room in IMGSCRIBE_DECODE_PIXELS before decoding a frame."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from imgscribe import api, video
from imgscribe.config import settings
from imgscribe.errors import Cancelled, ImageTooLarge, InvalidRequest
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.server.inputs import ImageReader
from imgscribe.store import Store

from test_video import add_echo, moving_clip, scene_clip

UNIFORM = "frame at 0:01.4, frame at 0:04.0, frame at 0:06.7"  # scene_clip() at 1536 tokens: 3 frames
SCENES = "frame at 0:00.5, frame at 0:02.3, frame at 0:03.2"  # at its cuts: dark, red, white


@pytest.fixture
def scheduler(tmp_path):
    store = Store(os.environ["IMGSCRIBE_MODELS"])  # the CLI's store too
    add_echo(store, "echo-test")
    add_echo(store, "echo-short-clips", video_max_tokens=1024)
    scheduler = Scheduler(store, num_parallel=0)
    yield scheduler
    scheduler.close()


def test_the_python_api_applies_the_models_parameter_and_video_sampling(scheduler, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(moving_clip())
    assert "| 2 image(s)" in api.describe(str(path), "echo-short-clips", scheduler=scheduler).text
    assert "| 4 image(s)" in api.ask(str(path), "x", "echo-short-clips", options={"video_max_tokens": 2048},
                                     scheduler=scheduler).text  # fmt: skip
    messages = [{"role": "user", "content": "x", "images": [str(path)]}]
    assert "| 2 image(s)" in api.chat("echo-short-clips", messages, scheduler=scheduler).text
    (tmp_path / "scenes.mp4").write_bytes(scene_clip())
    scenes = str(tmp_path / "scenes.mp4")
    assert UNIFORM in api.describe(scenes, "echo-test", options={"video_max_tokens": 1536}, scheduler=scheduler).text
    result = api.describe(scenes, "echo-test", options={"video_max_tokens": 1536}, video_sampling="scenes",
                          scheduler=scheduler)  # fmt: skip
    assert SCENES in result.text
    with pytest.raises(InvalidRequest, match="video_sampling.*'uniform' or 'scenes'"):
        api.describe(scenes, "echo-test", video_sampling="cuts", scheduler=scheduler)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "imgscribe", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)  # fmt: skip


def test_run_in_a_subprocess_takes_a_clip_with_the_models_parameter_and_video_sampling(scheduler, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(moving_clip())
    (tmp_path / "scenes.mp4").write_bytes(scene_clip())
    done = _cli("run", "echo-short-clips", "what happens? ./clip.mp4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Added video '{tmp_path / 'clip.mp4'}'" in done.stderr
    assert "(0:04 long): the 2 images" in done.stdout and "| 2 image(s)" in done.stdout  # PARAMETER video_max_tokens
    done = _cli("run", "echo-test", "--video-sampling", "scenes", "-o", "video_max_tokens=1536", "./scenes.mp4",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert SCENES in done.stdout
    done = _cli("run", "echo-test", "--video-sampling", "cuts", "./scenes.mp4", cwd=tmp_path)
    assert done.returncode == 2 and "--video-sampling" in done.stderr and "uniform or scenes" in done.stderr
    assert "Traceback" not in done.stderr


def test_describe_video_sampling_in_a_subprocess(scheduler, tmp_path):
    import json

    (tmp_path / "scenes.mp4").write_bytes(scene_clip())
    done = _cli("describe", "--model", "echo-test", "-o", "video_max_tokens=1536", "--video-sampling", "scenes",
                "scenes.mp4", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert record["video"]["timestamps"] == [0.5, 2.3, 3.2] and SCENES in record["response"]
    done = _cli("describe", "--model", "echo-test", "--video-sampling", "all", "scenes.mp4", cwd=tmp_path)
    assert done.returncode == 2 and "uniform or scenes" in done.stderr
    (tmp_path / "clip.mp4").write_bytes(moving_clip())
    for option, frames in (([], 2), (["-o", "video_max_tokens=2048"], 4)):  # the model's PARAMETER, then the job's option
        done = _cli("describe", "--model", "echo-short-clips", *option, "clip.mp4", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [record] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert len(record["video"]["timestamps"]) == frames and f"| {frames} image(s)" in record["response"]


@pytest.mark.slow
def test_run_builtin_in_a_subprocess_describes_a_clip(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(moving_clip())
    done = _cli("run", "builtin", "what happens? ./clip.mp4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Added video" in done.stderr
    assert done.stdout.startswith("imgscribe's builtin model is not a video model: it describes this 0:04 clip "
                                  "from 8 key frames")  # an open question: it says what to use instead
    assert "Traceback" not in done.stderr


def _reader(**limits) -> ImageReader:
    return ImageReader(settings(**limits))


def test_each_frame_of_a_clip_counts_against_the_request_images_before_any_decoding():
    clip = base64.b64encode(moving_clip()).decode()  # 8 frames at the default budget
    video.decoded_frames = -1
    with pytest.raises(ImageTooLarge, match=r"9 images or more, counting each frame sampled from a clip "
                                            r"\(images\[1\]: 8 frames\), over the limit of 8"):  # fmt: skip
        _reader(max_request_images=8).read_request([[(base64.b64encode(_png()).decode(), "images[0]"),
                                                     (clip, "images[1]")]], media=True)  # fmt: skip
    assert video.decoded_frames == -1  # refused from the clip's header
    [[got]], lease = _reader(max_request_images=8).read_request([[(clip, "images[0]")]], media=True)
    assert len(got.frames) == 8
    lease.release()
    [[got]], lease = _reader(max_request_images=3).read_request(
        [[(clip, "images[0]")]], media=True, clips=lambda: video.clip_settings({"video_max_tokens": 1536}))  # 3 frames: fits
    assert len(got.frames) == 3
    lease.release()


def test_the_frames_limit_is_a_413_on_the_http_api(monkeypatch, scheduler):
    monkeypatch.setenv("IMGSCRIBE_MAX_REQUEST_IMAGES", "4")
    with TestClient(create_app(scheduler)) as client:
        body = {"model": "echo-test", "stream": False, "prompt": "x", "images": [base64.b64encode(moving_clip()).decode()]}
        r = client.post("/api/generate", json=body)
        assert r.status_code == 413 and "counting each frame sampled from a clip" in r.json()["error"]
        assert "video_max_tokens" in r.json()["error"]
        r = client.post("/api/generate", json={**body, "options": {"video_max_tokens": 2048}})  # 4 frames
        assert r.status_code == 200 and "| 4 image(s)" in r.json()["response"]


def test_a_clip_takes_its_decode_room_in_the_budget_before_decoding():
    data = moving_clip()  # 128 x 96
    head = video.probe(data)
    assert head.frames == 8 and head.cost == video.DECODE_COPIES * 128 * 96 + head.held
    reader = _reader(decode_pixels=head.cost)
    clip = [[(base64.b64encode(data).decode(), "images[0]")]]
    other = reader.budget.acquire(head.cost)  # the whole budget taken: the clip must wait its turn
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    video.decoded_frames = -1
    with pytest.raises(Cancelled):
        reader.read_request(clip, cancel, media=True)
    assert video.decoded_frames == -1  # it waited for the room before decoding anything
    other.release()
    [[got]], lease = reader.read_request(clip, media=True)
    assert reader.budget.peak == head.cost and video.decoded_frames > 0
    assert lease.pixels == sum(f.size[0] * f.size[1] for f in got.frames) == head.held  # the frames, held
    lease.release()
    assert reader.budget.held == 0
    scenes = video.probe(data, sampling="scenes", max_tokens=1536)
    assert scenes.frames == 3 and scenes.cost == video.DECODE_COPIES * 128 * 96 + 3 * scenes.held  # 9 candidates


def _png() -> bytes:
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (16, 16), "red").save(out, "PNG")
    return out.getvalue()


def test_an_animated_gif_is_timed_by_each_frames_delay_and_sampled_at_its_scene_changes():
    """Pillow (as most encoders) stores repeated frames once, with a longer delay: three frames of 2 s,
    0.5 s and 5.5 s. Times come from each frame's own delay (the first one's was used for all)."""
    import io

    from PIL import Image as PILImage

    shots = [PILImage.new("RGB", (32, 32), c) for c in ["black"] * 20 + ["red"] * 5 + ["white"] * 55]
    out = io.BytesIO()
    shots[0].save(out, "GIF", save_all=True, append_images=shots[1:], duration=100, loop=0)  # 8 s at 10 fps
    data = out.getvalue()
    colours = lambda clip: [f.pil.getpixel((16, 16)) for f in clip.frames]  # noqa: E731
    uniform = video.read_video(data, max_tokens=1536)  # at 1.3, 4.0, 6.7 s: black, white (held)
    assert uniform.duration == 8.0 and colours(uniform) == [(0, 0, 0), (255, 255, 255)]
    assert uniform.timestamps == [0.0, 2.5]
    scenes = video.read_video(data, max_tokens=1536, sampling="scenes")
    assert colours(scenes) == [(0, 0, 0), (255, 0, 0), (255, 255, 255)] and scenes.timestamps == [0.0, 2.0, 2.5]
    head = video.probe(data, max_tokens=1536, sampling="scenes")
    assert head.frames == 3 and head.cost == 3 * 32 * 32 + 3 * 32 * 32  # every frame decoded; the candidates


def test_the_models_parameters_are_read_only_when_a_request_has_a_clip():
    """A route's ``clips`` (the model's manifest, from the store when it is not loaded) is asked only
    for a request with a clip: images alone cost no manifest read."""
    asked = []

    def clips():
        asked.append(1)
        return {"max_tokens": 1024, "sampling": "uniform"}

    png = base64.b64encode(_png()).decode()
    [[image]], lease = _reader().read_request([[(png, "images[0]")]], media=True, clips=clips)
    lease.release()
    assert asked == [] and image.size == (16, 16)
    clip = base64.b64encode(moving_clip()).decode()
    [[got, again]], lease = _reader().read_request([[(clip, "images[0]"), (clip, "images[1]")]], media=True,
                                                   clips=clips)  # fmt: skip
    lease.release()
    assert asked == [1] and len(got.frames) == len(again.frames) == 2
