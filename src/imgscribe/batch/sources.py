"""Where the images come from: files, folders, globs, list files (text or CSV) and stdin.

:func:`expand` turns command-line arguments into a stable sequence of :class:`Path` (a local file),
:class:`Url` (an ``http(s)`` address from a list) and :class:`Missing` (an argument that named
nothing: reported as an error row, never fatal). Each path or URL comes once.

List files hold one path or URL per line (blank lines and ``#`` comments skipped), or are CSV
with a column named ``path``, ``file``, ``filename``, ``image`` or ``url`` (else the first
column). Relative paths in a list are relative to the list's folder (stdin: the current folder).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import ImageTooLarge, InvalidImage, InvalidRequest
from ..types import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

_SUFFIXES = {f".{e}" for e in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)}  # clips: one record each (imgscribe.video)
_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "url", "uri", "src")
STDIN = "-"


@dataclass(frozen=True)
class Missing:
    """An argument that named nothing: reported as an error row, never fatal."""

    source: str
    reason: str


@dataclass(frozen=True)
class Url:
    """An image to download (only from list files: a URL on the command line is taken as-is too)."""

    url: str

    def __str__(self) -> str:
        return self.url


Item = Path | Url | Missing


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (or of stdin) written as ``\\xff``, so
    that records can be written as UTF-8; a bad name fails its own row, not the run."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in _SUFFIXES and not path.name.startswith(".")


def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def expand(arguments: Iterable[str], lists: Iterable[str] = (), stdin: TextIO | None = None) -> Iterator[Item]:
    """Files as given (any extension: content decides), folders recursively, globs expanded,
    then the entries of each list file (``-``: stdin). An argument ``-`` reads a list from stdin.

    Inside folders and globs only files with an image extension are taken.
    """
    seen: set[str] = set()

    def once(item: Path | Url) -> Iterator[Item]:
        key = item.url if isinstance(item, Url) else os.path.normcase(os.path.abspath(item))
        if key not in seen:
            seen.add(key)
            yield item

    sources = [_stdin_list(stdin) if a == STDIN else _argument(a) for a in arguments]
    sources += [_list_file(name, stdin) for name in lists]
    for items in sources:
        for item in items:
            if isinstance(item, Missing):
                yield item
            else:
                yield from once(item)


def _argument(arg: str) -> Iterator[Item]:
    if is_url(arg):
        yield Url(arg)
        return
    path = Path(arg).expanduser()
    if path.is_file():
        yield path
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        if not files:
            yield Missing(arg, "no images found in this folder")
        yield from files
    elif glob.has_magic(arg):
        matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
        files = [m for m in matches if m.is_file() and is_image_name(m)]
        if not files:
            yield Missing(arg, "no images match this pattern")
        yield from files
    else:
        yield Missing(arg, "no such file or folder")


def _stdin_list(stdin: TextIO | None) -> Iterator[Item]:
    stream = stdin or sys.stdin
    if stream is None:  # started with stdin closed (``<&-``)
        raise InvalidRequest("'-' reads image paths from stdin, but stdin is closed; pipe a list in or use --list FILE")
    yield from read_list(stream, Path("."), STDIN)


def _list_file(name: str, stdin: TextIO | None) -> Iterator[Item]:
    if name == STDIN:
        yield from _stdin_list(stdin)
        return
    path = Path(name).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidRequest(f"--list: no such file: {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"--list: cannot read {name}: {exc}") from None
    yield from read_list(io.StringIO(text), path.parent, name, csv_hint=path.suffix.lower() in (".csv", ".tsv"))


def read_list(stream: TextIO, base: Path, label: str, csv_hint: bool = False) -> Iterator[Item]:
    """Entries of a list (plain lines or CSV), relative paths resolved against ``base``."""
    lines = stream.read().splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    if csv_hint or ("," in first and not _exists(first.strip(), base)):
        entries = _csv_entries(lines)
    else:
        entries = (line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    for n, entry in enumerate(entries, 1):
        if is_url(entry):
            yield Url(entry)
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else base / path
        if path.is_file():
            yield _tidy(path)
        else:
            yield Missing(entry, f"no such file (listed in {label})")


def _csv_entries(lines: list[str]) -> Iterator[str]:
    dialect = "excel-tab" if lines and "\t" in lines[0] and "," not in lines[0] else "excel"
    rows = csv.reader(lines, dialect)
    header = next(rows, None)
    if header is None:
        return
    names = [h.strip().lower() for h in header]
    column = next((names.index(c) for c in _COLUMNS if c in names), None)
    if column is None:  # no header we know: the first column, and the first row is data
        column = 0
        if header and header[0].strip():
            yield header[0].strip()
    for row in rows:
        if len(row) > column and row[column].strip() and not row[0].lstrip().startswith("#"):
            yield row[column].strip()


def _exists(entry: str, base: Path) -> bool:
    path = Path(entry).expanduser()
    return (path if path.is_absolute() else base / path).is_file()


def _tidy(path: Path) -> Path:
    """``base/./x.jpg`` -> ``base/x.jpg``, without resolving symlinks or making it absolute."""
    return Path(os.path.normpath(path))


def fetch(url: str, max_bytes: int, timeout: float) -> bytes:
    """Download one image the user listed (their own request: private addresses are fine)."""
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True,
                          headers={"User-Agent": "imgscribe", "Accept": "image/*"}) as response:  # fmt: skip
            if response.status_code >= 400:
                raise InvalidImage(f"cannot fetch {url}: HTTP {response.status_code}")
            parts, size = [], 0
            for part in response.iter_bytes():
                size += len(part)
                if 0 < max_bytes < size:
                    raise ImageTooLarge(
                        f"the image at {url} is over the limit of {max_bytes:,} bytes "
                        "(set IMGSCRIBE_MAX_IMAGE_BYTES to change it)"
                    )
                parts.append(part)
            return b"".join(parts)
    except httpx.HTTPError as exc:
        raise InvalidImage(f"cannot fetch {url}: {exc}") from None
