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
import io
import math
import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import numpy as np
from PIL import Image as PILImage

from .config import settings
from .errors import ImageTooLarge, ImgscribeError, InvalidImage
from .types import Image

__all__ = ["SUPPORTED_FORMATS", "Header", "decode_base64", "header", "intake"]

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
_SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF"
_NEEDS = {
    "HEIF": "install the pillow-heif package",
    "AVIF": "install Pillow >= 11.3 (or the pillow-avif-plugin package)",
}
_IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib",
               ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif")  # fmt: skip
_PATH_START = re.compile(r"(~|\.{1,2}[/\\]|/|[A-Za-z]:[/\\]|\\\\)")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_URLSAFE = bytes.maketrans(b"-_", b"+/")
# EXIF orientation -> the transpose that makes the image upright (the table of ImageOps.exif_transpose).
_T = PILImage.Transpose
_UPRIGHT = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
            6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}  # fmt: skip
_BOMB = (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning)
_DIB_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)
_HEIF_BRANDS = {
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"hevx",
    b"heif",
    b"mif1",
    b"msf1",
    b"miaf",
}
_OTHER_MAGIC = [  # recognised, so that the error can name them
    (b"%PDF", "a PDF document"), (b"8BPS", "a Photoshop (PSD) file"), (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"qoif", "QOI"), (b"v/1\x01", "OpenEXR"), (b"DDS ", "DDS"),
    (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"),
]  # fmt: skip

_register_lock = threading.Lock()
_registered = False


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
    if max_bytes is None or max_pixels is None:
        cfg = settings()
        max_bytes = cfg.max_image_bytes if max_bytes is None else max_bytes
        max_pixels = cfg.max_image_pixels if max_pixels is None else max_pixels
    data, label = _read(source, max_bytes)
    label = source_name or label
    fmt = _sniff(data, label)
    im = _open(data, fmt, label)
    original_size = _stored_size(im)
    _check_pixels(im.size[0] * im.size[1], max_pixels)
    factor = _reduction(im.size, max_side, fmt) if not all_frames else 1
    if factor > 1 and fmt == "JPEG":
        w, h = im.size
        try:
            im.draft(None, (max(1, w // factor), max(1, h // factor)))  # libjpeg decodes at 1/factor
        except Exception:  # noqa: BLE001 - a header draft cannot use: decoded at full size
            pass
        factor = 1
    frames = _decode(im, fmt, label, all_frames, max_pixels)
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

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def held(self) -> int:
        """Pixels the decoded image keeps once decoding is over."""
        return self.decoded_size[0] * self.decoded_size[1]


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
    if max_bytes is None or max_pixels is None:
        cfg = settings()
        max_bytes = cfg.max_image_bytes if max_bytes is None else max_bytes
        max_pixels = cfg.max_image_pixels if max_pixels is None else max_pixels
    data, label = _read(source, max_bytes)
    label = source_name or label
    fmt = _sniff(data, label)
    facts = _webp_header(data) if fmt == "WEBP" else None
    if facts is None:  # the others read their header lazily (pillow's WebP reader allocates its canvas)
        im = _open(data, fmt, label)
        size, mode = im.size, im.mode
        transparent = im.has_transparency_data
        turned = _header_orientation(im, fmt) != 1
        im.close()
    else:
        size, transparent, turned = facts
        mode = "RGBA" if transparent else "RGB"
    _check_pixels(size[0] * size[1], max_pixels)
    factor = _reduction(size, max_side, fmt)
    if fmt == "JPEG":
        factor = _jpeg_scale(size, factor)
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
    return Header(fmt, size, decoded, max(cost, decoded[0] * decoded[1]))


def decode_base64(text: str, *, max_bytes: int | None = None) -> bytes:
    """Bytes from base64 (standard or urlsafe, padding and whitespace optional) or a data URI."""
    s = text.strip()
    if s[:5].lower() == "data:":
        header, sep, s = s.partition(",")
        if not sep:
            raise InvalidImage("malformed data URI: no ',' between the header and the data")
        if ";base64" not in header.lower():  # percent-encoded, e.g. data:image/svg+xml,<svg...
            data = unquote_to_bytes(s)
            _check_bytes(len(data), max_bytes)
            return data
    if max_bytes and 2 * max_bytes + 1024 < len(s):  # far over the limit: refuse before copying it
        _check_bytes(len(s.rstrip("=")) * 3 // 4, max_bytes)
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
    _check_bytes(len(b) * 3 // 4, max_bytes)  # the decoded size, before decoding
    if len(b) % 4 == 1:
        raise InvalidImage(f"invalid base64 image data: {len(b)} characters is not a valid length")
    return binascii.a2b_base64(b + b"=" * (-len(b) % 4))  # validated above; strict_mode is slower


def _read(source: str | bytes | os.PathLike, max_bytes: int) -> tuple[bytes, str]:
    """The original bytes and a label for messages: the path, "<bytes>" or "<base64>"."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        _check_bytes(len(source), max_bytes)
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
    if pathlike and _identify(data) not in SUPPORTED_FORMATS:
        raise InvalidImage(f"file not found: {text}")
    return data, "<base64>"


def read_file(path: str, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, refused before reading when over the byte limit."""
    return _read_file(path, settings().max_image_bytes if max_bytes is None else max_bytes)[0]


def _read_file(path: str, max_bytes: int) -> tuple[bytes, str]:
    try:
        with open(path, "rb") as f:
            _check_bytes(os.fstat(f.fileno()).st_size, max_bytes)
            data = f.read()
    except FileNotFoundError:
        raise InvalidImage(f"file not found: {path}") from None
    except IsADirectoryError:
        raise InvalidImage(f"'{path}' is a directory, not an image file") from None
    except OSError as exc:
        raise InvalidImage(f"cannot read '{path}': {exc.strerror or exc}") from None
    _check_bytes(len(data), max_bytes)
    return data, path


def _check_bytes(n: int, limit: int | None) -> None:
    if limit is not None and 0 < limit < n:
        raise ImageTooLarge(
            f"image is {n:,} bytes, over the limit of {limit:,} bytes "
            "(set IMGSCRIBE_MAX_IMAGE_BYTES to change it)"
        )


def _check_pixels(n: int, limit: int, what: str = "image") -> None:
    if 0 < limit < n:
        raise ImageTooLarge(
            f"{what} has {n:,} pixels, over the limit of {limit:,} pixels "
            "(set IMGSCRIBE_MAX_IMAGE_PIXELS to change it)"
        )


def _identify(data: bytes) -> str | None:
    """A format name from the magic bytes: one of SUPPORTED_FORMATS, a description, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF":
        return "WEBP" if data[8:12] == b"WEBP" else "a RIFF media file (audio or video)"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _DIB_HEADER_SIZES:
        return (
            "BMP"  # the magic is short: a known DIB header size too, or text starting "BM" passes
        )
    if data[4:8] == b"ftyp":  # ISO media: HEIF, AVIF, or a video
        size = int.from_bytes(data[:4], "big")
        brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(size, 256), 4)]
        if brands[0] in (b"avif", b"avis") or (brands[0] in _HEIF_BRANDS and b"avif" in brands):
            return "AVIF"
        if any(b in _HEIF_BRANDS for b in brands):
            return "HEIF"
        return f"an ISO media file of brand {brands[0].decode('latin-1')!r} (a video?)"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    head = data[:1024]
    if head and not any(b < 32 and b not in b"\t\n\r" or b == 127 for b in head):
        low = head.lstrip().lower()
        if low.startswith((b"<!doctype html", b"<html")):
            return "an HTML page"
        if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
            return "an SVG drawing"
        return "text"
    return None


def _sniff(data: bytes, label: str) -> str:
    where = _where(label)
    if not data:
        raise InvalidImage(f"{where} is empty (0 bytes)")
    name = _identify(data)
    if name in SUPPORTED_FORMATS:
        return name
    if name is None:
        name = f"unrecognised data starting with {data[:8].hex(' ')}"
    raise InvalidImage(
        f"{where} is not a supported image ({name}); supported formats: {_SUPPORTED_TEXT}"
    )


def _register_openers() -> None:
    """Make HEIF (pillow-heif) and AVIF (Pillow >= 11.3 natively, else a plugin) readable, once."""
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        PILImage.init()
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            if "AVIF" not in PILImage.OPEN and hasattr(pillow_heif, "register_avif_opener"):
                pillow_heif.register_avif_opener()  # pillow-heif < 1.0
        except ImportError:
            pass
        if "AVIF" not in PILImage.OPEN:
            try:
                import pillow_avif  # noqa: F401  (registers itself)
            except ImportError:
                pass
        _registered = True


def _open(data: bytes, fmt: str, label: str) -> PILImage.Image:
    """Open lazily (header only), with only the sniffed format's reader allowed."""
    _register_openers()
    if fmt not in PILImage.OPEN:
        raise InvalidImage(
            f"{fmt} images cannot be read on this installation: {_NEEDS.get(fmt, '')}"
        )
    try:
        return PILImage.open(io.BytesIO(data), formats=[fmt])
    except _BOMB as exc:
        raise _bomb(exc) from None
    except Exception as exc:
        why = "its header is damaged" if isinstance(exc, PILImage.UnidentifiedImageError) else exc
        raise InvalidImage(f"{_where(label)} looks like {fmt} but cannot be read: {why}") from exc


def _bomb(exc: Exception) -> ImageTooLarge:
    """Pillow's own decompression-bomb guard fired (it can be stricter than our limit)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    count = f"{int(found.group(1)):,}" if found else "too many"
    return ImageTooLarge(
        f"image has {count} pixels, over the pixel limit (set IMGSCRIBE_MAX_IMAGE_PIXELS to change "
        "it; Pillow's own PIL.Image.MAX_IMAGE_PIXELS also applies)"
    )


def _where(label: str) -> str:
    return "the image data" if label.startswith("<") else f"'{label}'"


def _stored_size(im: PILImage.Image) -> tuple[int, int]:
    """(width, height) as stored: Pillow's TIFF reader and pillow-heif report the upright size."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None and isinstance(tags.get(256), int) and isinstance(tags.get(257), int):
        return tags[256], tags[257]
    w, h = im.size
    return (h, w) if im.info.get("original_orientation") in (5, 6, 7, 8) else (w, h)


def _decode(im: PILImage.Image, fmt: str, label: str, all_frames: bool, max_pixels: int) -> list:
    """Decode the first frame (or all), each turned RGB and upright. No PIL error escapes."""
    frames: list[PILImage.Image] = []
    pixels, orientation = 0, 1
    try:
        while True:
            im.load()
            pixels += im.size[0] * im.size[1]
            _check_pixels(pixels, max_pixels, f"animation ({len(frames) + 1} frames)")
            # Read after load: some readers (recent Pillow TIFF) apply it themselves and drop it.
            if not frames:
                orientation = _orientation(im)
            rgb = _to_rgb(im)
            if rgb is im and all_frames:
                rgb = im.copy()  # the reader is about to move on to the next frame
            elif rgb is im:  # the same pixels, without the reader (WebP's keeps two more copies)
                rgb = im._new(im.im)
            frames.append(_upright(rgb, orientation))
            if not all_frames:
                return frames
            try:
                im.seek(len(frames))
            except EOFError:
                return frames
    except ImgscribeError:
        raise
    except _BOMB as exc:
        raise _bomb(exc) from None
    except Exception as exc:
        why = "it is truncated (cut short)" if "truncated" in str(exc) else f"it is damaged ({exc})"
        raise InvalidImage(f"{_where(label)} could not be decoded as {fmt}: {why}") from exc


def _reduction(size: tuple[int, int], max_side: int, fmt: str) -> int:
    """The largest of 8, 4, 2 (else 1) that keeps a JPEG's or WebP's long side at max_side or more."""
    if max_side <= 0 or fmt not in ("JPEG", "WEBP"):
        return 1
    for factor in (8, 4, 2):
        if max(size) // factor >= max_side:
            return factor
    return 1


def _jpeg_scale(size: tuple[int, int], factor: int) -> int:
    """The scale Pillow's JPEG draft picks when asked for 1/factor (as JpegImageFile.draft)."""
    if factor == 1:
        return 1
    w, h = size
    scale = min(w // max(1, w // factor), h // max(1, h // factor))
    return next(s for s in (8, 4, 2, 1) if scale >= s)


def _webp_header(data: bytes) -> tuple[tuple[int, int], bool, bool] | None:
    """(size, has alpha, may have an EXIF orientation) from a WebP's first chunk, or None."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        flags = data[20]
        size = (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
        return size, bool(flags & 0x10), bool(flags & 0x08) and _webp_orientation(data) != 1
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1), bool(bits >> 28 & 1), False
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
        return (w & 0x3FFF, h & 0x3FFF), False, False
    return None


def _webp_orientation(data: bytes) -> int:
    """The orientation in a WebP's EXIF chunk (the chunks are walked by their sizes, not read)."""
    at = 12
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if data[at : at + 4] == b"EXIF":
            exif = PILImage.Exif()
            try:
                exif.load(data[at + 8 : at + 8 + size])
            except Exception:  # noqa: BLE001 - a damaged chunk: assume the worst
                return 0
            value = exif.get(0x0112, 1)
            return value if value in _UPRIGHT else 1
        at += 8 + size + (size & 1)
    return 1


def _header_orientation(im: PILImage.Image, fmt: str) -> int:
    """The EXIF orientation, if the header has it (a PNG's eXIf chunk may come after its pixels,
    and Pillow decodes the image to find it: not here)."""
    if fmt == "PNG" and "exif" not in im.info:
        return 1
    return _orientation(im)


def _orientation(im: PILImage.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make the image unreadable
        return 1
    return value if value in _UPRIGHT else 1


def _upright(im: PILImage.Image, orientation: int) -> PILImage.Image:
    # The transpose alone, not ImageOps.exif_transpose: no copy for the common orientation 1.
    if orientation == 1:
        return im
    out = im.transpose(_UPRIGHT[orientation])
    out.info.pop("exif", None)  # its orientation tag no longer holds
    return out


def _to_rgb(im: PILImage.Image) -> PILImage.Image:
    """RGB, with transparency flattened on white and 16-bit/integer/float grey scaled, not clipped."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        return _grey_to_rgb(im)
    palette = getattr(im, "palette", None)
    if im.has_transparency_data or (mode == "P" and palette is not None and palette.mode == "RGBA"):
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        out = PILImage.new("RGB", im.size, (255, 255, 255))
        out.paste(rgba, mask=rgba)  # an RGBA mask means its alpha band
        return out
    return im.convert("RGB")


def _grey_to_rgb(im: PILImage.Image) -> PILImage.Image:
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        lo, top = 0, 65535
    else:  # 32-bit int or float: guess the range from the values
        lo, hi = im.getextrema()
        if lo >= 0 and hi <= (1.0 if im.mode == "F" else 255):
            lo, top = 0, (1.0 if im.mode == "F" else 255)
        elif lo >= 0 and hi <= 65535:
            lo, top = 0, 65535
        else:
            top = (hi - lo) or 1
    scaled = (a.astype(np.float32) - lo) * (255.0 / top) + 0.5
    return PILImage.fromarray(np.clip(scaled, 0, 255).astype(np.uint8)).convert("RGB")
