"""Image intake: every front door turns a path, bytes, base64 or data URI into one normalised Image.

The format is sniffed from the content, never the name. Limits are checked before anything large is
allocated: the byte size before reading or base64-decoding, the pixel count from the header before
decoding. The result is RGB, upright (EXIF orientation applied) and flattened on white.

:func:`header` reads what decoding will cost without decoding (a server checks a whole request's
images, and waits for room to decode them, before it decodes any). With ``max_side`` (what a model
looks at, at most, on an image's long side), a JPEG much larger than that is decoded at 1/2, 1/4 or
1/8 of its size by the JPEG decoder itself, and a WebP is reduced as soon as it is decoded (Pillow
cannot decode WebP at a reduced size); never below ``max_side``. ``sha256``, ``data`` and
``original_size`` stay those of the image as sent.
"""

from __future__ import annotations

import binascii
import hashlib
import math
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .config import settings
from .errors import ImageTooLarge, InvalidImage
from .image_codecs import (
    SUPPORTED_FORMATS,
    check_bytes,
    check_pixels,
    decode_frames,
    header_orientation,
    identify,
    jpeg_scale,
    open_image,
    reduction,
    sniff,
    stored_size,
    webp_header,
)
from .types import Image

__all__ = ["SUPPORTED_FORMATS", "Header", "decode_base64", "header", "intake", "read_bytes"]

_IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib",
               ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif",
               ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")  # fmt: skip  (videos: imgscribe.video)
_PATH_START = re.compile(r"(~|\.{1,2}[/\\]|/|[A-Za-z]:[/\\]|\\\\)")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_URLSAFE = bytes.maketrans(b"-_", b"+/")



def intake(
    source: str | bytes | os.PathLike,
    *,
    all_frames: bool = False,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    source_name: str | None = None,
    max_side: int = 0,
) -> Image:
    """Read, check and normalise one image (see the module docstring). Limits <= 0 turn a check off.

    ``max_side`` > 0: a large JPEG or WebP may come out smaller, down to no less than ``max_side``
    pixels on its long side (the module docstring). Raises InvalidImage (unreadable, unsupported,
    not an image) or ImageTooLarge (over a limit). A server that fetches URLs passes the downloaded
    bytes here.
    """
    max_bytes, max_pixels = _limits(max_bytes, max_pixels)
    data, label, fmt = _sniffed(source, max_bytes, source_name)
    im = open_image(data, fmt, label)
    original_size = stored_size(im)
    check_pixels(im.size[0] * im.size[1], max_pixels)
    factor = reduction(im.size, max_side, fmt) if not all_frames else 1
    if factor > 1 and fmt == "JPEG":
        w, h = im.size
        try:
            im.draft(None, (max(1, w // factor), max(1, h // factor)))  # libjpeg decodes at 1/factor
        except Exception:  # noqa: BLE001 - a header draft cannot use: decoded at full size
            pass
        factor = 1
    frames = decode_frames(im, fmt, label, all_frames, max_pixels)
    del im  # the reader and its decoder's buffers (a WebP canvas) go now, not with the result
    if factor > 1:
        frames[0] = frames[0].reduce(factor)
    return Image(
        pil=frames[0],
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        original_size=original_size,
        byte_size=len(data),
        data=data,
        frames=tuple(frames) if all_frames else (),
        source=label,
    )


@dataclass(frozen=True)
class Header:
    """What decoding an image will cost, read from its header without decoding it."""

    format: str
    size: tuple[int, int]  # (width, height) in the file
    decoded_size: tuple[int, int]  # what intake(max_side=...) decodes to, before orientation
    cost: int  # room the decode needs at its peak, in pixels of 4 bytes (Pillow's RGB)
    mode: str = "RGB"  # the header's facts the cost comes from (at_side reuses them)
    transparent: bool = False
    turned: bool = False

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def held(self) -> int:
        """Pixels the decoded image keeps once decoding is over."""
        return self.decoded_size[0] * self.decoded_size[1]

    def at_side(self, max_side: int) -> Header:
        """This header as :func:`header` reads it with ``max_side``, without reading the image again."""
        return _costed(self.format, self.size, self.mode, self.transparent, self.turned, max_side)


def header(
    source: str | bytes | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    source_name: str | None = None,
    max_side: int = 0,
) -> Header:
    """The format, size and decoding cost of an image, checked against the limits as
    :func:`intake` checks them (the same errors), without decoding its pixels.

    ``cost`` counts each pixel once per copy of it that exists at the worst moment of decoding,
    measured with Pillow 13: the decoded frame; a converted copy for a frame not in RGB (palette,
    grey, alpha; transparency without alpha goes through RGBA: one more; 16- and 32-bit grey go
    through NumPy: two and three more); a turned copy for an EXIF orientation; WebP's decoder keeps its own canvas
    and a copy of the frame's bytes (three more); HEIF/AVIF decoders keep one. A quarter more
    covers the readers' small buffers.
    """
    max_bytes, max_pixels = _limits(max_bytes, max_pixels)
    data, label, fmt = _sniffed(source, max_bytes, source_name)
    facts = webp_header(data) if fmt == "WEBP" else None
    if facts is None:  # the others read their header lazily (pillow's WebP reader allocates its canvas)
        im = open_image(data, fmt, label)
        size, mode = im.size, im.mode
        transparent = im.has_transparency_data
        turned = header_orientation(im, fmt) != 1
        im.close()
    else:
        size, transparent, turned = facts
        mode = "RGBA" if transparent else "RGB"
    check_pixels(size[0] * size[1], max_pixels)
    return _costed(fmt, size, mode, transparent, turned, max_side)


def _costed(fmt: str, size: tuple[int, int], mode: str, transparent: bool, turned: bool, max_side: int) -> Header:
    """The header's decoded size and cost at ``max_side`` (:func:`header`'s docstring)."""
    factor = reduction(size, max_side, fmt)
    if fmt == "JPEG":
        factor = jpeg_scale(size, factor)
    decoded = (-(-size[0] // factor), -(-size[1] // factor))
    decoding = size if fmt == "WEBP" else decoded  # a WebP is reduced after decoding
    quarters = 5
    if mode != "RGB" or transparent:
        quarters += 4 + (8 if mode.startswith("I;16") else 12 if mode[:1] in ("I", "F") else 0)
        if transparent and mode != "RGBA":
            quarters += 4  # made RGBA first, then flattened on white
    if turned:
        quarters += 4
    if fmt == "WEBP":
        quarters += 12
    elif fmt in ("HEIF", "AVIF"):
        quarters += 4
    cost = math.ceil(decoding[0] * decoding[1] * quarters / 4)
    return Header(fmt, size, decoded, max(cost, decoded[0] * decoded[1]), mode, transparent, turned)


def _limits(max_bytes: int | None, max_pixels: int | None) -> tuple[int, int]:
    """The limits given, and the settings' for those that are not."""
    if max_bytes is None or max_pixels is None:
        cfg = settings()
        max_bytes = cfg.max_image_bytes if max_bytes is None else max_bytes
        max_pixels = cfg.max_image_pixels if max_pixels is None else max_pixels
    return max_bytes, max_pixels


def _sniffed(source: str | bytes | os.PathLike, max_bytes: int, source_name: str | None) -> tuple[bytes, str, str]:
    """The bytes (within ``max_bytes``), the label for messages and the format found in them."""
    data, label = _read(source, max_bytes)
    label = source_name or label
    return data, label, sniff(data, label)


def decode_base64(text: str, *, max_bytes: int | None = None) -> bytes:
    """Bytes from base64 (standard or urlsafe, padding and whitespace optional) or a data URI."""
    s = text.strip()
    if s[:5].lower() == "data:":
        header, sep, s = s.partition(",")
        if not sep:
            raise InvalidImage("malformed data URI: no ',' between the header and the data")
        if ";base64" not in header.lower():  # percent-encoded, e.g. data:image/svg+xml,<svg...
            data = unquote_to_bytes(s)
            check_bytes(len(data), max_bytes)
            return data
    if max_bytes and 2 * max_bytes + 1024 < len(s):  # far over the limit: refuse before copying it
        check_bytes(len(s.rstrip("=")) * 3 // 4, max_bytes)
    try:
        b = s.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidImage(
            f"invalid base64 image data: non-ASCII character at position {exc.start}"
        ) from None
    bad = b.translate(None, _B64_CHARS)  # bytes.translate: a fast C loop, unlike a regex
    if bad:  # not plain base64: drop whitespace, map the urlsafe alphabet, look again
        b = b.translate(_URLSAFE, b" \t\n\r\v\f")
        bad = b.translate(None, _B64_CHARS)
    b = b.rstrip(b"=")
    bad = bad or (b"=" if b"=" in b else b"")  # padding only at the end
    if bad:
        at = b.index(bad[:1])
        raise InvalidImage(
            f"invalid base64 image data: unexpected character {chr(b[at])!r} at position {at}"
        )
    if not b:
        raise InvalidImage("empty base64 image data")
    check_bytes(len(b) * 3 // 4, max_bytes)  # the decoded size, before decoding
    if len(b) % 4 == 1:
        raise InvalidImage(f"invalid base64 image data: {len(b)} characters is not a valid length")
    return binascii.a2b_base64(b + b"=" * (-len(b) % 4))  # validated above; strict_mode is slower


def _read(source: str | bytes | os.PathLike, max_bytes: int) -> tuple[bytes, str]:
    """The original bytes and a label for messages: the path, "<bytes>" or "<base64>"."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        check_bytes(len(source), max_bytes)
        return bytes(source), "<bytes>"
    if isinstance(source, os.PathLike):
        return _read_file(os.path.expanduser(os.fsdecode(source)), max_bytes)
    if not isinstance(source, str):
        raise InvalidImage(f"expected a path, bytes or base64 text, not {type(source).__name__}")
    text = source.strip()
    if not text:
        raise InvalidImage("empty image input: expected a path, bytes, base64 text or a data URI")
    head = text[:8].lower()
    if head.startswith(("http://", "https://")):
        raise InvalidImage(
            f"image URLs are not accepted here ({text[:80]}): download the image and pass the file, "
            "or use the server with IMGSCRIBE_ALLOW_URLS=1 to let it fetch URLs"
        )
    if head.startswith("data:"):
        return decode_base64(text, max_bytes=max_bytes), "<base64>"
    if len(text) < 4096 and "\n" not in text and "\0" not in text:
        path = os.path.expanduser(text)
        if os.path.exists(path):
            return _read_file(path, max_bytes)
    # Not a file: base64, unless it looks like a path (JPEG base64 starts with "/9j/", so decode first).
    pathlike = bool(_PATH_START.match(text)) or text.lower().endswith(_IMAGE_EXTS) or len(text) < 64
    try:
        data = decode_base64(text, max_bytes=max_bytes)
    except ImageTooLarge:
        raise
    except InvalidImage:
        if pathlike:
            raise InvalidImage(f"file not found: {text}") from None
        raise
    if pathlike and identify(data) not in SUPPORTED_FORMATS and not _video_magic(data):
        raise InvalidImage(f"file not found: {text}")
    return data, "<base64>"


def read_bytes(
    source: str | bytes | os.PathLike, *, max_bytes: int | None = None, source_name: str | None = None
) -> tuple[bytes, str]:
    """The bytes of a path, bytes, base64 text or data URI (within the byte limit) and the label for
    messages, not sniffed: what :func:`imgscribe.video.read_media` routes to an image or a video."""
    data, label = _read(source, _limits(max_bytes, 0)[0])
    return data, source_name or label


def _video_magic(data: bytes) -> bool:
    """A video container's first bytes (MP4/MOV ``ftyp``, WebM/MKV EBML, AVI): imgscribe.video reads it."""
    return data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")


def read_file(path: str, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, refused before reading when over the byte limit."""
    return _read_file(path, settings().max_image_bytes if max_bytes is None else max_bytes)[0]


def _read_file(path: str, max_bytes: int) -> tuple[bytes, str]:
    try:
        with open(path, "rb") as f:
            check_bytes(os.fstat(f.fileno()).st_size, max_bytes)
            data = f.read()
    except FileNotFoundError:
        raise InvalidImage(f"file not found: {path}") from None
    except IsADirectoryError:
        raise InvalidImage(f"'{path}' is a directory, not an image file") from None
    except OSError as exc:
        raise InvalidImage(f"cannot read '{path}': {exc.strerror or exc}") from None
    check_bytes(len(data), max_bytes)
    return data, path






































