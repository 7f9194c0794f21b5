"""The survey's curl example against a real model: ``llava`` here is a copy of ``builtin``, given a
real photo (scikit-image's coffee cup). Slow: it loads the classifier and the OCR models."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image as PILImage

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from .conftest import live_server
from .test_curl import SURVEY_CURL, curl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def coffee_jpeg() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    PILImage.fromarray(data.coffee()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_survey_curl_with_the_builtin_model(tmp_path):
    store = Store(tmp_path / "models")
    store.copy("builtin", "llava")
    scheduler = Scheduler(store)
    try:
        with live_server(scheduler) as server:
            out = curl(SURVEY_CURL, server.port, base64.b64encode(coffee_jpeg()).decode())
    finally:
        scheduler.close()
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    final = objs[-1]
    assert final["done"] is True and final["done_reason"] == "stop" and "error" not in final
    assert final["load_duration"] > 0 and final["image_encode_duration"] > 0
    text = "".join(o["response"] for o in objs).lower()
    assert "espresso" in text or "coffee" in text or "cup" in text, text
    assert final["data"]["images"][0]["image"]["width"] == 600
