"""Opt-in metadata: description and keywords as XMP (``dc:description``, ``dc:subject``) and EXIF
ImageDescription, in the image file (``embed``: JPEG and PNG) or a ``.xmp`` sidecar.

Writing never corrupts an image: the new file is built in memory with the compressed image data
copied verbatim (:mod:`.metadata`), read back and checked (the description, the keywords, the
image data bytes), written to a temporary file, fsync'd and renamed over the original. The file is
only touched when it still holds the bytes that were described. Formats that cannot be edited in
place (WebP, TIFF, GIF, HEIC, AVIF) get a sidecar ``photo.xmp`` instead (the Adobe convention),
merged with one that exists. Embedding changes the file's bytes and so its SHA-256: the record
notes the new hash under ``written.sha256`` so that a rerun still knows the image.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

from ...errors import ImgscribeError
from .atomic import write_atomic
from .metadata import EMBEDDERS, MetadataError, jpeg_split, png_chunks, read_xmp_fields, xmp_packet
from .sidecar import as_text, field_text

MODES = ("sidecar", "embed")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def keywords_of(value: Any) -> list[str]:
    """Keywords from a list, or from text separated by commas, semicolons or new lines."""
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[,;\n]", as_text(value))
    out: list[str] = []
    for item in items:
        word = _BULLET.sub("", as_text(item)).strip().strip("\"'#").strip()
        if word and word.casefold() not in {w.casefold() for w in out}:
            out.append(word)
    return out


class XmpWriter:
    replays = False

    def __init__(self, mode: str, description: str | None, keywords: str | None, aliases: dict[str, str] | None = None):
        self.mode = mode
        self.description = description
        self.keywords = keywords
        self.aliases = aliases if aliases is not None else {}
        self.sidecars_instead = 0  # embed asked for, format cannot hold it

    def write(self, record: dict[str, Any]) -> None:
        if record.get("error") or "://" in record["path"]:
            return
        from ..records import field_value

        description = field_text(record, self.description) if self.description else None
        keywords = keywords_of(field_value(record, self.keywords)) if self.keywords else []
        if not description and not keywords:
            return
        path = Path(record["path"])
        written = record.setdefault("written", {})
        try:
            if self.mode == "embed":
                done = self._embed(path, record, description or None, keywords)
                if done:
                    written["xmp"], written["sha256"] = "embedded", done
                    return
                self.sidecars_instead += 1
            written["xmp"] = str(self._sidecar(path, description or None, keywords))
        except (OSError, MetadataError) as exc:
            record["error"] = f"writing metadata failed, the image was not changed: {exc}"

    def _embed(self, path: Path, record: dict[str, Any], description: str | None, keywords: list[str]) -> str | None:
        """The new SHA-256 when embedded; None when this format gets a sidecar."""
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if record.get("sha256") not in (sha, self.aliases.get(sha)):
            raise MetadataError("the file changed after it was described")
        fmt = _format(data)
        if fmt not in EMBEDDERS:
            return None
        embed, read = EMBEDDERS[fmt]
        if _holds(data, read, description, keywords):
            return sha  # already there (a rerun): leave the file alone
        new = embed(data, description, keywords)
        check(data, new, fmt, description, keywords)
        write_atomic(path, new)
        return hashlib.sha256(new).hexdigest()

    def _sidecar(self, path: Path, description: str | None, keywords: list[str]) -> Path:
        target = path.with_suffix(".xmp")
        existing = target.read_bytes() if target.exists() else None
        if existing is not None:
            got_desc, got_keys = read_xmp_fields(existing)
            if (description is None or got_desc == description) and _has(got_keys, keywords):
                return target
        packet = xmp_packet(description, keywords, existing)
        got_desc, got_keys = read_xmp_fields(packet)
        if (description is not None and got_desc != description) or not _has(got_keys, keywords):
            raise MetadataError("the XMP read back differs from what was written")
        if packet != existing:
            write_atomic(target, packet)
        return target

    def close(self) -> None:
        pass


def _holds(data: bytes, read: Any, description: str | None, keywords: list[str]) -> bool:
    """Whether the file already says this (XMP description and keywords, EXIF description)."""
    exif, xmp = read(data)
    got_desc, got_keys = read_xmp_fields(xmp) if xmp else (None, [])
    if not _has(got_keys, keywords):
        return False
    if description is None:
        return True
    return got_desc == description and bool(exif) and _exif_description(exif) == description


def _exif_description(tiff: bytes) -> str | None:
    from PIL import Image

    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + tiff)
    value = exif.get(0x010E)
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")  # Pillow reads the bytes as Latin-1
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _has(got: list[str], wanted: list[str]) -> bool:
    """Keywords are merged without regard to case (an existing "Holiday" stands for "holiday")."""
    return {k.casefold() for k in wanted} <= {k.casefold() for k in got}


def _format(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return "other"


def check(old: bytes, new: bytes, fmt: str, description: str | None, keywords: list[str]) -> None:
    """Read the new file back: same image data, and the metadata says what we wrote."""
    from PIL import Image

    if fmt == "JPEG":
        same = jpeg_split(old)[1] == jpeg_split(new)[1]
    else:
        same = [c for c in png_chunks(old) if c[0] == b"IDAT"] == [c for c in png_chunks(new) if c[0] == b"IDAT"]
    if not same:
        raise MetadataError("internal error: the image data would change")
    try:
        with Image.open(io.BytesIO(new)) as im:
            im.verify() if fmt == "PNG" else None
        with Image.open(io.BytesIO(new)) as im:
            exif_desc = im.getexif().get(0x010E)
            _, xmp = EMBEDDERS[fmt][1](new)
    except MetadataError:
        raise
    except Exception as exc:
        raise MetadataError(f"the file would not read back ({type(exc).__name__}: {exc})") from None
    got_desc, got_keys = read_xmp_fields(xmp or b"")
    if description is not None:
        if got_desc != description:
            raise MetadataError("the XMP description read back differs from what was written")
        if exif_desc is None:
            raise MetadataError("the EXIF ImageDescription did not read back")
    if not _has(got_keys, keywords):
        raise MetadataError("the XMP keywords read back differ from what was written")


__all__ = ["MODES", "XmpWriter", "ImgscribeError", "keywords_of"]
