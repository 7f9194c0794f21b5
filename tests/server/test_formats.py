"""What Ollama gets wrong about images, right through the server: EXIF orientation, HEIC, AVIF, GIF."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image as PILImage

from .conftest import b64

pytestmark = pytest.mark.timeout(60)


def encode(fmt: str, size=(60, 40), orientation: int | None = None) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    kw = {}
    if orientation:
        exif = PILImage.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    PILImage.new("RGB", size, "orange").save(buf, fmt, **kw)
    return buf.getvalue()


def described(server, data: bytes) -> str:
    r = httpx.post(
        server.url + "/api/generate", json={"model": "llava", "prompt": "x", "images": [b64(data)], "stream": False}
    )
    assert r.status_code == 200, r.text
    return r.json()["response"]


def test_exif_orientation_is_applied(server):
    assert "1 image(s): 60x40" in described(server, encode("JPEG"))
    assert "1 image(s): 40x60" in described(server, encode("JPEG", orientation=6)), "rotated upright"


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "GIF", "WEBP", "TIFF", "BMP"])
def test_formats_ollama_refuses_are_accepted(server, fmt):
    assert "1 image(s): 60x40" in described(server, encode(fmt))


def test_not_an_image_is_a_clear_400(server):
    r = httpx.post(
        server.url + "/api/generate", json={"model": "llava", "prompt": "x", "images": [b64(b"%PDF-1.7 hello")]}
    )
    assert r.status_code == 400 and "PDF" in r.json()["error"]
