"""Where records go: one small interface, several writers.

A :class:`Writer` gets records through :meth:`Writer.write` and finishes in :meth:`Writer.close`.
The runner calls them in this order for each record:

1. **side effects** (sidecar ``.txt``, XMP/EXIF): only this run's successful records, *before*
   the record is committed to the manifest. One may note what it wrote under
   ``record["written"]``, and must be idempotent: a kill between its write and the commit makes
   the rerun write again.
2. the manifest line (the commit; see :mod:`..manifest`).
3. **outputs**. Those with ``replays = True`` (CSV, Parquet, a JSON-lines copy) hold the whole
   result: they first get every record already in the manifest, then the new ones, and appear
   atomically at :meth:`close` (a killed run leaves the previous version; the rerun rebuilds it
   from the manifest). Stdout (``replays = False``) shows only this run's records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from ...errors import InvalidRequest


class Writer(Protocol):
    replays: bool

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidRequest(
            f"--out {path}: cannot tell the format from the name; use .jsonl, .csv or .parquet"
        )
    return FORMATS[suffix]


def check_target(path: str | Path, flag: str) -> None:
    """Refuse, before any work, a file that cannot be written: a folder, or a place we cannot write."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise InvalidRequest(f"{flag} {path} is a folder; give a file name, e.g. {target / 'captions.jsonl'}")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # missing folders are created
    if not parent.is_dir():
        raise InvalidRequest(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidRequest(f"{flag} {path}: no permission to write in {parent}; choose another place")


def open_output(path: str | Path, columns: list[tuple[str, str]]) -> Writer:
    """The writer for an output file, by its extension."""
    kind = output_format(path)
    if kind == "parquet":
        from .table import ParquetWriter

        return ParquetWriter(Path(path), columns)
    if kind == "csv":
        from .table import CsvWriter

        return CsvWriter(Path(path), columns)
    from .jsonl import JsonlFileWriter

    return JsonlFileWriter(Path(path))


__all__ = ["FORMATS", "Writer", "check_target", "open_output", "output_format"]
