"""The echo engine: deterministic answers that tell what arrived."""

from __future__ import annotations

import json
import threading

import pytest

from imgscribe.engines.echo import ENGINE
from imgscribe.errors import Unsupported
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Message, ModelInfo, ModelManifest, Options

from .conftest import image_bytes


def runner(**settings):
    info = ModelInfo(name="echo:latest", engine="echo", capabilities=["completion", "vision"])
    return ENGINE.load(ModelManifest(name="echo:latest", engine="echo", info=info, engine_settings=settings))


def run(r, text="describe this", images=(), **kw):
    return list(r.chat(ChatRequest("echo", [Message("user", text, list(images))], **kw)))


def test_answer_names_prompt_and_images():
    img = intake(image_bytes((10, 20)))
    chunks = run(runner(), images=[img])
    text = "".join(c.text for c in chunks)
    assert text == f"echo: describe this | 1 image(s): 10x20 sha256:{img.sha256[:12]}"
    final = chunks[-1]
    assert final.done and final.done_reason == "stop" and final.metrics.eval_count == len(chunks) - 1
    assert final.metrics.prompt_eval_count == 2 + 16 and final.data == {"images": [f"10x20 sha256:{img.sha256[:12]}"]}
    assert "".join(c.text for c in run(runner(), images=[img])) == text


def test_tokens_num_predict_and_stop():
    assert run(runner(tokens=7))[-1].metrics.eval_count == 7
    chunks = run(runner(tokens=7), options=Options(num_predict=3))
    assert chunks[-1].done_reason == "length" and chunks[-1].metrics.eval_count == 3
    text = "".join(c.text for c in run(runner(), "a b c d", options=Options(stop=["c d"])))
    assert text == "echo: a b ", "a stop sequence across tokens is held back, never sent"


def test_json_format_and_vision_off():
    out = "".join(c.text for c in run(runner(), "q", format="json"))
    assert json.loads(out) == {"prompt": "q", "images": []}
    with pytest.raises(Unsupported):
        run(runner(vision=False), images=[intake(image_bytes())])


def test_cancel_stops_between_tokens():
    cancel = threading.Event()
    r = runner(tokens=100, delay=0.01)
    stream = r.chat(ChatRequest("echo", [Message("user", "x")]), cancel)
    next(stream)
    cancel.set()
    assert list(stream)[-1].done_reason == "cancel" and r.cancelled == 1 and r.generated < 5
