"""End to end on the real built-in model (slow: it loads an image classifier and OCR)."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
from PIL import Image
from skimage import data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", quality=90)
    Image.fromarray(data.chelsea()).save(folder / "cat.png")
    (folder / "broken.jpg").write_text("not a picture")
    return folder


def test_describe_builtin_resumes(imgscribe_cmd, cli_env, photos, tmp_path):
    (tmp_path / "prompts.toml").write_text('caption = "Describe this image."\ntags = "List keywords."\n')
    args = [*imgscribe_cmd, "describe", str(photos), "--prompts", str(tmp_path / "prompts.toml"),
            "--out", str(tmp_path / "o.jsonl"), "--out", str(tmp_path / "o.csv")]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, env=cli_env, timeout=500)
    assert first.returncode == 1, first.stderr  # broken.jpg
    assert "described 2 image(s), 1 failed" in first.stderr
    records = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())}
    for name in ("coffee.jpg", "cat.png"):
        assert records[name]["caption"] and records[name]["tags"] and records[name]["model"] == "builtin"
        assert records[name]["model_digest"].startswith("sha256:")
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert len(rows) == 3
    again = subprocess.run(args, capture_output=True, text=True, env=cli_env, timeout=500)
    assert "2 skipped" in again.stderr and len((tmp_path / "o.jsonl").read_text().splitlines()) == 3


def test_builtin_structured_fields_into_xmp(imgscribe_cmd, cli_env, photos, tmp_path):
    image = tmp_path / "coffee.jpg"
    image.write_bytes((photos / "coffee.jpg").read_bytes())
    result = subprocess.run([*imgscribe_cmd, "describe", str(image), "--format", "json", "--xmp", "embed",
                             "--out", str(tmp_path / "o.jsonl")], capture_output=True, text=True, env=cli_env,
                            timeout=500)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (record,) = map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())
    assert isinstance(record["fields"], dict) and record["written"]["xmp"] == "embedded"
    with Image.open(image) as im:
        assert im.getexif().get(0x010E)
