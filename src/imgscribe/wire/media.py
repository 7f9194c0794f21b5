"""Images as they travel to a model server: bytes it can decode, base64, data URIs."""

from __future__ import annotations

import base64
import io

from PIL import Image as PILImage

from ..types import Image

__all__ = ["b64", "data_uri", "decodable", "encode_image", "original"]

_PNG_MAX_PIXELS = 2_000_000  # larger re-encoded images go as JPEG (quality 95): PNG is slow to write


def encode_image(image: Image) -> tuple[bytes, str]:
    """The bytes to send for an image, and their MIME type.

    llama.cpp (llama-server, Ollama) decodes with stb_image (JPEG, PNG, BMP, GIF...) and knows
    nothing of EXIF orientation, transparency or HEIC/WebP/AVIF/TIFF. The original bytes go as they
    are only when they would decode to exactly what intake produced (an upright RGB/grey JPEG or
    opaque RGB PNG); anything else is re-encoded from the normalised picture.
    """
    if image.format in ("JPEG", "PNG") and image.data and _forwardable(image):
        return image.data, "image/jpeg" if image.format == "JPEG" else "image/png"
    buf = io.BytesIO()
    pil = image.pil if image.pil.mode == "RGB" else image.pil.convert("RGB")
    if pil.size[0] * pil.size[1] <= _PNG_MAX_PIXELS:
        pil.save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), "image/png"
    pil.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), "image/jpeg"


def _forwardable(image: Image) -> bool:
    try:
        with PILImage.open(io.BytesIO(image.data)) as im:  # header only: cheap
            if im.size != image.size:
                return False  # rotated by its EXIF orientation
            if im.getexif().get(0x0112, 1) not in (0, 1):
                return False  # a flip keeps the size
            if image.format == "JPEG":
                return im.mode in ("RGB", "L")
            return im.mode in ("RGB", "L") and "transparency" not in im.info
    except Exception:  # noqa: BLE001 - when in doubt, re-encode
        return False


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decodable(image: Image) -> str:
    """The image as base64 of bytes llama.cpp decodes as intake did (Ollama's ``images``,
    llama-server's ``multimodal_data``)."""
    return b64(encode_image(image)[0])


def original(image: Image) -> str:
    """The image's own bytes as base64 (to a server that does its own intake: imgscribe's)."""
    return b64(image.data)


def data_uri(image: Image) -> str:
    data, mime = encode_image(image)
    return f"data:{mime};base64," + b64(data)
