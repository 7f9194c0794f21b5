"""``imgscribe describe`` through a real subprocess, on the echo model."""

from __future__ import annotations

import csv
import json
import subprocess

from .conftest import make_echo


def run(cmd, *args, env, cwd=None, stdin=None):
    return subprocess.run([*cmd, "describe", *args], capture_output=True, text=True, env=env, cwd=cwd, input=stdin,
                          timeout=120)  # fmt: skip


def test_prompt_file_tables_and_a_stdin_list(imgscribe_cmd, cli_env, images, tmp_path, echo_model):
    (tmp_path / "prompts.toml").write_text(
        'caption = "Caption {filename}."\n'
        '[tags]\nprompt = "Keywords for {folder}."\n'
    )
    result = run(imgscribe_cmd, "-", "-m", echo_model, "--prompts", str(tmp_path / "prompts.toml"),
                 "--out", str(tmp_path / "o.csv"), "--sidecar", "{caption} | {tags}", "--xmp", "embed",
                 env=cli_env, cwd=images, stdin="img0.jpg\nimg4.png\nsub/img1.jpg\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # sidecars and a CSV were asked for: nothing on stdout
    assert "described 3 image(s), 0 failed, 0 skipped" in result.stderr and "images/s" in result.stderr
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert [r["path"] for r in rows if r["path"] == "img0.jpg"] and rows[0]["caption"].startswith("echo: Caption img")
    assert rows[0]["tags"].startswith("echo: Keywords for")
    assert (images / "img0.txt").read_text().startswith("echo: Caption img0.jpg. |")
    assert (tmp_path / "o.manifest.jsonl").exists()  # the resume file, next to the CSV
    from PIL import Image

    with Image.open(images / "img0.jpg") as im:
        assert im.getexif()[0x010E].startswith("echo: Caption img0.jpg.")  # --xmp: the first prompt


def test_usage_errors_are_one_clear_line(imgscribe_cmd, cli_env, images, echo_model):
    result = run(imgscribe_cmd, str(images), "-m", echo_model, "-p", "Describe {name}", env=cli_env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: unknown placeholder {name}")
    result = run(imgscribe_cmd, str(images), "-m", echo_model, "--out", "x.txt", env=cli_env)
    assert result.returncode == 1 and "use .jsonl, .csv or .parquet" in result.stderr
    result = run(imgscribe_cmd, env=cli_env)
    assert result.returncode == 2 and "give image paths, folders, globs" in result.stderr


def test_json_lines_to_stdout_with_a_schema(imgscribe_cmd, cli_env, images, tmp_path):
    make_echo("echo-test")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"images": {"type": "array"}}}))
    result = run(imgscribe_cmd, str(images / "img0.jpg"), "-m", "echo-test", "--format", str(schema), env=cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(record["fields"]["images"]) == 1 and record["error"] is None
