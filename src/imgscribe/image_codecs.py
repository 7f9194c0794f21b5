"""What each image format needs: recognising it from its first bytes, opening it with Pillow (and
pillow-heif for HEIC/AVIF), reading size and orientation from its header, decoding its frames
within the limits, and making the result RGB and upright. :mod:`imgscribe.images` builds intake on
these; nothing here knows where the bytes came from.
"""

from __future__ import annotations

import io
import re
import threading

from PIL import Image as PILImage

from .errors import ImageTooLarge, ImgscribeError, InvalidImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")


_SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF"


_NEEDS = {
    "HEIF": "install the pillow-heif package",
    "AVIF": "install Pillow >= 11.3 (or the pillow-avif-plugin package)",
}


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


def check_bytes(n: int, limit: int | None) -> None:
    if limit is not None and 0 < limit < n:
        raise ImageTooLarge(
            f"image is {n:,} bytes, over the limit of {limit:,} bytes "
            "(set IMGSCRIBE_MAX_IMAGE_BYTES to change it)"
        )


def check_pixels(n: int, limit: int, what: str = "image") -> None:
    if 0 < limit < n:
        raise ImageTooLarge(
            f"{what} has {n:,} pixels, over the limit of {limit:,} pixels "
            "(set IMGSCRIBE_MAX_IMAGE_PIXELS to change it)"
        )


def identify(data: bytes) -> str | None:
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


def sniff(data: bytes, label: str) -> str:
    where = label_of(label)
    if not data:
        raise InvalidImage(f"{where} is empty (0 bytes)")
    name = identify(data)
    if name in SUPPORTED_FORMATS:
        return name
    if name is None:
        name = f"unrecognised data starting with {data[:8].hex(' ')}"
    raise InvalidImage(
        f"{where} is not a supported image ({name}); supported formats: {_SUPPORTED_TEXT}"
    )


def register_openers() -> None:
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


def open_image(data: bytes, fmt: str, label: str) -> PILImage.Image:
    """Open lazily (header only), with only the sniffed format's reader allowed."""
    register_openers()
    if fmt not in PILImage.OPEN:
        raise InvalidImage(
            f"{fmt} images cannot be read on this installation: {_NEEDS.get(fmt, '')}"
        )
    try:
        return PILImage.open(io.BytesIO(data), formats=[fmt])
    except _BOMB as exc:
        raise too_large(exc) from None
    except Exception as exc:
        why = "its header is damaged" if isinstance(exc, PILImage.UnidentifiedImageError) else exc
        raise InvalidImage(f"{label_of(label)} looks like {fmt} but cannot be read: {why}") from exc


def too_large(exc: Exception) -> ImageTooLarge:
    """Pillow's own decompression-bomb guard fired (it can be stricter than our limit)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    count = f"{int(found.group(1)):,}" if found else "too many"
    return ImageTooLarge(
        f"image has {count} pixels, over the pixel limit (set IMGSCRIBE_MAX_IMAGE_PIXELS to change "
        "it; Pillow's own PIL.Image.MAX_IMAGE_PIXELS also applies)"
    )


def label_of(label: str) -> str:
    return "the image data" if label.startswith("<") else f"'{label}'"


def stored_size(im: PILImage.Image) -> tuple[int, int]:
    """(width, height) as stored: Pillow's TIFF reader and pillow-heif report the upright size."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None and isinstance(tags.get(256), int) and isinstance(tags.get(257), int):
        return tags[256], tags[257]
    w, h = im.size
    return (h, w) if im.info.get("original_orientation") in (5, 6, 7, 8) else (w, h)


def decode_frames(im: PILImage.Image, fmt: str, label: str, all_frames: bool, max_pixels: int) -> list:
    """Decode the first frame (or all), each turned RGB and upright. No PIL error escapes."""
    frames: list[PILImage.Image] = []
    pixels, orientation = 0, 1
    try:
        while True:
            im.load()
            pixels += im.size[0] * im.size[1]
            check_pixels(pixels, max_pixels, f"animation ({len(frames) + 1} frames)")
            # Read after load: some readers (recent Pillow TIFF) apply it themselves and drop it.
            if not frames:
                orientation = exif_orientation(im)
            rgb = to_rgb(im)
            if rgb is im and all_frames:
                rgb = im.copy()  # the reader is about to move on to the next frame
            elif rgb is im:  # the same pixels, without the reader (WebP's keeps two more copies)
                rgb = im._new(im.im)
            frames.append(upright(rgb, orientation))
            if not all_frames:
                return frames
            try:
                im.seek(len(frames))
            except EOFError:
                return frames
    except ImgscribeError:
        raise
    except _BOMB as exc:
        raise too_large(exc) from None
    except Exception as exc:
        why = "it is truncated (cut short)" if "truncated" in str(exc) else f"it is damaged ({exc})"
        raise InvalidImage(f"{label_of(label)} could not be decoded as {fmt}: {why}") from exc


def reduction(size: tuple[int, int], max_side: int, fmt: str) -> int:
    """The largest of 8, 4, 2 (else 1) that keeps a JPEG's or WebP's long side at max_side or more."""
    if max_side <= 0 or fmt not in ("JPEG", "WEBP"):
        return 1
    for factor in (8, 4, 2):
        if max(size) // factor >= max_side:
            return factor
    return 1


def jpeg_scale(size: tuple[int, int], factor: int) -> int:
    """The scale Pillow's JPEG draft picks when asked for 1/factor (as JpegImageFile.draft)."""
    if factor == 1:
        return 1
    w, h = size
    scale = min(w // max(1, w // factor), h // max(1, h // factor))
    return next(s for s in (8, 4, 2, 1) if scale >= s)


def webp_header(data: bytes) -> tuple[tuple[int, int], bool, bool] | None:
    """(size, has alpha, may have an EXIF orientation) from a WebP's first chunk, or None."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        flags = data[20]
        size = (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
        return size, bool(flags & 0x10), bool(flags & 0x08) and webp_orientation(data) != 1
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1), bool(bits >> 28 & 1), False
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
        return (w & 0x3FFF, h & 0x3FFF), False, False
    return None


def webp_orientation(data: bytes) -> int:
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


def header_orientation(im: PILImage.Image, fmt: str) -> int:
    """The EXIF orientation, if the header has it (a PNG's eXIf chunk may come after its pixels,
    and Pillow decodes the image to find it: not here)."""
    if fmt == "PNG" and "exif" not in im.info:
        return 1
    return exif_orientation(im)


def exif_orientation(im: PILImage.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make the image unreadable
        return 1
    return value if value in _UPRIGHT else 1


def upright(im: PILImage.Image, orientation: int) -> PILImage.Image:
    # The transpose alone, not ImageOps.exif_transpose: no copy for the common orientation 1.
    if orientation == 1:
        return im
    out = im.transpose(_UPRIGHT[orientation])
    out.info.pop("exif", None)  # its orientation tag no longer holds
    return out


def to_rgb(im: PILImage.Image) -> PILImage.Image:
    """RGB, with transparency flattened on white and 16-bit/integer/float grey scaled, not clipped."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        return grey_to_rgb(im)
    palette = getattr(im, "palette", None)
    if im.has_transparency_data or (mode == "P" and palette is not None and palette.mode == "RGBA"):
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        out = PILImage.new("RGB", im.size, (255, 255, 255))
        out.paste(rgba, mask=rgba)  # an RGBA mask means its alpha band
        return out
    return im.convert("RGB")


def grey_to_rgb(im: PILImage.Image) -> PILImage.Image:
    import numpy as np  # only 16-bit and float images need it; the CLI starts without numpy

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
