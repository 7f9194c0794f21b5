"""The manifest: append-only, repaired and compacted on open, each id once."""

from __future__ import annotations

import json

import pytest

from imgscribe.batch.manifest import Manifest
from imgscribe.errors import ImgscribeError


def rec(i: int, error: str | None = None, path: str | None = None, **extra) -> dict:
    return {"id": f"id{i}", "key": f"key{i}", "path": path or f"p{i}.jpg", "sha256": f"s{i}", "error": error, **extra}


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_append_and_reopen(tmp_path):
    path = tmp_path / "out.jsonl"
    with Manifest(path) as m:
        index = m.open()
        assert not index.ids
        m.append(rec(1))
        m.append(rec(2))
    with Manifest(path) as m:
        index = m.open()
        assert index.ids == {"id1", "id2"} and index.keys == {"key1", "key2"}
        assert m.get("id2")["path"] == "p2.jpg" and m.get_key("key1")["id"] == "id1"
    assert [r["id"] for r in lines(path)] == ["id1", "id2"]


def test_torn_line_unreadable_lines_and_error_rows_are_dropped(tmp_path):
    path = tmp_path / "out.jsonl"
    good = json.dumps(rec(1)) + "\n"
    path.write_text(good + "{garbage\n" + json.dumps(rec(2, error="bad")) + "\n" + json.dumps(rec(3))[:25])
    with Manifest(path) as m:
        index = m.open()
        assert index.ids == {"id1"}
        assert m.dropped == {"torn": 1, "unreadable": 1, "updated": 0, "error": 1, "overwrite": 0}
        m.append(rec(3))
    assert [r["id"] for r in lines(path)] == ["id1", "id3"]
    assert not list(tmp_path.glob(".out.jsonl.*.tmp"))


def test_overwrite_forgets_the_paths_being_redone(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(rec(i)) + "\n" for i in range(3)))
    with Manifest(path) as m:
        assert m.open(redo_paths={"p1.jpg"}).ids == {"id0", "id2"}
    assert [r["id"] for r in lines(path)] == ["id0", "id2"]


def test_an_update_wins_and_the_file_is_compacted_on_close(tmp_path):
    path = tmp_path / "out.jsonl"
    with Manifest(path) as m:
        m.open()
        m.append(rec(1))
        m.append(rec(2, error="failed"))
        m.append(rec(1, written={"sha256": "new"}))
        assert m.get("id1")["written"] == {"sha256": "new"}
    assert [(r["id"], r.get("written")) for r in lines(path)] == [("id2", None), ("id1", {"sha256": "new"})]
    with Manifest(path) as m:
        index = m.open()
        assert index.aliases == {"new": "s1"} and index.ids == {"id1"}


def test_lines_that_are_not_ours_are_kept(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"path": "old.jpg", "response": "from an older version"}\n' + json.dumps(rec(1, error="x")) + "\n")
    with Manifest(path) as m:
        assert m.open().ids == set()
    assert lines(path) == [{"path": "old.jpg", "response": "from an older version"}]


def test_one_run_at_a_time(tmp_path):
    path = tmp_path / "out.jsonl"
    with Manifest(path) as first:
        first.open()
        with pytest.raises(ImgscribeError, match="another 'imgscribe describe' is writing"):
            Manifest(path).open()
    with Manifest(path) as again:  # released on close
        again.open()
