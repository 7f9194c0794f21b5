"""Sources: files, folders, globs, list files (text, CSV), stdin, URLs; each once, in order."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imgscribe.batch.sources import Missing, Url, expand
from imgscribe.errors import InvalidRequest


def names(items):
    return [i.name if isinstance(i, Path) else i for i in items]


def test_files_folders_globs_each_once(images):
    items = list(expand([str(images), str(images / "img0.jpg"), str(images / "*.png"), str(images / "nope.jpg")]))
    assert names(items[:-1]) == ["broken.jpg", "img0.jpg", "img2.jpg", "img4.png", "img1.jpg", "img3.jpg"]
    assert items[-1] == Missing(str(images / "nope.jpg"), "no such file or folder")


def test_empty_folder_and_pattern_are_error_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    items = list(expand([str(tmp_path / "empty"), str(tmp_path / "*.jpg")]))
    assert [i.reason for i in items] == ["no images found in this folder", "no images match this pattern"]


def test_text_list_relative_to_the_list_with_comments_and_urls(images, tmp_path):
    listing = images / "list.txt"
    listing.write_text("# my picks\nimg0.jpg\n\nsub/img1.jpg\nhttps://example.com/a.jpg\nmissing.jpg\n")
    items = list(expand([], [str(listing)]))
    assert items[:2] == [images / "img0.jpg", images / "sub" / "img1.jpg"]
    assert items[2] == Url("https://example.com/a.jpg")
    assert isinstance(items[3], Missing) and "list.txt" in items[3].reason


def test_csv_list_by_column_name(images):
    listing = images / "set.csv"
    listing.write_text("caption,file_name\n\"a, b\",img0.jpg\nc,img4.png\n")
    assert list(expand([], [str(listing)])) == [images / "img0.jpg", images / "img4.png"]


def test_csv_without_a_known_header_takes_the_first_column(images):
    listing = images / "set.csv"
    listing.write_text("img0.jpg,x\nimg4.png,y\n")
    assert list(expand([], [str(listing)])) == [images / "img0.jpg", images / "img4.png"]


def test_stdin_list_and_duplicates(images, monkeypatch):
    monkeypatch.chdir(images)
    stdin = io.StringIO("img0.jpg\n./img0.jpg\nimg4.png\n")
    assert list(expand(["-", "img4.png"], stdin=stdin)) == [Path("img0.jpg"), Path("img4.png")]


def test_unreadable_list_is_a_usage_error(tmp_path):
    with pytest.raises(InvalidRequest, match="no such file"):
        list(expand([], [str(tmp_path / "nope.txt")]))
