"""Description and keywords into image files without touching a pixel.

- **XMP packets**: ``dc:description`` (a language alternative) and ``dc:subject`` (a bag), built
  fresh or merged into an existing packet: every other property (a photo editor's settings, a
  rating, an extended-XMP pointer) is kept, and existing keywords are kept too.
- **EXIF ImageDescription** (tag 270), edited in the raw TIFF structure: IFD0 is copied to the end
  of the block with the new entry, and the header points at the copy. Nothing else moves, so maker
  notes, thumbnails and every offset stay valid (a full re-serialisation would drop some).
- **JPEG**: APP1 segments swapped or inserted; the bytes from the first SOS on (the compressed
  image) are copied verbatim. **PNG**: ``eXIf`` and an ``iTXt XML:com.adobe.xmp`` chunk; IDAT
  untouched. Other formats get a ``.xmp`` sidecar instead (see :mod:`.xmp`).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence

from ...errors import ImgscribeError

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "stEvt": "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#",
    "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "xmpNote": "http://ns.adobe.com/xmp/note/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "aux": "http://ns.adobe.com/exif/1.0/aux/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
JPEG_EXIF = b"Exif\x00\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEY = b"XML:com.adobe.xmp"
IMAGE_DESCRIPTION = 0x010E
_MAX_SEGMENT = 65533  # payload bytes of one JPEG marker segment


class MetadataError(ImgscribeError):
    pass


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


# -- XMP -------------------------------------------------------------------------------------------


def xmp_packet(description: str | None, keywords: Sequence[str] | None, existing: bytes | None = None) -> bytes:
    """An XMP packet with this description and these keywords (added to existing ones)."""
    root = _parse_xmp(existing) if existing else None
    if root is None:
        root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "imgscribe"})
        ET.SubElement(root, _q("rdf", "RDF"))
    rdf = root if root.tag == _q("rdf", "RDF") else root.find(_q("rdf", "RDF"))
    if rdf is None:
        rdf = ET.SubElement(root, _q("rdf", "RDF"))
    descs = rdf.findall(_q("rdf", "Description"))
    if not descs:
        descs = [ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})]
    if description is not None:
        _set_description(descs, description)
    if keywords:
        _add_keywords(descs, keywords)
    body = ET.tostring(root, encoding="unicode")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>'
    ).encode("utf-8")


def _parse_xmp(data: bytes) -> ET.Element | None:
    text = data.decode("utf-8", "replace")
    start = text.find("<x:xmpmeta")
    if start < 0:
        start = text.find("<rdf:RDF")
    end_tag = "</x:xmpmeta>" if text.find("<x:xmpmeta") >= 0 else "</rdf:RDF>"
    end = text.find(end_tag)
    if start < 0 or end < 0:
        return None
    try:
        return ET.fromstring(text[start : end + len(end_tag)])
    except ET.ParseError as exc:
        raise MetadataError(f"the existing XMP is not valid XML ({exc}); not changed") from None


def _find_property(descs: list[ET.Element], name: str) -> tuple[ET.Element, ET.Element | None]:
    for d in descs:
        found = d.find(name)
        if found is not None:
            return d, found
        if name in d.attrib:  # the attribute shorthand: turn it into an element
            value = d.attrib.pop(name)
            element = ET.SubElement(d, name)
            element.text = value
            return d, element
    return descs[0], None


def _set_description(descs: list[ET.Element], text: str) -> None:
    parent, prop = _find_property(descs, _q("dc", "description"))
    if prop is not None:
        parent.remove(prop)
    prop = ET.SubElement(parent, _q("dc", "description"))
    alt = ET.SubElement(prop, _q("rdf", "Alt"))
    li = ET.SubElement(alt, _q("rdf", "li"), {XML_LANG: "x-default"})
    li.text = text


def _add_keywords(descs: list[ET.Element], keywords: Sequence[str]) -> None:
    parent, prop = _find_property(descs, _q("dc", "subject"))
    existing: list[str] = []
    if prop is not None:
        existing = [li.text or "" for li in prop.iter(_q("rdf", "li"))]
        if not existing and prop.text and prop.text.strip():
            existing = [prop.text.strip()]
        parent.remove(prop)
    seen = {k.casefold() for k in existing}
    merged = existing + [k for k in keywords if k.casefold() not in seen and not seen.add(k.casefold())]
    prop = ET.SubElement(parent, _q("dc", "subject"))
    bag = ET.SubElement(prop, _q("rdf", "Bag"))
    for keyword in merged:
        ET.SubElement(bag, _q("rdf", "li")).text = keyword


def read_xmp_fields(packet: bytes) -> tuple[str | None, list[str]]:
    """dc:description (x-default, else the first) and dc:subject of a packet: for checking."""
    root = _parse_xmp(packet)
    if root is None:
        return None, []
    desc = None
    for alt in root.iter(_q("dc", "description")):
        items = list(alt.iter(_q("rdf", "li")))
        chosen = next((li for li in items if li.get(XML_LANG) == "x-default"), items[0] if items else None)
        desc = chosen.text if chosen is not None else alt.text
    keywords = [li.text or "" for s in root.iter(_q("dc", "subject")) for li in s.iter(_q("rdf", "li"))]
    return desc, keywords


# -- EXIF ------------------------------------------------------------------------------------------

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def set_image_description(tiff: bytes | None, text: str) -> bytes:
    """A TIFF/EXIF block (without the ``Exif\\0\\0`` prefix) with ImageDescription set to ``text``
    (UTF-8, as EXIF 3.0 and exiftool write it). ``None``: a new minimal block."""
    value = text.encode("utf-8") + b"\x00"
    if not tiff:
        tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 0)
    order = tiff[:2]
    if order not in (b"II", b"MM") or len(tiff) < 8:
        raise MetadataError("the existing EXIF block is not valid TIFF; not changed")
    e = "<" if order == b"II" else ">"
    (ifd0,) = struct.unpack(e + "I", tiff[4:8])
    if ifd0 + 2 > len(tiff):
        raise MetadataError("the existing EXIF block is truncated; not changed")
    (count,) = struct.unpack(e + "H", tiff[ifd0 : ifd0 + 2])
    end = ifd0 + 2 + 12 * count
    if end + 4 > len(tiff):
        raise MetadataError("the existing EXIF block is truncated; not changed")
    entries = [tiff[ifd0 + 2 + 12 * i : ifd0 + 14 + 12 * i] for i in range(count)]
    (next_ifd,) = struct.unpack(e + "I", tiff[end : end + 4])
    entries = [x for x in entries if struct.unpack(e + "H", x[:2])[0] != IMAGE_DESCRIPTION]
    body = bytearray(tiff)
    if len(body) % 2:
        body += b"\x00"
    new_ifd = len(body)
    n = len(entries) + 1
    data_at = new_ifd + 2 + 12 * n + 4
    if len(value) <= 4:
        ours = struct.pack(e + "HHI", IMAGE_DESCRIPTION, 2, len(value)) + value.ljust(4, b"\x00")
    else:
        ours = struct.pack(e + "HHII", IMAGE_DESCRIPTION, 2, len(value), data_at)
    entries.append(ours)
    entries.sort(key=lambda x: struct.unpack(e + "H", x[:2])[0])
    body += struct.pack(e + "H", n) + b"".join(entries) + struct.pack(e + "I", next_ifd)
    if len(value) > 4:
        body += value
    body[4:8] = struct.pack(e + "I", new_ifd)
    return bytes(body)


# -- JPEG ------------------------------------------------------------------------------------------


def jpeg_split(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(marker, payload) of each segment before the first SOS, and the bytes from SOS to the end."""
    if data[:2] != b"\xff\xd8":
        raise MetadataError("not a JPEG file")
    pos, segments = 2, []
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise MetadataError("the JPEG's header segments are damaged; not changed")
        while data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the compressed image follows
            return segments, data[pos:]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            segments.append((marker, b""))
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise MetadataError("the JPEG's header segments are damaged; not changed")
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length


def jpeg_join(segments: list[tuple[int, bytes]], scan: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    for marker, payload in segments:
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            out += bytes((0xFF, marker))
            continue
        if len(payload) > _MAX_SEGMENT:
            raise MetadataError(f"metadata of {len(payload):,} bytes does not fit in one JPEG segment")
        out += bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload
    return bytes(out + scan)


def jpeg_metadata(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The EXIF (TIFF bytes) and the main XMP packet of a JPEG, when present."""
    segments, _ = jpeg_split(data)
    exif = next((p[6:] for m, p in segments if m == 0xE1 and p.startswith(JPEG_EXIF)), None)
    xmp = next((p[len(JPEG_XMP) :] for m, p in segments if m == 0xE1 and p.startswith(JPEG_XMP)), None)
    return exif, xmp


def jpeg_embed(data: bytes, description: str | None, keywords: Sequence[str] | None) -> bytes:
    segments, scan = jpeg_split(data)
    exif_at = next((i for i, (m, p) in enumerate(segments) if m == 0xE1 and p.startswith(JPEG_EXIF)), None)
    xmp_at = next((i for i, (m, p) in enumerate(segments) if m == 0xE1 and p.startswith(JPEG_XMP)), None)
    old_xmp = segments[xmp_at][1][len(JPEG_XMP) :] if xmp_at is not None else None
    xmp = (0xE1, JPEG_XMP + xmp_packet(description, keywords, old_xmp))
    exif = None
    if description is not None:
        old_exif = segments[exif_at][1][6:] if exif_at is not None else None
        exif = (0xE1, JPEG_EXIF + set_image_description(old_exif, description))
    # Replace in place; new segments go after SOI and any JFIF/JFXX APP0, EXIF first.
    if exif is not None and exif_at is not None:
        segments[exif_at] = exif
    if xmp_at is not None:
        segments[xmp_at] = xmp
    at = 0
    while at < len(segments) and segments[at][0] == 0xE0:
        at += 1
    if exif is not None and exif_at is None:
        segments.insert(at, exif)
        exif_at = at
    if xmp_at is None:
        segments.insert((exif_at + 1) if exif_at is not None else at, xmp)
    return jpeg_join(segments, scan)


# -- PNG -------------------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise MetadataError("not a PNG file")
    pos, chunks = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise MetadataError("the PNG is truncated; not changed")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise MetadataError("the PNG is truncated; not changed")
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return bytes(out)


def _is_png_xmp(kind: bytes, body: bytes) -> bool:
    return kind == b"iTXt" and body.startswith(PNG_XMP_KEY + b"\x00")


def _itxt_text(body: bytes) -> bytes:
    keyword, _, rest = body.partition(b"\x00")
    compressed, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    return zlib.decompress(text) if compressed else text


def png_metadata(data: bytes) -> tuple[bytes | None, bytes | None]:
    chunks = png_chunks(data)
    exif = next((b for k, b in chunks if k == b"eXIf"), None)
    xmp = next((_itxt_text(b) for k, b in chunks if _is_png_xmp(k, b)), None)
    return exif, xmp


def png_embed(data: bytes, description: str | None, keywords: Sequence[str] | None) -> bytes:
    chunks = png_chunks(data)
    old_xmp = next((_itxt_text(b) for k, b in chunks if _is_png_xmp(k, b)), None)
    packet = xmp_packet(description, keywords, old_xmp)
    itxt = (b"iTXt", PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + packet)
    chunks = [(k, b) for k, b in chunks if not _is_png_xmp(k, b)]
    exif_at = next((i for i, (k, _) in enumerate(chunks) if k == b"eXIf"), None)
    if description is not None:
        old = chunks[exif_at][1] if exif_at is not None else None
        exif = (b"eXIf", set_image_description(old, description))
        if exif_at is not None:
            chunks[exif_at] = exif
        else:
            chunks.insert(_before_data(chunks), exif)
    chunks.insert(_before_data(chunks), itxt)
    return png_join(chunks)


def _before_data(chunks: list[tuple[bytes, bytes]]) -> int:
    return next((i for i, (k, _) in enumerate(chunks) if k in (b"IDAT", b"IEND")), len(chunks))


EMBEDDERS = {"JPEG": (jpeg_embed, jpeg_metadata), "PNG": (png_embed, png_metadata)}
