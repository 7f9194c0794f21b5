"""XMP and EXIF written into images and sidecars: read back, and not a pixel changed."""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
import pytest
from PIL import Image

from imgscribe.batch.writers.metadata import (
    jpeg_metadata,
    jpeg_split,
    png_chunks,
    png_metadata,
    read_xmp_fields,
    set_image_description,
    xmp_packet,
)
from imgscribe.batch.writers.xmp import XmpWriter, keywords_of

from .conftest import save_image

DESCRIPTION = "Un café au lait — a cup on a saucer"
FOREIGN_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    b' xmp:Rating="4"><dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def exif_text(path) -> str:
    with Image.open(path) as im:
        return im.getexif()[0x010E].encode("latin-1").decode("utf-8")  # Pillow reads bytes as Latin-1


def record(path, **fields) -> dict:
    return {"path": str(path), "sha256": sha(path), "error": None, "response": DESCRIPTION, **fields}


@pytest.fixture
def photo(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    exif[0x010F] = "Canon"
    return save_image(tmp_path / "photo.jpg", 1, (64, 48), quality=92, exif=exif.tobytes())


def test_jpeg_embed_keeps_every_pixel_and_reads_back(photo):
    before, scan = pixels(photo), jpeg_split(photo.read_bytes())[1]
    rec = record(photo, tags="cup, saucer,  coffee")
    XmpWriter("embed", "response", "tags").write(rec)
    assert rec["error"] is None and rec["written"]["xmp"] == "embedded" and rec["written"]["sha256"] == sha(photo)
    assert np.array_equal(pixels(photo), before) and jpeg_split(photo.read_bytes())[1] == scan
    with Image.open(photo) as im:
        exif = im.getexif()
        assert exif[0x0112] == 6 and exif[0x010F] == "Canon"  # the other tags survive
    assert exif_text(photo) == DESCRIPTION
    assert read_xmp_fields(jpeg_metadata(photo.read_bytes())[1]) == (DESCRIPTION, ["cup", "saucer", "coffee"])
    assert not [p for p in photo.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_rewriting_the_same_metadata_leaves_the_file_alone(photo):
    writer = XmpWriter("embed", "response", None)
    rec = record(photo)
    writer.write(rec)
    after = photo.stat().st_mtime_ns, photo.read_bytes()
    again = dict(rec, written={})
    writer.aliases[rec["written"]["sha256"]] = rec["sha256"]  # what the manifest knows on a rerun
    writer.write(again)
    assert again["error"] is None and (photo.stat().st_mtime_ns, photo.read_bytes()) == after


def test_existing_xmp_is_merged_not_replaced(tmp_path):
    photo = save_image(tmp_path / "p.jpg", 2, quality=90)
    data = photo.read_bytes()
    app1 = b"http://ns.adobe.com/xap/1.0/\x00" + FOREIGN_XMP
    photo.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    XmpWriter("embed", "response", "tags").write(rec := record(photo, tags=["cup", "Holiday"]))
    assert rec["error"] is None
    packet = jpeg_metadata(photo.read_bytes())[1]
    assert read_xmp_fields(packet) == (DESCRIPTION, ["holiday", "cup"])
    assert b'Rating="4"' in packet


def test_png_embed(tmp_path):
    photo = save_image(tmp_path / "p.png", 3)
    before = pixels(photo)
    idat = [c for c in png_chunks(photo.read_bytes()) if c[0] == b"IDAT"]
    XmpWriter("embed", "response", None).write(rec := record(photo))
    assert rec["error"] is None and rec["written"]["xmp"] == "embedded"
    assert np.array_equal(pixels(photo), before)
    assert [c for c in png_chunks(photo.read_bytes()) if c[0] == b"IDAT"] == idat
    with Image.open(photo) as im:
        im.verify()  # chunk CRCs
    assert exif_text(photo) == DESCRIPTION
    assert read_xmp_fields(png_metadata(photo.read_bytes())[1])[0] == DESCRIPTION


def test_formats_that_cannot_embed_get_a_sidecar(tmp_path):
    photo = save_image(tmp_path / "p.webp", 4)
    data = photo.read_bytes()
    writer = XmpWriter("embed", "response", "tags")
    writer.write(rec := record(photo, tags="a, b"))
    assert rec["written"]["xmp"] == str(tmp_path / "p.xmp") and writer.sidecars_instead == 1
    assert photo.read_bytes() == data
    assert read_xmp_fields((tmp_path / "p.xmp").read_bytes()) == (DESCRIPTION, ["a", "b"])


def test_sidecar_xmp_merges_with_an_existing_one(tmp_path):
    photo = save_image(tmp_path / "p.jpg", 5)
    (tmp_path / "p.xmp").write_bytes(FOREIGN_XMP)
    XmpWriter("sidecar", "response", "tags").write(record(photo, tags="cup"))
    packet = (tmp_path / "p.xmp").read_bytes()
    assert read_xmp_fields(packet) == (DESCRIPTION, ["holiday", "cup"]) and b'Rating="4"' in packet


def test_a_failed_replace_leaves_the_original(photo, monkeypatch):
    data = photo.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    XmpWriter("embed", "response", None).write(rec := record(photo))
    assert "writing metadata failed, the image was not changed: disk full" in rec["error"]
    assert photo.read_bytes() == data and sorted(p.name for p in photo.parent.iterdir()) == ["photo.jpg"]


def test_a_file_changed_since_it_was_described_is_not_touched(photo):
    rec = record(photo)
    save_image(photo, 9, quality=80)
    data = photo.read_bytes()
    XmpWriter("embed", "response", None).write(rec)
    assert "changed after it was described" in rec["error"] and photo.read_bytes() == data


def test_exif_edit_keeps_the_rest_of_the_block_in_place():
    # IFD0 (Make) -> IFD1 (a thumbnail pointer); the edit relocates IFD0 only.
    e = "<"
    make = b"Nikon\x00"
    ifd0 = struct.pack(e + "H", 1) + struct.pack(e + "HHII", 0x010F, 2, len(make), 8 + 18 + 12) + struct.pack(e + "I", 8 + 18 + 12 + 6)
    ifd1 = struct.pack(e + "H", 1) + struct.pack(e + "HHII", 0x0201, 4, 1, 1234) + struct.pack(e + "I", 0)
    tiff = b"II*\x00" + struct.pack(e + "I", 8) + ifd0 + b"\x00" * 12 + make + ifd1
    new = set_image_description(tiff, "héllo")
    assert new[: len(tiff)][8:] == tiff[8:]  # nothing that was there moved
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + new)
    assert exif[0x010F] == "Nikon" and exif[0x010E].encode("latin-1").decode() == "héllo"
    (new_ifd0,) = struct.unpack(e + "I", new[4:8])
    (count,) = struct.unpack(e + "H", new[new_ifd0 : new_ifd0 + 2])
    assert struct.unpack(e + "I", new[new_ifd0 + 2 + 12 * count : new_ifd0 + 6 + 12 * count])[0] == 8 + 18 + 12 + 6


def test_keywords_from_text_and_lists():
    assert keywords_of("- cat\n- sofa, Cat; 'indoor'") == ["cat", "sofa", "indoor"]
    assert keywords_of(["a", "b"]) == ["a", "b"] and keywords_of(None) == []


def test_packet_is_valid_xmp_with_escaping():
    packet = xmp_packet('5 < 6 & "quotes"', ["a&b"])
    assert read_xmp_fields(packet) == ('5 < 6 & "quotes"', ["a&b"])
    assert packet.startswith(b"<?xpacket begin=") and packet.endswith(b'<?xpacket end="w"?>')
