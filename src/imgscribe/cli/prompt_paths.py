"""Find image paths inside a prompt, as ``ollama run`` does, and a little better.

``ollama run llava "What's in this image? ./art.png"`` attaches ``./art.png`` and sends the rest
as the prompt. Like Ollama we accept ``/``, ``./``, ``../`` and ``\\``-escaped spaces; beyond it we
accept ``~/``, quoted paths with spaces, unescaped spaces when such a file exists, a bare file
name that exists, and more formats. A path-like word that names no file is an error, not silently
left in the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidRequest
from ..types import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

_EXT = "(?:" + "|".join((*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)) + ")"  # a clip: imgscribe.video
_END = r"(?=$|[\s,;:!?)\]'\"]|\.(?:\s|$))"
_START = r"(?<![\w/\\.~])"
_QUOTED = re.compile(r"([\"'])(?P<path>[^\"'\n]+?\." + _EXT + r")\1", re.IGNORECASE)
# A path that starts like a path; escaped characters allowed, no plain spaces.
_PLAIN = re.compile(_START + r"(?P<path>(?:[A-Za-z]:)?(?:~|\.\.?)?[/\\](?:\\.|[^\s\"'\\])*?\." + _EXT + ")" + _END, re.I)
# The same with plain spaces (Ollama's rule); kept only when the file exists.
_SPACED = re.compile(_START + r"(?P<path>(?:[A-Za-z]:)?(?:~|\.\.?)?[/\\][^\n\"']*?\." + _EXT + ")" + _END, re.I)
_BARE = re.compile(r"(?<![\w/\\.~-])(?P<path>[\w][\w.\-]*\." + _EXT + ")" + _END, re.I)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass
class Extracted:
    prompt: str
    paths: list[Path]


def _to_path(text: str) -> Path:
    return Path(_UNESCAPE.sub(r"\1", text)).expanduser()


def extract_image_paths(prompt: str, cwd: Path | None = None) -> Extracted:
    """Split ``prompt`` into the text to send and the image files it names, in order of appearance."""
    base = cwd or Path.cwd()
    found: list[tuple[int, int, Path]] = []  # (start, end, path)

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e, _ in found)

    def resolve(text: str) -> Path:
        path = _to_path(text)
        return path if path.is_absolute() else base / path

    for pattern, must_exist in ((_QUOTED, True), (_SPACED, False), (_PLAIN, True), (_BARE, False)):
        for match in pattern.finditer(prompt):
            start, end = match.span() if pattern is _QUOTED else match.span("path")
            if not free(start, end):
                continue
            path = resolve(match.group("path"))
            if path.is_file():
                found.append((start, end, path))
            elif must_exist:
                raise InvalidRequest(f"image not found: {match.group('path')}")
    found.sort(key=lambda item: item[0])
    text = prompt
    for start, end, _ in reversed(found):
        text = text[:start] + text[end:]
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text).strip()
    return Extracted(prompt=text, paths=[p for _, _, p in found])
