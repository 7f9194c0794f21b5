"""POST /ui/preview: the web page's thumbnail of an image the browser cannot show (HEIC), decoded by
the server under the API's own limits and guards."""

from __future__ import annotations

import io

import httpx
from PIL import Image


def _heic(size=(640, 480)) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="HEIF")
    return buf.getvalue()


def test_a_heic_becomes_a_small_jpeg(server):
    answer = httpx.post(server.url + "/ui/preview", content=_heic((2000, 1500)), trust_env=False, timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(answer.content)).size == (512, 384)


def test_hostile_previews_are_clear_errors(server, monkeypatch):
    broken = httpx.post(server.url + "/ui/preview", content=b"not an image at all", trust_env=False, timeout=30)
    assert broken.status_code == 400 and "error" in broken.json()
    foreign = httpx.post(server.url + "/ui/preview", content=_heic(), headers={"Origin": "https://evil.example"},
                         trust_env=False, timeout=30)  # fmt: skip
    assert foreign.status_code == 403
    empty = httpx.post(server.url + "/ui/preview", content=b"", trust_env=False, timeout=30)
    assert empty.status_code == 400


def test_a_preview_over_the_size_limit_is_413(scheduler, monkeypatch):
    from server.conftest import live_server

    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_BYTES", "1000")
    with live_server(scheduler) as live:
        answer = httpx.post(live.url + "/ui/preview", content=b"x" * 5000, trust_env=False, timeout=30)
    assert answer.status_code == 413


def test_the_preview_needs_the_key_when_one_is_set(scheduler, monkeypatch):
    from server.conftest import live_server

    monkeypatch.setenv("IMGSCRIBE_API_KEY", "k-1")
    with live_server(scheduler) as live:
        assert httpx.post(live.url + "/ui/preview", content=_heic(), trust_env=False, timeout=30).status_code == 401
        ok = httpx.post(live.url + "/ui/preview", content=_heic(), headers={"Authorization": "Bearer k-1"},
                        trust_env=False, timeout=30)  # fmt: skip
        assert ok.status_code == 200
