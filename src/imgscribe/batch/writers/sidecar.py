"""A text file next to each image (``photo.jpg`` -> ``photo.txt``): the training-set convention.

What goes in: one field (a prompt's name or a structured field; lists joined with ", "), or a
template over fields such as ``"{caption}\\n{tags}"``. An existing file is kept (the default:
it may be a caption someone wrote by hand), replaced, or added to (append/prepend, skipped when
the text is already there, so a rerun after a crash does not add it twice). Every write replaces
the file atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..prompts import render
from ..records import field_value
from .atomic import write_atomic

MODES = ("keep", "replace", "append", "prepend")


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def field_text(record: dict[str, Any], spec: str) -> str:
    """A field's text, or a ``{field}`` template filled from the record."""
    if "{" in spec:
        return render(spec.replace("\\n", "\n"), lambda name: as_text(field_value(record, name))).strip()
    return as_text(field_value(record, spec))


class SidecarWriter:
    replays = False

    def __init__(self, field: str, ext: str = ".txt", existing: str = "keep"):
        self.field = field
        self.ext = ext if ext.startswith(".") else "." + ext
        self.existing = existing
        self.kept = 0

    def write(self, record: dict[str, Any]) -> None:
        if record.get("error") or "://" in record["path"]:
            return
        text = field_text(record, self.field)
        if not text:
            return
        if self.ext == ".vtt" and record.get("video"):  # a clip's captions of what happens when (imgscribe.video)
            from ...video import webvtt

            text = webvtt(record["video"]["duration"], record["video"]["timestamps"], text).strip()
        target = Path(record["path"]).with_suffix(self.ext)
        old = target.read_text(encoding="utf-8", errors="replace") if target.exists() else None
        new = self._combine(old, text)
        if new is None:
            self.kept += 1
            record.setdefault("written", {})["sidecar"] = None
            return
        if new != old:
            write_atomic(target, new.encode("utf-8"), like=None)
        record.setdefault("written", {})["sidecar"] = str(target)

    def _combine(self, old: str | None, text: str) -> str | None:
        if old is None or self.existing == "replace":
            return text + "\n"
        body = old.strip()
        if body == text:
            return old  # already there (a rerun)
        if self.existing == "keep":
            return None
        if not body:
            return text + "\n"
        if self.existing == "append":
            return old if body.endswith(text) else f"{body}, {text}\n"
        return old if body.startswith(text) else f"{text}, {body}\n"

    def close(self) -> None:
        pass
