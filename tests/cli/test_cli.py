"""The `imgscribe` command through a real subprocess, on the real built-in model."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from PIL import Image
from skimage import data

pytestmark = pytest.mark.slow


def run(cmd, *args, env, cwd=None, stdin=None, timeout=240):
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, cwd=cwd, input=stdin, timeout=timeout
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", quality=90)
    Image.fromarray(data.chelsea()).save(folder / "cat.png")
    (folder / "nested").mkdir()
    Image.fromarray(data.rocket()).save(folder / "nested" / "rocket.webp")
    (folder / "broken.jpg").write_text("this is not a picture")
    return folder


def test_run_with_an_image_path_inside_the_prompt(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "run", "builtin", "What's in this image? ./coffee.jpg", env=cli_env, cwd=photos)
    assert result.returncode == 0, result.stderr
    assert "Added image" in result.stderr and "coffee.jpg" in result.stderr
    assert "espresso" in result.stdout.lower() or "cup" in result.stdout.lower()


def test_run_json_format_is_valid_json(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "run", "builtin", "--format", "json", "--image", str(photos / "cat.png"), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


def test_run_missing_image_is_one_clear_line(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "run", "builtin", "describe ./nope.png", env=cli_env, cwd=photos)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: image not found: ./nope.png"
    assert "Traceback" not in result.stderr


def test_run_unknown_model_tries_to_pull_it(imgscribe_cmd, cli_env, photos):
    # as `ollama run`: a model that is not here is pulled first (tests/cli/test_run_pulls.py); a
    # registry nothing answers at is one sentence
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(imgscribe_cmd, "run", f"127.0.0.1:{port}/library/nosuchmodel", "hi", "--insecure", env=cli_env)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach 127.0.0.1") and "Traceback" not in result.stderr


def test_usage_error_exits_2(imgscribe_cmd, cli_env):
    result = run(imgscribe_cmd, "run", env=cli_env)
    assert result.returncode == 2


def test_describe_a_folder_with_one_broken_file(imgscribe_cmd, cli_env, photos, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run(imgscribe_cmd, "describe", str(photos), "broken.jpg", "--out", str(out), env=cli_env, cwd=photos)
    assert result.returncode == 1, result.stderr  # one image failed; the others were still described
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert set(by_name) == {"broken.jpg", "cat.png", "coffee.jpg", "rocket.webp"}  # broken.jpg once
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["response"] is None
    for name in ("cat.png", "coffee.jpg", "rocket.webp"):
        record = by_name[name]
        assert record["error"] is None and record["response"]
        assert len(record["sha256"]) == 64 and record["model"] == "builtin"
        assert record["timings"]["total_duration"] > 0
    assert "broken.jpg" in result.stderr and "3 image(s), 1 failed" in result.stderr


def test_describe_to_stdout(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "describe", str(photos / "coffee.jpg"), env=cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["path"].endswith("coffee.jpg") and record["response"]


def test_list_and_show_say_builtin_is_not_a_vlm(imgscribe_cmd, cli_env):
    listing = run(imgscribe_cmd, "list", env=cli_env)
    assert listing.returncode == 0 and "builtin" in listing.stdout  # Ollama's columns: show says what it is
    shown = run(imgscribe_cmd, "show", "builtin", env=cli_env)
    assert shown.returncode == 0 and "not a vision-language model" in shown.stdout.lower()


def test_piped_prompt(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "run", "builtin", env=cli_env, cwd=photos, stdin="what colour is ./coffee.jpg")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_describe_text_for_people(imgscribe_cmd, cli_env, photos):
    result = run(imgscribe_cmd, "describe", str(photos / "coffee.jpg"), "broken.jpg", "--text", env=cli_env, cwd=photos)
    assert result.returncode == 1  # broken.jpg failed, coffee.jpg was still described
    blocks = [b.splitlines() for b in result.stdout.strip().split("\n\n")]
    by_path = {b[0].rsplit("/", 1)[-1]: b[1:] for b in blocks}
    assert set(by_path) == {"coffee.jpg", "broken.jpg"}
    assert by_path["broken.jpg"][0].startswith("  error: ")
    assert "espresso" in by_path["coffee.jpg"][0].lower() and not by_path["coffee.jpg"][0].lstrip().startswith("{")


def test_show_a_model_not_downloaded_gives_catalog_facts_but_run_does_not_pretend(imgscribe_cmd, cli_env):
    shown = run(imgscribe_cmd, "show", "llava:13b", env=cli_env)
    assert shown.returncode == 0 and "not downloaded" in shown.stdout and "13" in shown.stdout
    ran = run(imgscribe_cmd, "describe", "x.png", "-m", "llava:13b", env=cli_env)
    assert ran.returncode == 1 and "model 'llava:13b' not found" in ran.stderr
    unknown = run(imgscribe_cmd, "show", "no-such-model", env=cli_env)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
