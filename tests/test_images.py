"""images.intake: every input form, format, mode, orientation and limit. Fixtures are made here."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from imgscribe.errors import ImageTooLarge, InvalidImage
from imgscribe.images import SUPPORTED_FORMATS, decode_base64, header, intake

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
T = PILImage.Transpose


def encode(im: PILImage.Image, fmt: str, **kw) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def close(px, rgb, tol=40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px[:3], rgb))


def marked(w=60, h=40) -> PILImage.Image:
    """Upright test picture: red top-left quadrant, green top-right, blue bottom half."""
    im = PILImage.new("RGB", (w, h), BLUE)
    im.paste(RED, (0, 0, w // 2, h // 2))
    im.paste(GREEN, (w // 2, 0, w, h // 2))
    return im


def assert_marked(im: PILImage.Image, w=60, h=40) -> None:
    assert im.mode == "RGB" and im.size == (w, h)
    assert close(im.getpixel((w // 4, h // 4)), RED), im.getpixel((w // 4, h // 4))
    assert close(im.getpixel((3 * w // 4, h // 4)), GREEN)
    assert close(im.getpixel((w // 2, 3 * h // 4)), BLUE)


def png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels but holds almost nothing: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(4096)))
        + chunk(b"IEND", b"")
    )


# How the stored pixels relate to the upright picture, from the EXIF definition of each orientation.
STORED = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
          5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}  # fmt: skip


def oriented(fmt: str, orientation: int) -> bytes:
    up = marked()
    stored = up.transpose(STORED[orientation]) if STORED[orientation] is not None else up
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF", "HEIF") else {}
    return encode(stored, fmt, exif=exif.tobytes(), **kw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation(orientation):
    img = intake(oriented("JPEG", orientation))
    assert_marked(img.pil)
    assert img.original_size == ((40, 60) if orientation >= 5 else (60, 40))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "AVIF", "HEIF"])
@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_orientation_other_formats(fmt, orientation):
    img = intake(oriented(fmt, orientation))
    assert_marked(img.pil)
    assert img.format == fmt


@pytest.mark.parametrize(
    "fmt,kw",
    [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {}), ("BMP", {}),
     ("TIFF", {"compression": "tiff_deflate"}), ("HEIF", {"quality": 90}), ("AVIF", {"quality": 90})],
)  # fmt: skip
def test_formats_sniffed_from_content(tmp_path, fmt, kw):
    data = encode(marked(), fmt, **kw)
    path = tmp_path / "misnamed.jpg"  # the name lies; the content decides
    path.write_bytes(data)
    img = intake(path)
    assert img.format == fmt and fmt in SUPPORTED_FORMATS
    assert_marked(img.pil)
    assert img.original_size == (60, 40)
    assert (img.data, img.byte_size, img.source) == (data, len(data), str(path))
    assert img.sha256 == hashlib.sha256(data).hexdigest()
    assert img.frames == ()


def test_cmyk_jpeg():
    img = intake(encode(PILImage.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert img.pil.mode == "RGB" and close(img.pil.getpixel((8, 8)), RED)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_not_clipped(fmt):
    a = np.zeros((4, 12), np.uint16)
    a[:, 4:8], a[:, 8:] = 32768, 65535
    img = intake(encode(PILImage.fromarray(a), fmt))
    assert [img.pil.getpixel((x, 1)) for x in (0, 5, 10)] == [
        (0, 0, 0),
        (128, 128, 128),
        (255, 255, 255),
    ]


def test_float_and_int32_grey():
    f = PILImage.fromarray(np.full((4, 4), 0.5, np.float32))
    assert close(intake(encode(f, "TIFF")).pil.getpixel((0, 0)), (128, 128, 128), 1)
    i = PILImage.fromarray(np.full((4, 4), 1000, np.int32))
    assert close(intake(encode(i, "TIFF")).pil.getpixel((0, 0)), (4, 4, 4), 1)  # 1000/65535*255


def test_palette_transparency_flattened_on_white():
    p = PILImage.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 0, 0, 255])
    p.putpixel((0, 0), 1)
    for fmt in ("PNG", "GIF"):
        img = intake(encode(p, fmt, transparency=0))
        assert img.pil.getpixel((4, 4)) == WHITE and img.pil.getpixel((0, 0)) == BLUE


@pytest.mark.parametrize("mode,colour,expected", [("RGBA", (255, 0, 0, 0), WHITE), ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
                                                  ("LA", (0, 0), WHITE), ("LA", (0, 255), (0, 0, 0))])  # fmt: skip
def test_alpha_flattened_on_white(mode, colour, expected):
    img = intake(encode(PILImage.new(mode, (4, 4), colour), "PNG"))
    assert close(img.pil.getpixel((1, 1)), expected, 1)


@pytest.mark.parametrize("fmt,kw", [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animation_frames(fmt, kw):
    frames = [PILImage.new("RGB", (16, 12), c) for c in (RED, GREEN, BLUE)]
    data = encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kw
    )
    first = intake(data)
    assert first.frames == () and close(first.pil.getpixel((8, 6)), RED, 2)
    every = intake(data, all_frames=True)
    assert len(every.frames) == 3 and every.pil is every.frames[0]
    for frame, colour in zip(every.frames, (RED, GREEN, BLUE)):
        assert (
            frame.mode == "RGB"
            and frame.size == (16, 12)
            and close(frame.getpixel((8, 6)), colour, 2)
        )
    with pytest.raises(ImageTooLarge, match="3 frames.*IMGSCRIBE_MAX_IMAGE_PIXELS"):
        intake(data, all_frames=True, max_pixels=16 * 12 * 2)


def test_still_image_all_frames_is_one_frame():
    img = intake(encode(marked(), "PNG"), all_frames=True)
    assert img.frames == (img.pil,)


@pytest.mark.parametrize("size", [(1, 1), (20000, 50), (50, 20000)])
def test_extreme_shapes(size):
    img = intake(encode(PILImage.new("RGB", size, RED), "PNG"))
    assert img.size == img.original_size == size and img.pil.getpixel((0, 0)) == RED


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_truncated(tmp_path, fmt):
    data = encode(PILImage.effect_noise((64, 64), 60).convert("RGB"), fmt)
    with pytest.raises(InvalidImage, match=r"truncated|damaged|cannot be read") as exc:
        intake(data[: len(data) * 2 // 3])
    assert not isinstance(exc.value, ImageTooLarge)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InvalidImage, match="empty"):
        intake(tmp_path / "empty.jpg")
    with pytest.raises(InvalidImage, match="empty"):
        intake(b"")
    with pytest.raises(InvalidImage, match="empty"):
        intake("   ")


@pytest.mark.parametrize(
    "content,what",
    [(b"Hello, this is not a picture.\n", "text"), (b"BMW owners club\n" * 4, "text"),
     (b"<!DOCTYPE html><html>404</html>", "HTML"), (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
     (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"), (b"\x00\x01\x02\x03garbage\x00", "unrecognised")],
)  # fmt: skip
def test_not_an_image(tmp_path, content, what):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(InvalidImage, match=what) as exc:
        intake(str(path))
    assert "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF" in str(
        exc.value
    ) and "fake.jpg" in str(exc.value)


@pytest.mark.parametrize("as_error", [False, True])
@pytest.mark.parametrize("side", [30000, 10000])  # over Pillow's hard limit / in its warning band
def test_decompression_bomb_refused_before_decoding(side, as_error):
    data = png_header(side, side)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error" if as_error else "ignore")
        with pytest.raises(ImageTooLarge, match="IMGSCRIBE_MAX_IMAGE_PIXELS"):
            intake(data)
    assert time.perf_counter() - start < 0.5


def test_pixel_limit_from_argument_and_setting(monkeypatch):
    data = encode(PILImage.new("RGB", (100, 100)), "PNG")
    with pytest.raises(
        ImageTooLarge, match=r"10,000 pixels.*9,999 pixels.*IMGSCRIBE_MAX_IMAGE_PIXELS"
    ):
        intake(data, max_pixels=9999)
    assert intake(data, max_pixels=10000).size == (100, 100)
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(ImageTooLarge):
        intake(data)


@pytest.mark.parametrize("form", ["path", "bytes", "base64", "data-uri"])
def test_byte_limit(tmp_path, monkeypatch, form):
    data = encode(PILImage.effect_noise((64, 64), 60).convert("RGB"), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    source = {
        "path": tmp_path / "a.png",
        "bytes": data,
        "base64": b64,
        "data-uri": "data:image/png;base64," + b64,
    }
    with pytest.raises(
        ImageTooLarge, match=f"{len(data):,} bytes.*1,000 bytes.*IMGSCRIBE_MAX_IMAGE_BYTES"
    ):
        intake(source[form], max_bytes=1000)
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_BYTES", "1000")
    with pytest.raises(ImageTooLarge, match="IMGSCRIBE_MAX_IMAGE_BYTES"):
        intake(source[form])
    assert intake(source[form], max_bytes=len(data)).byte_size == len(data)


def b64_variants(data: bytes) -> dict[str, str]:
    std = base64.b64encode(data).decode()
    safe = base64.urlsafe_b64encode(data).decode()
    return {
        "plain": std,
        "data-uri": "data:image/jpeg;base64," + std,
        "data-uri-upper": "DATA:image/jpeg;BASE64," + std,
        "no-padding": std.rstrip("="),
        "wrapped": "\n".join(std[i : i + 76] for i in range(0, len(std), 76)) + "\n",
        "urlsafe": safe,
        "urlsafe-no-padding-data-uri": "data:image/jpeg;base64," + safe.rstrip("="),
    }


@pytest.mark.parametrize("variant", list(b64_variants(b"")))
def test_base64_forms(variant):
    data = encode(marked(), "JPEG")
    while (
        len(data) % 3 == 0 or "/" not in base64.b64encode(data).decode()
    ):  # padding and urlsafe to test
        data += b"\0"
    text = b64_variants(data)[variant]
    img = intake(text)
    assert (
        img.data == data
        and img.sha256 == hashlib.sha256(data).hexdigest()
        and img.source == "<base64>"
    )
    assert_marked(img.pil)
    assert decode_base64(text) == data


@pytest.mark.parametrize(
    "text,match",
    [("data:image/png;base64,@@@@", "unexpected character '@'"), ("!!" * 60, "invalid base64"),
     ("data:image/png;base64", "malformed data URI"), ("data:image/png;base64,", "empty"),
     ("QUJDRA" * 20 + "Q", "not a valid length"), ("QUJD" * 40, "not a supported image")],
)  # fmt: skip
def test_garbage_base64(text, match):
    with pytest.raises(InvalidImage, match=match):
        intake(text)


def test_path_and_bytes_give_same_sha(tmp_path):
    data = encode(marked(), "WEBP")
    (tmp_path / "x.webp").write_bytes(data)
    by_path, by_bytes = intake(str(tmp_path / "x.webp")), intake(data)
    assert by_path.sha256 == by_bytes.sha256 == hashlib.sha256(data).hexdigest()
    assert (
        by_bytes.source == "<bytes>" and intake(data, source_name="cam.webp").source == "cam.webp"
    )
    assert intake(bytearray(data)).sha256 == by_bytes.sha256


@pytest.mark.parametrize(
    "missing", ["nope.jpg", "./nope", "/no/such/dir/pic.png", "~/nope.heic", "photo"]
)
def test_missing_file(missing):
    with pytest.raises(InvalidImage, match="file not found"):
        intake(missing)


def test_missing_pathlike_and_directory(tmp_path):
    with pytest.raises(InvalidImage, match="file not found"):
        intake(tmp_path / "gone.png")
    with pytest.raises(InvalidImage, match="directory"):
        intake(tmp_path)


@pytest.mark.parametrize("url", ["http://example.com/cat.jpg", "HTTPS://example.com/cat.jpg"])
def test_url_refused(url):
    with pytest.raises(InvalidImage, match="IMGSCRIBE_ALLOW_URLS"):
        intake(url)


def test_home_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pic.png").write_bytes(encode(marked(), "PNG"))
    assert intake("~/pic.png").source == str(tmp_path / "pic.png")
    assert intake(Path("~/pic.png")).format == "PNG"


def test_concurrent_intake_is_consistent():
    inputs = [encode(marked(), f) for f in ("JPEG", "PNG", "WEBP", "GIF")] * 4
    expected = [intake(d).pil.tobytes() for d in inputs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda d: intake(d).pil.tobytes(), inputs))
    assert got == expected


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some damage it reads past
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_corrupted_data_never_leaks_a_raw_error(fmt):
    data = encode(PILImage.effect_noise((48, 32), 50).convert("RGB"), fmt)
    rnd = random.Random(fmt)
    for _ in range(40):
        bad = bytearray(data)
        if rnd.random() < 0.3:
            del bad[rnd.randrange(8, len(bad)) :]
        else:
            for _ in range(rnd.randint(1, 8)):
                bad[rnd.randrange(min(len(bad), 200) if rnd.random() < 0.5 else len(bad))] = (
                    rnd.randrange(256)
                )
        try:
            img = intake(bytes(bad), max_pixels=200_000, all_frames=True)
        except InvalidImage:
            continue
        assert img.pil.mode == "RGB"


# Reduced decoding for a model that looks at less (max_side), and header() (the server's checks
# before decoding: security finding 6).


def exif_with(orientation: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_a_large_jpeg_decodes_at_reduced_size_keeping_the_original_bytes():
    data = encode(marked(4000, 3000), "JPEG", quality=90)
    img = intake(data, max_side=900)  # 1/4 keeps 1000 >= 900 on the long side; 1/8 would not
    assert img.size == (1000, 750) and img.original_size == (4000, 3000)
    assert img.sha256 == hashlib.sha256(data).hexdigest() and img.data == data and img.byte_size == len(data)
    assert_marked(img.pil, 1000, 750)
    assert intake(data).size == (4000, 3000)  # no hint: full size
    assert intake(data, max_side=2001).size == (4000, 3000)  # half would be under 2001


def test_reduced_jpeg_is_upright_and_predicted_by_its_header():
    data = encode(marked(1200, 800).transpose(T.ROTATE_90), "JPEG", quality=90, exif=exif_with(6))
    img = intake(data, max_side=300)
    assert_marked(img.pil, 300, 200)
    assert img.original_size == (800, 1200)
    head = header(data, max_side=300)
    assert head.size == (800, 1200) and head.decoded_size == (200, 300) and head.held == 60_000


def test_a_large_webp_is_reduced_after_decoding_and_others_keep_their_size():
    webp = encode(marked(2000, 1000), "WEBP", lossless=True)
    img = intake(webp, max_side=500)
    assert_marked(img.pil, 500, 250)
    assert img.original_size == (2000, 1000) and img.data == webp
    assert type(img.pil) is PILImage.Image  # not the WebP reader, whose decoder holds two more copies
    png = encode(marked(2000, 1000), "PNG")
    assert intake(png, max_side=500).size == (2000, 1000)  # decoded as it is
    assert header(png, max_side=500).held == 2_000_000


def test_an_animation_keeps_every_frame_at_full_size():
    frames = [PILImage.new("RGB", (800, 600), c) for c in (RED, GREEN)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    img = intake(data, all_frames=True, max_side=100)
    assert img.size == (800, 600) and [f.size for f in img.frames] == [(800, 600)] * 2


@pytest.mark.parametrize(
    "kind, save, alpha",
    [
        ("VP8 ", {"quality": 50}, False),
        ("VP8L", {"lossless": True}, False),
        ("VP8L", {"lossless": True, "alpha": True}, True),
        ("VP8X", {"quality": 50, "alpha": True}, True),
        ("VP8X", {"quality": 50, "exif": True}, False),
    ],
)
def test_webp_header_is_read_without_pillows_reader(kind, save, alpha, monkeypatch):
    save = dict(save)
    im = marked(301, 203)
    if save.pop("alpha", False):
        im.putalpha(128)
    if save.pop("exif", False):
        save["exif"] = exif_with(1)
    data = encode(im, "WEBP", **save)
    assert data[12:16] == kind.encode()
    monkeypatch.setattr(PILImage, "open", lambda *a, **k: pytest.fail("opened with Pillow"))
    head = header(data)
    assert head.format == "WEBP" and head.size == (301, 203) and head.decoded_size == (301, 203)
    # decoder canvas + frame bytes + frame, + a flattened copy with alpha
    assert head.cost == -(-301 * 203 * (21 if alpha else 17) // 4)


def test_header_checks_what_intake_checks_without_decoding(monkeypatch):
    big = encode(PILImage.new("RGB", (400, 300)), "PNG")
    with pytest.raises(ImageTooLarge, match="IMGSCRIBE_MAX_IMAGE_PIXELS"):
        header(big, max_pixels=100_000)
    with pytest.raises(InvalidImage, match="not a supported image"):
        header(b"GIF-ish but not really an image at all")
    monkeypatch.setattr(PILImage.Image, "load", lambda self: pytest.fail("decoded"))
    head = header(big)
    assert head.format == "PNG" and head.pixels == 120_000 and head.cost == 150_000  # 1.25 x


@pytest.mark.parametrize(
    "mode, quarters", [("RGB", 5), ("RGBA", 9), ("L", 9), ("P", 9), ("I;16", 17), ("I", 21), ("F", 21)]
)
def test_header_cost_grows_with_the_conversions_decoding_needs(mode, quarters):
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    data = encode(PILImage.new(mode, (40, 20)), fmt)
    assert header(data).cost == 40 * 20 * quarters // 4


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (20000, 3), (13000, 5), (6143, 100), (6144, 100)])
def test_header_predicts_the_reduced_jpeg_size(size):
    data = encode(PILImage.new("RGB", size, RED), "JPEG")
    assert intake(data, max_side=3072).size == header(data, max_side=3072).decoded_size
