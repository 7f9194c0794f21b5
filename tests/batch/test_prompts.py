"""Prompt placeholders and prompt files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from imgscribe.batch.prompts import Context, Prompt, check, load_prompt_file, render
from imgscribe.errors import InvalidRequest


def jpeg_with_exif(path: Path) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"  # DateTimeOriginal
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "JPEG", exif=exif.tobytes())
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_placeholders(tmp_path):
    image = tmp_path / "trip" / "beach.jpg"
    image.parent.mkdir()
    data = jpeg_with_exif(image)
    (tmp_path / "trip" / "beach.txt").write_text("sand, sea\n")
    (tmp_path / "trip" / "beach.tags").write_text("summer")
    ctx = Context("trip/beach.jpg", image, data)
    text = "{filename} {stem} {folder} {path} {exif.Make} {exif.DateTimeOriginal} [{exif.Nope}] {sidecar} {sidecar.tags}"
    assert render(text, ctx) == "beach.jpg beach trip trip/beach.jpg Canon 2024:05:01 10:00:00 [] sand, sea summer"


def test_json_examples_and_escapes_are_left_alone(tmp_path):
    ctx = Context("a.jpg", tmp_path / "a.jpg", b"")
    assert render('Answer as {"caption": "..."} for {{filename}}', ctx) == 'Answer as {"caption": "..."} for {filename}'
    assert render("{ spaced } {x:y}", ctx) == "{ spaced } {x:y}"


def test_unknown_placeholders_and_bad_names_are_refused():
    with pytest.raises(InvalidRequest, match=r"unknown placeholder \{name\}"):
        check([Prompt("response", "Describe {name}")])
    with pytest.raises(InvalidRequest, match="cannot be used"):
        check([Prompt("path", "x")])
    with pytest.raises(InvalidRequest, match="two prompts"):
        check([Prompt("a", "x"), Prompt("a", "y")])


def test_prompt_file_toml(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps({"type": "object", "properties": {"d": {"type": "string"}}}))
    path = tmp_path / "prompts.toml"
    path.write_text(
        'caption = "Describe {filename}."\n'
        '[tags]\nprompt = "Keywords."\noptions = { temperature = 0.2 }\n'
        '[meta]\nprompt = "Facts."\nformat = "schema.json"\nsystem = "Be brief."\n'
    )
    prompts = load_prompt_file(path)
    assert [p.name for p in prompts] == ["caption", "tags", "meta"]
    assert prompts[1].options == {"temperature": 0.2}
    assert prompts[2].format == {"type": "object", "properties": {"d": {"type": "string"}}}
    assert prompts[2].system == "Be brief."


def test_prompt_file_json_and_errors(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"alt": {"prompt": "Alt text.", "format": "json"}}))
    (prompt,) = load_prompt_file(path)
    assert prompt.format == "json"
    path.write_text(json.dumps({"alt": {"prompt": "x", "colour": 1}}))
    with pytest.raises(InvalidRequest, match="unknown key"):
        load_prompt_file(path)
    path.write_text("{not json")
    with pytest.raises(InvalidRequest, match="cannot parse"):
        load_prompt_file(path)
