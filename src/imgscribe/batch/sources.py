"""Expand command-line arguments (files, folders, globs) into image paths, in a stable order."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..types import IMAGE_EXTENSIONS

_SUFFIXES = {f".{e}" for e in IMAGE_EXTENSIONS}


@dataclass(frozen=True)
class Missing:
    """An argument that named nothing: reported as an error row, never fatal."""

    source: str
    reason: str


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in _SUFFIXES and not path.name.startswith(".")


def expand(arguments: Iterable[str]) -> Iterator[Path | Missing]:
    """Files as given (any extension: content decides), folders recursively, globs expanded.

    Inside folders and globs only files with an image extension are taken. Each path once.
    """
    seen: set[Path] = set()

    def once(path: Path) -> Iterator[Path]:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            yield path

    for arg in arguments:
        path = Path(arg).expanduser()
        if path.is_file():
            yield from once(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
            if not files:
                yield Missing(arg, "no images found in this folder")
            for file in files:
                yield from once(file)
        elif glob.has_magic(arg):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file() and is_image_name(m)]
            if not files:
                yield Missing(arg, "no images match this pattern")
            for file in files:
                yield from once(file)
        else:
            yield Missing(arg, "no such file or folder")
