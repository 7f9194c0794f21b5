"""JSON lines: to a stream as records arrive (stdout), or to a file rebuilt atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from .atomic import AtomicFile


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


class JsonlStreamWriter:
    """This run's records, one line each, flushed at once (for ``--out -`` / stdout)."""

    replays = False

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(dumps(record) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonlFileWriter:
    """A JSON-lines copy of the whole result (when the manifest lives elsewhere)."""

    replays = True

    def __init__(self, path: Path):
        self.file = AtomicFile(path, "w")

    def write(self, record: dict[str, Any]) -> None:
        self.file.handle.write(dumps(record) + "\n")

    def close(self) -> None:
        self.file.commit()
