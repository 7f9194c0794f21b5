"""Videos wherever images are accepted (issue 18): clips made here with PyAV (moving shapes, a frame
with text, rotation metadata, a broken file, a 2-hour empty clip), sniffed by content, sampled
uniformly with their times without decoding the whole file, within the limits; through
``imgscribe.api``, the Ollama HTTP API (an echo model reports the frames it got), ``run``'s prompt
paths, and ``builtin``, which describes the key frames and says it is not a video model."""

from __future__ import annotations

import base64
import fractions
import io
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from PIL import ImageDraw

from imgscribe import api, video
from imgscribe.engines import frames
from imgscribe.errors import ImageTooLarge, InvalidImage
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.store import Store
from imgscribe.types import (
    ChatRequest,
    Image,
    Message,
    ModelInfo,
    ModelManifest,
    Options,
    Video,
)


def add_echo(store: Store, name: str, capabilities: tuple[str, ...] = ("completion", "vision"), **parameters) -> None:
    """An echo model (as tests/server/conftest.py's): it answers with the prompt and the images it got;
    ``parameters`` as a Modelfile's PARAMETER lines."""
    info = ModelInfo(name=name, engine="echo", family="echo", capabilities=list(capabilities), context_length=4096)
    store.create(name, ModelManifest(name=name, engine="echo", info=info, parameters=parameters))


def encode_clip(pictures, fps: float = 5, fmt: str = "mp4", codec: str = "mpeg4", rotation: int = 0,
                gop: int = 10, size: tuple[int, int] | None = None) -> bytes:  # fmt: skip
    """A clip of ``pictures`` (RGB arrays, or a count of grey frames of ``size``) made with PyAV."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1000))
        first = pictures[0] if not isinstance(pictures, int) else None
        stream.height, stream.width = first.shape[:2] if first is not None else (size[1], size[0])
        stream.pix_fmt, stream.gop_size = "yuv420p", gop
        if rotation:
            stream.set_display_rotation(rotation)
        count = pictures if isinstance(pictures, int) else len(pictures)
        blank = np.full((stream.height, stream.width, 3), 40, np.uint8)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(blank if first is None else pictures[i], format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def moving_clip(frames: int = 20, fps: float = 5, size: tuple[int, int] = (128, 96), **kw) -> bytes:
    """A red square crossing a dark background, left to right."""
    w, h = size
    pictures = []
    for i in range(frames):
        a = np.full((h, w, 3), 30, np.uint8)
        x = int(i * (w - 32) / max(1, frames - 1))
        a[h // 2 - 16 : h // 2 + 16, x : x + 32] = (230, 20, 20)
        pictures.append(a)
    return encode_clip(pictures, fps, **kw)


def text_clip() -> bytes:
    """Two seconds of a white card reading STOP in large black letters."""
    pil = PILImage.new("RGB", (320, 160), "white")
    ImageDraw.Draw(pil).text((40, 30), "STOP", fill="black", font_size=90)
    return encode_clip([np.asarray(pil)] * 10, fps=5)


def test_containers_are_sniffed_by_content():
    assert video.container_of(moving_clip()) == "MP4"
    assert video.container_of(moving_clip(fmt="webm", codec="libvpx-vp9", frames=6)) == "WEBM"
    assert video.container_of(moving_clip(fmt="matroska", frames=4)) == "MKV"
    png = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(png, "PNG")
    assert video.container_of(png.getvalue()) is None and not video.is_media(png.getvalue())


def test_frames_are_sampled_uniformly_with_their_times():
    clip = video.read_video(moving_clip(frames=20, fps=5))  # 4 s
    assert isinstance(clip, Video) and clip.format == "MP4" and clip.duration == pytest.approx(4.0)
    assert clip.size == (128, 96) and clip.fps == pytest.approx(5.0)
    n = len(clip.frames)
    assert n == len(clip.timestamps) == 8  # the default budget: 8 frames of 512 tokens
    assert clip.timestamps == sorted(clip.timestamps) and 0 <= clip.timestamps[0] < 1 and clip.timestamps[-1] > 3
    assert all(isinstance(f, Image) and f.format == "JPEG" and f.data[:2] == b"\xff\xd8" for f in clip.frames)
    # the square moves right: its column in the first frame is left of the last
    first, last = (np.asarray(f.pil)[:, :, 0] > 150 for f in (clip.frames[0], clip.frames[-1]))
    assert np.argwhere(first)[:, 1].mean() < np.argwhere(last)[:, 1].mean()


def test_the_budget_sets_the_number_and_size_of_frames():
    big = moving_clip(frames=40, fps=10, size=(1280, 720))
    few = video.read_video(big, max_tokens=1024)
    assert len(few.frames) == 2 and few.tokens_per_frame == 512
    w, h = few.frames[0].size
    assert w * h <= 512 * video.PIXELS_PER_TOKEN and abs(w / h - 16 / 9) < 0.05
    many = video.read_video(big, max_tokens=8 * 1024)
    assert len(many.frames) == 8  # 2 a second at most: a 4 s clip
    assert video.plan(3600, (1920, 1080), 100_000)[0] == video.MAX_FRAMES


def test_rotation_metadata_is_applied():
    clip = video.read_video(moving_clip(rotation=90))  # stored 128 x 96, shown on its side
    assert clip.size == (96, 128)
    assert all(f.size[0] < f.size[1] for f in clip.frames)


def test_broken_and_truncated_files_are_clear_errors(tmp_path):
    good = moving_clip()
    for data in (good[: len(good) // 3], b"\x00\x00\x00\x18ftypisom" + b"\x07" * 200, b"\x1a\x45\xdf\xa3" + b"x" * 50):
        with pytest.raises(InvalidImage) as err:
            video.read_video(data)
        assert "video" in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises(InvalidImage, match="not a video"):
        video.read_video(b"plain text, not a clip")


def test_a_two_hour_clip_is_not_decoded_whole():
    long = encode_clip(7200, fps=1, size=(32, 32), gop=30)  # 2 hours, one frame a second
    began = time.perf_counter()
    clip = video.read_video(long)
    took = time.perf_counter() - began
    assert clip.duration == pytest.approx(7200, abs=1) and len(clip.frames) == 8
    assert clip.timestamps[0] == pytest.approx(450, abs=1) and clip.timestamps[-1] == pytest.approx(6750, abs=1)
    assert video.decoded_frames < 8 * 31 + 8 < 7200 / 20  # a group of pictures per sample, at most
    assert took < 5
    with pytest.raises(ImageTooLarge, match=r"2:00:00 long, over the limit of 1:00:00"):
        video.read_video(long, max_duration=3600)


def test_frame_pixels_over_the_limit_are_refused():
    with pytest.raises(ImageTooLarge, match="a frame of the video has 12,288 pixels"):
        video.read_video(moving_clip(), max_pixels=10_000)


def test_an_animated_gif_is_a_video():
    pictures = [PILImage.new("RGB", (40, 30), (i * 20, 0, 0)) for i in range(12)]
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=250, loop=0)
    clip = video.read_media(out.getvalue())
    assert isinstance(clip, Video) and clip.format == "GIF" and clip.duration == pytest.approx(3.0)
    assert len(clip.frames) == 6 and clip.timestamps[0] < clip.timestamps[-1] <= 2.75
    still = io.BytesIO()
    pictures[0].save(still, "GIF")
    assert isinstance(video.read_media(still.getvalue()), Image)


def test_a_video_message_becomes_frames_and_timestamps():
    clip = video.read_video(moving_clip(), source_name="clip.mp4")
    request = ChatRequest("m", [Message("user", "What happens?", [], [clip])])
    flat = frames.flatten(request)
    [message] = flat.messages
    assert message.videos == [] and message.images == clip.frames
    assert message.content.startswith("Video clip.mp4 (0:04 long): the 8 images after any others are its frames")
    assert "frame at 0:00.4" in message.content and message.content.endswith("What happens?")
    assert frames.for_runner(request, type("Native", (), {"native_video": True})()) is request
    assert Options(video_max_tokens=2048).video_max_tokens == 2048


# -- through the front doors -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def scheduler(tmp_path):
    store = Store(tmp_path / "models")
    add_echo(store, "echo-test")
    add_echo(store, "echo-text", capabilities=["completion"])
    scheduler = Scheduler(store, num_parallel=0)
    yield scheduler
    scheduler.close()


def test_through_the_python_api(scheduler, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(moving_clip())
    result = api.chat("echo-test", [{"role": "user", "content": "What happens?", "images": [str(path)]}],
                      scheduler=scheduler, options={"video_max_tokens": 2048})  # fmt: skip
    assert f"Video {path} (0:04 long): the 4 images" in result.text
    assert "| 4 image(s):" in result.text


def test_through_the_ollama_api(scheduler):
    with TestClient(create_app(scheduler)) as client:
        clip = b64(moving_clip())
        body = {"model": "echo-test", "stream": False,
                "messages": [{"role": "user", "content": "What happens?", "images": [clip]}]}  # fmt: skip
        r = client.post("/api/chat", json=body)
        assert r.status_code == 200, r.text
        text = r.json()["message"]["content"]
        assert "Video messages[0].images[0] (0:04 long)" in text and "| 8 image(s): 128x96" in text
        r = client.post("/api/generate", json={"model": "echo-test", "stream": False, "prompt": "What happens?",
                                               "images": [clip], "options": {"video_max_tokens": 1024}})  # fmt: skip
        assert r.status_code == 200 and "| 2 image(s)" in r.json()["response"]
        r = client.post("/api/generate", json={"model": "echo-test", "stream": False, "prompt": "x",
                                               "images": [b64(moving_clip()[:1000])]})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"].startswith("images[0] could not be read as an MP4 video")
        r = client.post("/api/generate", json={"model": "echo-text", "stream": False, "prompt": "x", "images": [clip]})
        assert r.status_code == 400 and "vision" in r.json()["error"]


def test_through_the_openai_api_as_video_url(scheduler):
    with TestClient(create_app(scheduler)) as client:
        uri = f"data:video/mp4;base64,{b64(moving_clip())}"
        parts = [{"type": "text", "text": "What happens?"}, {"type": "video_url", "video_url": {"url": uri}}]
        body = {"model": "echo-test", "messages": [{"role": "user", "content": parts}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        text = r.json()["choices"][0]["message"]["content"]
        assert "Video messages[0].content[1].video_url (0:04 long)" in text and "| 8 image(s)" in text
        r = client.post("/v1/chat/completions", json={**body, "video_max_tokens": 1024})  # extra_body
        assert r.status_code == 200 and "| 2 image(s)" in r.json()["choices"][0]["message"]["content"]
        parts[1] = {"type": "video_url"}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 400 and "messages[0].content[1].video_url" in r.text


def test_run_prompt_paths_attach_a_clip(tmp_path, monkeypatch, capsys):
    from imgscribe.cli.run import _user_turn

    (tmp_path / "clip.mp4").write_bytes(moving_clip())
    monkeypatch.chdir(tmp_path)
    turn = _user_turn("What happens in ./clip.mp4 ?")
    assert turn.images == [] and len(turn.videos) == 1 and len(turn.videos[0].frames) == 8
    assert "clip.mp4" not in turn.content and "Added video" in capsys.readouterr().err
    turn = _user_turn("", [tmp_path / "clip.mp4"])  # --image
    assert len(turn.videos) == 1 and turn.content


@pytest.mark.slow
def test_builtin_describes_key_frames_and_says_it_is_not_a_video_model(tmp_path):
    path = tmp_path / "stop.mp4"
    path.write_bytes(text_clip())
    result = api.chat("builtin", [{"role": "user", "content": "Describe this.", "images": [str(path)]}])
    assert result.text.startswith("imgscribe's builtin model is not a video model: it describes this 0:02 clip")
    assert "Frame at 0:00" in result.text and "unchanged from the frame before" in result.text
    assert "STOP" in result.text.upper()


def test_describe_a_folder_of_clips_one_record_each_with_frame_times(scheduler, tmp_path):
    import json

    from imgscribe.batch.job import Job, execute
    from imgscribe.batch.prompts import Prompt
    from imgscribe.client import LocalClient

    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(moving_clip())
    (folder / "b.webm").write_bytes(moving_clip(fmt="webm", codec="libvpx-vp9", frames=10))
    (folder / "broken.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  " + b"\x00" * 64)
    out = tmp_path / "out.jsonl"
    job = Job(sources=[str(folder)], model="echo-test", prompts=[Prompt("response", "What happens?")],
              outputs=[str(out)])  # fmt: skip
    stats, _ = execute(job, [LocalClient(scheduler)])
    assert (stats.done, stats.failed) == (2, 1)
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    a = records["a.mp4"]
    assert a["video"]["duration"] == pytest.approx(4.0) and len(a["video"]["timestamps"]) == 8
    assert "| 8 image(s)" in a["response"] and len(a["timings"]["images"]) == 8
    assert records["b.webm"]["video"]["format"] == "WEBM"
    assert "MOV video" in records["broken.mov"]["error"]
    again, _ = execute(job, [LocalClient(scheduler)])  # resumes like images: nothing redone
    assert again.done == 0 and again.skipped >= 2, again


def test_webvtt_captions_of_what_happens_when(scheduler, tmp_path):
    from imgscribe.batch.job import Job, execute
    from imgscribe.batch.prompts import Prompt
    from imgscribe.client import LocalClient

    text = ("not a video model.\nFrame at 0:00.4: A plain card.\nFrame at 0:01.2: unchanged from the frame before.\n"
            "Frame at 0:02.8: A red square.")  # fmt: skip
    vtt = video.webvtt(4.0, [0.4, 1.2, 2.8], text)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:02.800\nA plain card.\n")
    assert "2\n00:00:02.800 --> 00:00:04.000\nA red square." in vtt
    (tmp_path / "clip.mp4").write_bytes(moving_clip())
    job = Job(sources=[str(tmp_path / "clip.mp4")], model="echo-test", prompts=[Prompt("response", "What happens?")],
              outputs=[str(tmp_path / "out.jsonl")], sidecar="response", sidecar_ext=".vtt")  # fmt: skip
    stats, _ = execute(job, [LocalClient(scheduler)])
    assert stats.done == 1
    captions = (tmp_path / "clip.vtt").read_text()
    assert captions.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:04.000\necho: Video ")


def scene_clip() -> bytes:
    """Three shots at 10 fps: dark (0-2 s), red (2.0-2.5 s), white (2.5-8 s)."""
    shots = [np.full((64, 64, 3), 20, np.uint8)] * 20 + [np.full((64, 64, 3), (220, 0, 0), np.uint8)] * 5
    shots += [np.full((64, 64, 3), 250, np.uint8)] * 55
    return encode_clip(shots, fps=10)


def test_scene_change_sampling_finds_the_cuts():
    """Three shots (dark, red, white) of unequal length: uniform sampling misses the short one,
    scene sampling keeps a frame of each."""
    clip = scene_clip()  # 8 s; red from 2.0 to 2.5 s
    colours = {tuple(int(c) // 100 for c in np.asarray(f.pil).reshape(-1, 3).mean(0)) for f in
               video.read_video(clip, max_tokens=1536, sampling="scenes").frames}  # fmt: skip
    assert {(0, 0, 0), (2, 0, 0), (2, 2, 2)} <= colours
    uniform = video.read_video(clip, max_tokens=1536)
    assert len(uniform.frames) == 3 and not any(np.asarray(f.pil)[..., 1].mean() < 50 < np.asarray(f.pil)[..., 0].mean()
                                                for f in uniform.frames)  # fmt: skip
