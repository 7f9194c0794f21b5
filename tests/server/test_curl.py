"""``curl`` exactly as the survey shows it, with a real base64 image in place of the placeholder."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import b64

pytestmark = pytest.mark.timeout(60)

SURVEY_CURL = """curl http://localhost:11434/api/generate -d '{
  "model": "llava",
  "prompt": "What is in this picture?",
  "images": ["base64_encoded_image"]
}'"""


def curl(command: str, port: int, image: str) -> subprocess.CompletedProcess:
    if not shutil.which("curl"):
        pytest.fail("curl is needed for this test")
    command = command.replace("11434", str(port)).replace("base64_encoded_image", image)
    return subprocess.run(
        ["bash", "-c", command + " --silent --show-error"], capture_output=True, text=True, timeout=30
    )


def test_survey_curl_streams_the_answer(server, art):
    out = curl(SURVEY_CURL, server.port, b64(art.read_bytes()))
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert objs[-1]["done"] is True and objs[-1]["done_reason"] == "stop"
    assert "".join(o["response"] for o in objs).startswith("echo: What is in this picture? | 1 image(s): 96x64")


def test_the_placeholder_itself_gets_a_clear_error(server):
    out = curl(SURVEY_CURL.replace("curl ", "curl -w '\\n%{http_code}' "), server.port, "base64_encoded_image")
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "400"
    assert "images[0]" in json.loads(body)["error"] and "not a supported image" in json.loads(body)["error"]
