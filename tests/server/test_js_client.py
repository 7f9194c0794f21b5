"""The ``ollama`` npm package, unchanged, from node: the survey's JavaScript example and more.

node and npm are needed (CI has node 20); the package is installed from ``js/package-lock.json``
into ``js/node_modules`` on first use. Without node the test is skipped locally and fails in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        message = "node and npm are needed for the ollama npm client test"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    if not (JS / "node_modules" / "ollama").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=240, capture_output=True)
    return node


def run_js(node: str, script: str, server, cwd: Path) -> str:
    """Run a script from js/ with the image folder as its working directory (for './art.jpg')."""
    env = {**os.environ, "OLLAMA_HOST": server.url}
    target = cwd / script
    shutil.copy(JS / script, target)
    (cwd / "node_modules").symlink_to(JS / "node_modules")  # ES modules resolve packages next to the script
    out = subprocess.run([node, str(target)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_survey_js_snippet(node, server, art):
    out = run_js(node, "survey_chat.mjs", server, art.parent)
    assert out.startswith("echo: Describe this image: | 1 image(s): 96x64")


def test_js_streaming_list_show_ps_and_errors(node, server, art):
    result = json.loads(run_js(node, "client_checks.mjs", server, art.parent))
    assert result["streamed"].startswith("echo: stream this | 1 image(s): 96x64")
    assert result["lastDone"] is True and result["roles"] == ["assistant"]
    assert result["generated"] == {"text": "echo: hello ", "reason": "length", "evalCount": 2}
    assert "llava:latest" in result["models"]
    assert "vision" in result["capabilities"]
    assert result["running"] == ["llava:latest"]
    assert result["error"]["name"] == "ResponseError" and result["error"]["status"] == 404


def test_js_create_derives_a_model(node, server, art):
    result = json.loads(run_js(node, "create_checks.mjs", server, art.parent))
    assert result["statuses"][-1] == "success" and result["done"] == "success"
    assert result["system"] == "Write alt text for the image."
    assert result["template"] == "{{ .System }} USER: {{ .Prompt }} ASSISTANT:"
    assert result["parameters"].split() == ["temperature", "0", "stop", '"USER:"']  # Ollama's lines
    assert result["license"] == "MIT"
    assert result["error"]["status"] == 400 and "template line 1" in result["error"]["message"]
