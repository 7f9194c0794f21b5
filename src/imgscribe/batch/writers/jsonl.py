"""JSON lines: to a stream as records arrive (stdout), or to a file rebuilt atomically; and plain
text for people reading a terminal."""

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


class TextStreamWriter:
    """This run's answers for a person: the path, then each answer (``--text``)."""

    replays = False

    def __init__(self, stream: TextIO, names: list[str]):
        self.stream, self.names = stream, names

    def write(self, record: dict[str, Any]) -> None:
        lines = [str(record["path"])]
        if record.get("error"):
            lines.append(f"  error: {record['error']}")
        else:
            for name in self.names:
                label = "" if self.names == ["response"] else f"{name}: "
                lines.append(f"  {label}{record.get(name)}")
        self.stream.write("\n".join(lines) + "\n\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
