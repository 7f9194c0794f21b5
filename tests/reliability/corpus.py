"""A corpus of broken and hostile images, built in code (offline) and written to a folder.

Each :class:`Case` says what it is and what a front door may answer: ``"error"`` (it must be
refused with InvalidImage/ImageTooLarge, a 4xx, an error row) or ``"either"`` (damaged but maybe
still decodable, or odd but valid: an answer or a clear refusal, nothing else).

Pillow's own test images (``Tests/images`` of its sdist, ~1,000 files including its fuzzers' crash
files) are added when the sdist of the installed Pillow is in :data:`PILLOW_CACHE`; fetch it once
with ``python -m tests.reliability.report --fetch-pillow`` (``pip download --no-binary``). The tests
never reach the network.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import PIL
from PIL import Image

PILLOW_CACHE = Path.home() / ".cache" / "imgscribe-tests"
PILLOW_SDIST = PILLOW_CACHE / f"pillow-{PIL.__version__}.tar.gz"
PILLOW_MAX_BYTES = 4 * 1024 * 1024  # the few larger test files add time, not kinds of damage


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str  # "error" | "either"
    what: str
    suffix: str = ".img"

    @property
    def filename(self) -> str:
        return self.name + self.suffix


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small image with some structure (a gradient), so that codecs have something to encode."""
    w, h = size
    return Image.frombytes("RGB", size, bytes((x * 7 + y * 3 + c * 50) % 256
                                              for y in range(h) for x in range(w) for c in range(3)))  # fmt: skip


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_ihdr(width: int, height: int, idat: bytes = b"", mode: int = 0) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (8-bit; colour type ``mode``), CRCs valid."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def content_bomb_png(width: int, height: int) -> bytes:
    """Real pixel data, all zero: tiny compressed, ``width * height`` bytes decompressed."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + grey pixels
    parts = [compressor.compress(row) for _ in range(height)]
    return png_with_ihdr(width, height, b"".join(parts) + compressor.flush())


def text_bomb_png() -> bytes:
    """A valid small PNG with a zTXt chunk that inflates to 64 MB (Pillow caps text at 1 MB)."""
    base = encode(photo((8, 8)), "PNG")
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9))
    return base[:33] + bomb + base[33:]  # after the signature (8) and IHDR (25)


def iccp_bomb_png() -> bytes:
    base = encode(photo((8, 8)), "PNG")
    bomb = png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (64 << 20), 9))
    return base[:33] + bomb + base[33:]


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF marker is rewritten to declare ``width`` x ``height``."""
    data = bytearray(encode(photo(), "JPEG", quality=80))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_screen(width: int, height: int) -> bytes:
    """A small GIF whose logical screen and first frame both declare ``width`` x ``height``."""
    data = bytearray(encode(photo((8, 8)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    at = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    for _ in range(64):  # extension blocks before the image descriptor
        if data[at] != 0x21:
            break
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C, "no image descriptor"
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def webp_vp8x_canvas(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")  # fmt: skip
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((8, 8)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def tiff_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((8, 8)), "TIFF"))
    # patch ImageWidth (256) and ImageLength (257) entries of the first IFD
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, _kind = struct.unpack("<HH", data[at : at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, value)  # LONG
    return bytes(data)


def deep_gif(frames: int, size: tuple[int, int] = (16, 16)) -> bytes:
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    for i, im in enumerate(images):
        im.putpalette([(i * 13 + c) % 256 for c in range(768)])
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)


def exif_block(entries: list[tuple[int, int, int, bytes]], count_override: int | None = None,
               next_ifd: int = 0) -> bytes:  # fmt: skip
    """A little-endian TIFF header + one IFD: entries (tag, type, count, 4-byte value)."""
    n = len(entries) if count_override is None else count_override
    body = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", n)
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    return body + struct.pack("<I", next_ifd)


def jpeg_with_exif(exif: bytes) -> bytes:
    """A small JPEG with an APP1 Exif segment holding ``exif`` (written raw, not by Pillow)."""
    data = encode(photo(), "JPEG", quality=80)
    app1 = b"Exif\x00\x00" + exif
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def orientation(value: int, kind: int = 3) -> bytes:
    raw = struct.pack("<H", value) if kind == 3 else struct.pack("<I", value)
    return exif_block([(0x0112, kind, 1, raw)])


def flip(data: bytes, start: float, count: int = 64, step: int = 7) -> bytes:
    """``count`` bytes inverted from ``start`` (a fraction of the length) on, every ``step``th."""
    out = bytearray(data)
    at = int(len(out) * start)
    for i in range(at, min(len(out), at + count * step), step):
        out[i] ^= 0xFF
    return bytes(out)


def heif_cases() -> list[Case]:
    try:
        import pillow_heif
    except ImportError:
        return []
    pillow_heif.register_heif_opener()
    cases = []
    for fmt, suffix in (("HEIF", ".heic"), ("AVIF", ".avif")):
        try:
            good = encode(photo((64, 64)), fmt, quality=60)
        except Exception:  # noqa: BLE001 - this build cannot write it
            continue
        low = fmt.lower()
        cases += [
            Case(f"{low}-truncated-half", good[: len(good) // 2], "error", f"{fmt} cut at half", suffix),
            Case(f"{low}-truncated-header", good[:40], "error", f"{fmt}: the ftyp box only", suffix),
            Case(f"{low}-flipped-middle", flip(good, 0.5), "either", f"{fmt} with bytes inverted in the coded data", suffix),
            Case(f"{low}-flipped-boxes", flip(good, 0.05, 32, 3), "either", f"{fmt} with its box headers damaged", suffix),
            Case(f"{low}-flipped-tail", flip(good, 0.9, 64, 1), "either", f"{fmt} with its last tenth damaged", suffix),
        ]  # fmt: skip
    return cases


def synthetic() -> list[Case]:
    """The built cases (about 50), each small on disk."""
    jpeg, png = encode(photo(), "JPEG", quality=80), encode(photo(), "PNG")
    webp, gif = encode(photo(), "WEBP", quality=80), encode(photo().convert("P"), "GIF")
    tiff, bmp = encode(photo(), "TIFF"), encode(photo(), "BMP")
    cases = [
        Case("zero-length", b"", "error", "an empty file"),
        Case("one-byte", b"\xff", "error", "a single byte"),
        Case("text", b"hello, this is not an image\n", "error", "plain text", ".jpg"),
        Case("html", b"<!doctype html><html><body>hi</body></html>", "error", "an HTML page", ".png"),
        Case("pdf", b"%PDF-1.7\n" + b"\x00" * 100, "error", "a PDF", ".jpg"),
        Case("random", bytes((i * 131 + 17) % 251 for i in range(4096)), "error", "4 KB of noise"),
        Case("jpeg-magic-png-body", b"\xff\xd8\xff" + png[3:], "error", "JPEG's magic on a PNG", ".jpg"),
        Case("png-magic-jpeg-body", png[:8] + jpeg[8:], "error", "PNG's signature on a JPEG", ".png"),
        Case("gif-magic-only", b"GIF89a", "error", "GIF's magic, nothing else", ".gif"),
        Case("riff-not-webp", b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 16, "error", "a WAV file", ".webp"),
        Case("bmp-magic-text", b"BM this is text", "error", "text starting BM", ".bmp"),
        Case("tiff-magic-only", b"II*\x00", "error", "a TIFF header only", ".tif"),
        Case("ftyp-video", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "error", "an MP4 header", ".heic"),
    ]  # fmt: skip
    for fmt, good, suffix in (("jpeg", jpeg, ".jpg"), ("png", png, ".png"), ("webp", webp, ".webp"),
                              ("gif", gif, ".gif"), ("tiff", tiff, ".tif"), ("bmp", bmp, ".bmp")):  # fmt: skip
        cases += [
            Case(f"{fmt}-truncated-header", good[:20], "error", f"{fmt.upper()}: the first 20 bytes", suffix),
            Case(f"{fmt}-truncated-half", good[: len(good) // 2], "either", f"{fmt.upper()} cut at half", suffix),
            Case(f"{fmt}-truncated-last-byte", good[:-1], "either", f"{fmt.upper()} without its last byte", suffix),
            Case(f"{fmt}-flipped", flip(good, 0.3), "either", f"{fmt.upper()} with bytes inverted", suffix),
        ]  # fmt: skip
    cases += [
        # decompression bombs by header: a huge declared size in a tiny file
        Case("bomb-png-header", png_with_ihdr(100_000, 100_000), "error", "PNG declaring 100,000 x 100,000", ".png"),
        Case("bomb-png-header-max", png_with_ihdr(2**31 - 1, 2**31 - 1), "error", "PNG declaring 2^31-1 square", ".png"),
        Case("bomb-jpeg-header", jpeg_with_size(65_000, 65_000), "error", "JPEG SOF declaring 65,000 x 65,000", ".jpg"),
        Case("bomb-gif-header", gif_with_screen(65_535, 65_535), "error", "GIF screen and frame 65,535 square", ".gif"),
        Case("bomb-webp-header", webp_vp8x_canvas(16_384, 16_384), "error", "WebP VP8X canvas 16,384 square, no data", ".webp"),
        Case("bomb-bmp-header", bmp_with_size(60_000, 60_000), "error", "BMP declaring 60,000 x 60,000", ".bmp"),
        Case("bomb-bmp-negative", bmp_with_size(-8, -2**31), "error", "BMP with negative sizes", ".bmp"),
        Case("bomb-tiff-header", tiff_with_size(100_000, 100_000), "error", "TIFF declaring 100,000 x 100,000", ".tif"),
        # decompression bombs by content: real data that inflates far beyond the file
        Case("bomb-png-content", content_bomb_png(8_000, 8_000), "error", "64 MP of zeros in a ~60 KB PNG", ".png"),
        Case("bomb-png-ztxt", text_bomb_png(), "either", "an 8x8 PNG with a 64 MB zTXt chunk", ".png"),
        Case("bomb-png-iccp", iccp_bomb_png(), "either", "an 8x8 PNG with a 64 MB iCCP profile", ".png"),
        # valid but extreme shapes
        Case("strip-65000x1", encode(Image.new("RGB", (65_000, 1), "red"), "PNG"), "either", "a 65,000 x 1 PNG", ".png"),
        Case("strip-1x65000", encode(Image.new("L", (1, 65_000), 128), "JPEG"), "either", "a 1 x 65,000 JPEG", ".jpg"),
        Case("gif-500-frames", deep_gif(500), "either", "an animated GIF of 500 frames", ".gif"),
        Case("gif-3000-frames-1px", deep_gif(3_000, (1, 1)), "either", "an animated GIF of 3,000 1x1 frames", ".gif"),
        # malformed EXIF
        Case("exif-orientation-0", jpeg_with_exif(orientation(0)), "either", "EXIF orientation 0", ".jpg"),
        Case("exif-orientation-9", jpeg_with_exif(orientation(9)), "either", "EXIF orientation 9", ".jpg"),
        Case("exif-orientation-65535", jpeg_with_exif(orientation(65_535)), "either", "EXIF orientation 65,535", ".jpg"),
        Case("exif-orientation-long", jpeg_with_exif(orientation(6, kind=4)), "either", "EXIF orientation as a LONG", ".jpg"),
        Case("exif-orientation-string", jpeg_with_exif(exif_block([(0x0112, 2, 4, b"six\x00")])), "either",
             "EXIF orientation as ASCII", ".jpg"),
        Case("exif-orientation-count", jpeg_with_exif(exif_block([(0x0112, 3, 1_000_000, b"\x10\x00\x00\x00")])),
             "either", "EXIF orientation with a count of 1,000,000 past the end", ".jpg"),
        Case("exif-ifd-count-65535", jpeg_with_exif(exif_block([(0x0112, 3, 1, b"\x06\x00")], count_override=65_535)),
             "either", "an IFD claiming 65,535 entries", ".jpg"),
        Case("exif-ifd-loop", jpeg_with_exif(exif_block([(0x0112, 3, 1, b"\x06\x00")], next_ifd=8)), "either",
             "an IFD whose next IFD is itself", ".jpg"),
        Case("exif-subifd-loop", jpeg_with_exif(exif_block([(0x8769, 4, 1, struct.pack("<I", 8))])), "either",
             "an Exif sub-IFD pointing at its parent", ".jpg"),
        Case("exif-truncated", jpeg_with_exif(orientation(6)[:11]), "either", "EXIF cut in its IFD", ".jpg"),
        Case("exif-garbage", jpeg_with_exif(b"\xde\xad\xbe\xef" * 64), "either", "EXIF of garbage", ".jpg"),
        Case("webp-exif-garbage", webp_with_exif(webp, b"MM\x00*" + b"\xff" * 60), "either", "WebP with a garbage EXIF chunk", ".webp"),
        Case("png-exif-orientation-9", encode(photo(), "PNG", exif=orientation(9)), "either", "PNG eXIf orientation 9", ".png"),
    ]  # fmt: skip
    return cases + heif_cases()


def webp_with_exif(webp: bytes, exif: bytes) -> bytes:
    """A simple (VP8) WebP rewritten as extended (VP8X) with an EXIF chunk."""
    w, h = Image.open(io.BytesIO(webp)).size
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")  # fmt: skip
    chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\x00" if len(exif) & 1 else b"")
    body = b"WEBP" + vp8x + webp[12:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pillow_images(limit: int | None = None) -> list[Case]:
    """Pillow's Tests/images from its sdist in PILLOW_CACHE (empty when it is not there)."""
    if not PILLOW_SDIST.is_file():
        return []
    cases = []
    with tarfile.open(PILLOW_SDIST) as tar:
        for member in tar:
            if not member.isfile() or "/Tests/images/" not in member.name or member.size > PILLOW_MAX_BYTES:
                continue
            rel = member.name.split("/Tests/images/", 1)[1]
            stem = "pillow-" + rel.replace("/", "-")
            suffix = Path(stem).suffix if len(Path(stem).suffix) <= 6 else ""
            name = stem[: len(stem) - len(suffix)] if suffix else stem
            f = tar.extractfile(member)
            if f is not None:
                cases.append(Case(name, f.read(), "either", f"Pillow's Tests/images/{rel}", suffix or ".bin"))
            if limit is not None and len(cases) >= limit:
                break
    return cases


def write(folder: Path, cases: list[Case]) -> dict[str, Path]:
    """Each case to ``folder/<name><suffix>``; the paths by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        path = folder / case.filename
        path.write_bytes(case.data)
        paths[case.name] = path
    return paths
