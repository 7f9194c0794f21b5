"""``imgscribe recommend`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import imgscribe.cli.recommend  # noqa: F401  (adds `recommend` even before cli._register lists it)
from imgscribe.cli import _register, app

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _commands():
    _register()


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "args,tier",
    [
        (["--ram", "8", "--vram", "0"], "ram-8"),
        (["--ram", "16", "--vram", "0"], "ram-16"),
        (["--ram", "32", "--vram", "0"], "ram-32"),
        (["--ram", "32", "--vram", "24"], "gpu-24"),
        (["--ram", "128", "--vram", "80"], "gpu-80"),
    ],
)
@pytest.mark.parametrize("priority", ["performance", "balanced", "ease"])
def test_json_for_each_tier_and_priority(args, tier, priority):
    data = _json(*args, "--priority", priority)
    assert data["priority"] == priority and data["task"] == "describe" and data["tier"] == tier
    assert data["hardware"]["ram_source"] == "given"
    assert len(data["picks"]) == 5
    for pick in data["picks"]:
        assert pick["command"] == f"imgscribe pull {pick['pull']}"
        assert pick["memory"]["total"] <= pick["budget_gb"]
        assert pick["tok_s_estimate"] > 0 and pick["why"]
    assert any(line["section"] == "4" for line in data["survey"])


@pytest.mark.parametrize("task", ["describe", "ocr", "documents", "video", "multi-image"])
def test_json_for_each_task(task):
    data = _json("--ram", "32", "--vram", "24", "-t", task, "-n", "3")
    assert data["task"] == task and 1 <= len(data["picks"]) <= 3
    if task == "video":
        assert all(p["inputs"]["video"] and p["engine"] == "transformers" for p in data["picks"])


def test_text_output_explains_and_compares_with_the_survey():
    result = runner.invoke(app, ["recommend", "--ram", "8", "--vram", "0", "--priority", "ease"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("8.0 GB RAM", "Why:", "quality index", "memory: needs", "tokens/s", "founding survey", "§2.3", "§4", "Get the first: imgscribe pull"):
        assert needle in out, needle
    assert "llava:7b" in out  # the survey's 8 GB choice is checked


def test_probed_hardware_is_used_without_flags():
    data = _json("--vram", "0")
    assert data["hardware"]["ram_source"] == "probed" and data["hardware"]["ram_total"] > 0


@pytest.mark.parametrize(
    "args",
    [["--priority", "fastest"], ["--task", "poetry"], ["--ram", "0"], ["--vram", "-1"], ["--limit", "0"]],
)
def test_bad_options_are_usage_errors(args):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == 2, result.output


def test_through_main_in_a_subprocess(cli_env):
    code = (
        "import sys, imgscribe.cli.recommend; from imgscribe.cli import main; "
        "sys.exit(main(['recommend', '--ram', '16', '--vram', '0', '--json', '-n', '2']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["picks"]) == 2
