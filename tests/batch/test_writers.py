"""Writers: tables read back with their types; files appear whole or not at all; sidecars."""

from __future__ import annotations

import csv

from imgscribe.batch.prompts import Prompt
from imgscribe.batch.writers.atomic import AtomicFile
from imgscribe.batch.writers.sidecar import SidecarWriter, field_text
from imgscribe.batch.writers.table import CsvWriter, ParquetWriter, columns

SCHEMA = {"type": "object", "properties": {"description": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}},
                                           "people": {"type": "integer"}, "error": {"type": "string"}}}  # fmt: skip
PROMPTS = [Prompt("alt", "Alt text."), Prompt("meta", "Facts.", format=SCHEMA)]
RECORD = {"id": "i", "key": "k", "path": "a.jpg", "sha256": "s", "model": "m", "model_digest": "d",
          "prompt": {"alt": "Alt text.", "meta": "Facts."}, "alt": "A cat.", "meta": "{...}",
          "fields": {"description": "A cat on a sofa", "keywords": ["cat", "sofa"], "people": 0, "error": "x"},
          "options": {}, "done_reason": {"alt": "stop"}, "timings": {"wall_duration": 1_500_000_000}, "error": None}  # fmt: skip


def test_columns_follow_the_prompts_and_the_schema():
    names = [name for name, _ in columns(PROMPTS)]
    assert names[:7] == ["path", "alt", "meta", "description", "keywords", "people", "fields.error"]


def test_csv_and_parquet_read_back(tmp_path):
    cols = columns(PROMPTS)
    for writer in (CsvWriter(tmp_path / "t.csv", cols), ParquetWriter(tmp_path / "t.parquet", cols)):
        writer.write(RECORD)
        writer.write({"id": "j", "path": "b.jpg", "error": "bad image"})
        writer.close()
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert rows[0]["keywords"] == "cat, sofa" and rows[0]["wall_seconds"] == "1.5" and rows[1]["error"] == "bad image"
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert table[0]["keywords"] == ["cat", "sofa"] and table[0]["people"] == 0 and table[0]["fields.error"] == "x"
    assert table[1]["alt"] is None and table[1]["error"] == "bad image"


def test_a_file_that_is_not_committed_leaves_the_old_one(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    file = AtomicFile(path)
    file.handle.write("new, half written")
    assert path.read_text() == "old\n"
    file.abort()
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    AtomicFile(path).commit()
    assert path.read_text() == ""


def test_sidecar_modes(tmp_path):
    image = tmp_path / "a.jpg"
    record = dict(RECORD, path=str(image))
    SidecarWriter("alt").write(dict(record))
    assert (tmp_path / "a.txt").read_text() == "A cat.\n"
    (tmp_path / "a.txt").write_text("tag1, tag2\n")
    SidecarWriter("alt", existing="append").write(dict(record))
    SidecarWriter("alt", existing="append").write(dict(record))  # a rerun adds nothing
    assert (tmp_path / "a.txt").read_text() == "tag1, tag2, A cat.\n"
    SidecarWriter("keywords", ext="tags", existing="replace").write(dict(record))
    assert (tmp_path / "a.tags").read_text() == "cat, sofa\n"
    writer = SidecarWriter("alt")
    writer.write(dict(record))
    assert writer.kept == 1 and (tmp_path / "a.txt").read_text() == "tag1, tag2, A cat.\n"


def test_field_templates():
    assert field_text(RECORD, "{alt}\\n{keywords} ({people})") == "A cat.\ncat, sofa (0)"
    assert field_text(RECORD, "fields.description") == "A cat on a sofa"
