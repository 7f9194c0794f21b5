"""The request path's per-request work (issue 19): each image is opened as few times as its reading
needs, with the same answers as before; the Host check's cache keeps its decisions; a body's
strings come back as sent (lone surrogates still replaced)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image as PILImage

from imgscribe.images import header
from imgscribe.server import hosts
from imgscribe.server.inputs import ImageReader
from imgscribe.server.wire import load_json
from imgscribe.config import settings
from imgscribe.video import is_media

from .conftest import b64


def _saved(fmt: str, frames: int = 1, mode: str = "RGB", **kw) -> bytes:
    ims = [PILImage.new(mode, (32, 24), (40 * i, 90, 200) if mode == "RGB" else (40 * i, 90, 200, 128))
           for i in range(frames)]  # fmt: skip
    buf = io.BytesIO()
    if frames > 1:
        kw.update(save_all=True, append_images=ims[1:], duration=100)
    ims[0].save(buf, format=fmt, **kw)
    return buf.getvalue()


SAMPLES = {
    "png": _saved("PNG"),
    "png-text": _saved("PNG", pnginfo=None),
    "apng": _saved("PNG", frames=3),
    "apng-default-image": _saved("PNG", frames=2, default_image=True),
    "webp-lossy": _saved("WEBP"),
    "webp-lossless": _saved("WEBP", lossless=True),
    "webp-alpha": _saved("WEBP", mode="RGBA"),
    "webp-animated": _saved("WEBP", frames=3),
    "gif": _saved("GIF"),
    "gif-animated": _saved("GIF", frames=3),
    "jpeg": _saved("JPEG"),
}


def _pillow_says(data: bytes) -> bool:
    with PILImage.open(io.BytesIO(data)) as im:
        return bool(getattr(im, "is_animated", False))


@pytest.mark.parametrize("name", SAMPLES)
def test_is_media_agrees_with_pillow(name):
    assert is_media(SAMPLES[name]) == _pillow_says(SAMPLES[name]), name


class _CountOpens:
    def __init__(self, monkeypatch):
        self.count = 0
        real = PILImage.open

        def counted(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(PILImage, "open", counted)


@pytest.mark.parametrize("name", ["png", "webp-lossy", "webp-alpha", "jpeg"])
def test_a_still_png_or_webp_is_known_still_without_opening_it(monkeypatch, name):
    opens = _CountOpens(monkeypatch)
    assert not is_media(SAMPLES[name])
    assert opens.count == 0


@pytest.mark.parametrize("name", ["png", "jpeg", "webp-alpha", "gif"])
@pytest.mark.parametrize("side", [0, 8, 16, 31, 64])
def test_a_header_at_another_side_is_the_header_read_at_that_side(name, side):
    data = SAMPLES[name]
    assert header(data, max_bytes=0, max_pixels=0).at_side(side) == header(data, max_bytes=0, max_pixels=0,
                                                                          max_side=side)  # fmt: skip


def test_a_request_opens_each_still_image_twice_header_and_decode(monkeypatch):
    """A still PNG on a route that takes clips, with the loaded engine's own image side: its header
    once (not again at the engine's side), its pixels once; nothing else opens it."""
    reader = ImageReader(settings())
    opens = _CountOpens(monkeypatch)
    asked = []

    def side(width, height):
        asked.append((width, height))
        return 16

    groups = [ImageReader.labelled([b64(SAMPLES["png"])], "images")]
    (images,), lease = reader.read_request(groups, max_side=side, media=True)
    lease.release()
    assert asked == [(32, 24)] and images[0].size == (32, 24)  # a PNG is decoded whole
    assert opens.count == 2


def test_the_host_check_decides_the_same_from_its_cache(server):
    hosts.allowed_host.cache_clear()
    for _ in range(3):
        assert httpx.get(server.url + "/api/version", headers={"Host": "evil.example"}).status_code == 403
        assert httpx.get(server.url + "/api/version", headers={"Host": "localhost:1"}).status_code == 200
        assert httpx.get(server.url + "/api/version", headers={"Host": "1.2.3.4"}).status_code == 403
    info = hosts.allowed_host.cache_info()
    assert info.misses == 3 and info.hits == 6


def test_body_strings_come_back_as_sent_and_lone_surrogates_are_replaced():
    image = b64(SAMPLES["png"])
    raw = ('{"model": "m", "prompt": "caf\u00e9 \\u00e9 \\ud83d\\ude00 a\\ud800b", "images": ["%s"]}' % image).encode()
    body = load_json(raw)
    assert body["images"] == [image]
    assert body["prompt"] == "caf\u00e9 \u00e9 \U0001f600 a\ufffdb"
    assert load_json(b'{"\\udc00": ["x\\udfff"]}') == {"\ufffd": ["x\ufffd"]}
