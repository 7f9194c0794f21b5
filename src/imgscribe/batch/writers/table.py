"""CSV and Parquet: one row per image, one column per prompt and per structured field.

Columns, in order: ``path``, one per prompt (its answer), one per property of the prompts' JSON
schemas (``fields`` as JSON when a prompt asks for plain ``json``), ``error``, ``sha256``,
``model``, ``model_digest``, ``prompt``, ``done_reason``, ``options``, ``timings`` (JSON where not
scalar), ``wall_seconds``, ``id``, ``key``. Parquet gets typed columns (strings, int64, double,
bool, list<string>) from the schema; CSV gets text, lists joined with ", ".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..prompts import Prompt
from ..records import field_value
from .atomic import AtomicFile

BASE_BEFORE = ["path"]
BASE_AFTER = [("error", "str"), ("sha256", "str"), ("model", "str"), ("model_digest", "str"), ("prompt", "json"),
              ("done_reason", "json"), ("options", "json"), ("timings", "json"), ("wall_seconds", "float"),
              ("id", "str"), ("key", "str")]  # fmt: skip
_SCHEMA_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


def columns(prompts: list[Prompt]) -> list[tuple[str, str]]:
    """(name, kind) of each column for these prompts; kind is str, int, float, bool, list or json."""
    cols: list[tuple[str, str]] = [("path", "str")] + [(p.name, "str") for p in prompts]
    taken = {name for name, _ in cols} | {name for name, _ in BASE_AFTER}
    plain_json = False
    for p in prompts:
        if isinstance(p.format, dict) and isinstance(p.format.get("properties"), dict):
            for name, prop in p.format["properties"].items():
                column = name if name not in taken else f"fields.{name}"
                if column not in taken:
                    cols.append((column, _kind(prop)))
                    taken.add(column)
        elif p.format is not None:
            plain_json = True
    if plain_json and "fields" not in taken:
        cols.append(("fields", "json"))
    return cols + BASE_AFTER


def _kind(prop: Any) -> str:
    if not isinstance(prop, dict):
        return "json"
    kind = prop.get("type")
    if kind in _SCHEMA_TYPES:
        return _SCHEMA_TYPES[kind]
    if kind == "array" and isinstance(prop.get("items"), dict) and prop["items"].get("type") == "string":
        return "list"
    return "json"


def flatten(record: dict[str, Any], cols: list[tuple[str, str]]) -> dict[str, Any]:
    row = {}
    for name, kind in cols:
        if name == "wall_seconds":
            wall = _wall(record.get("timings"))
            row[name] = wall / 1e9 if wall is not None else None
            continue
        value = record.get(name) if name in record else field_value(record, name)
        row[name] = _convert(value, kind)
    return row


def _wall(timings: Any) -> int | None:
    if isinstance(timings, dict) and isinstance(timings.get("wall_duration"), int):
        return timings["wall_duration"]
    return None


def _convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "str":
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return bool(value)
        if kind == "list":
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class CsvWriter:
    replays = True

    def __init__(self, path: Path, cols: list[tuple[str, str]]):
        self.cols = cols
        self.file = AtomicFile(path, "w", newline="")
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        self.csv = csv.DictWriter(self.file.handle, [name for name, _ in cols], dialect=dialect)
        self.csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        row = flatten(record, self.cols)
        for name, kind in self.cols:
            if kind == "list" and row[name] is not None:
                row[name] = ", ".join(row[name])
        self.csv.writerow(row)

    def close(self) -> None:
        self.file.commit()


class ParquetWriter:
    replays = True
    ROW_GROUP = 2000

    def __init__(self, path: Path, cols: list[tuple[str, str]]):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            from ...errors import InvalidRequest

            raise InvalidRequest("Parquet output needs pyarrow: pip install 'imgscribe[batch]'") from None
        self.pa = pa
        self.cols = cols
        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                 "list": pa.list_(pa.string()), "json": pa.string()}  # fmt: skip
        self.schema = pa.schema([(name, types[kind]) for name, kind in cols])
        self.file = AtomicFile(path, "wb")
        self.writer = pq.ParquetWriter(self.file.handle, self.schema, compression="zstd")
        self.rows: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.rows.append(flatten(record, self.cols))
        if len(self.rows) >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(self.pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        if self.file.done:
            return
        try:
            self._flush()
            self.writer.close()
        except BaseException:
            self.file.abort()
            raise
        self.file.commit()
