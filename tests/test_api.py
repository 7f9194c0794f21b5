"""The Python API (``imgscribe.describe / ask / chat``), as the README shows it, on the real
built-in model; and its errors, which are the same exceptions every front door raises."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import imgscribe
from imgscribe.errors import InvalidImage, InvalidRequest, ModelNotFound
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """One scheduler for the module, so the built-in model loads once."""
    s = Scheduler(Store(tmp_path_factory.mktemp("models")))
    yield s
    s.close()


def test_describe_a_photo_by_path(scheduler):
    result = imgscribe.describe(EXAMPLES / "coffee.jpg", scheduler=scheduler)
    assert "espresso" in result.text and str(result) == result.text
    assert result.done_reason == "stop" and result.model.startswith("builtin")
    assert result.metrics.total_duration > 0
    assert result.images[0].format == "JPEG"


def test_ask_reads_the_document(scheduler):
    result = imgscribe.ask(str(EXAMPLES / "invoice.png"), "What does it say?", scheduler=scheduler)
    assert "INVOICE" in result.text and "$1,250.00" in result.text


def test_chat_with_ollama_shaped_messages_and_any_image_form(scheduler):
    raw = (EXAMPLES / "chelsea.jpg").read_bytes()
    forms = [str(EXAMPLES / "chelsea.jpg"), raw, base64.b64encode(raw).decode()]
    answers = [
        imgscribe.chat("builtin", [{"role": "user", "content": "What is this?", "images": [image]}], scheduler=scheduler)
        for image in forms
    ]
    assert len({a.text for a in answers}) == 1 and "cat" in answers[0].text
    assert len({a.images[0].sha256 for a in answers}) == 1  # the same bytes, however they came


def test_chat_streams_chunks_when_asked(scheduler):
    message = {"role": "user", "content": "Describe this image.", "images": [str(EXAMPLES / "rocket.jpg")]}
    chunks = list(imgscribe.chat("builtin", [message], stream=True, scheduler=scheduler))
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert "".join(c.text for c in chunks)


def test_options_are_honoured(scheduler):
    result = imgscribe.describe(EXAMPLES / "coffee.jpg", options={"num_predict": 3}, scheduler=scheduler)
    assert result.done_reason == "length" and len(result.text.split()) <= 3


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda s: imgscribe.describe("no/such/photo.jpg", scheduler=s), InvalidImage, ["no/such/photo.jpg"]),
        (lambda s: imgscribe.describe(b"not an image", scheduler=s), InvalidImage, ["not"]),
        (lambda s: imgscribe.describe(EXAMPLES / "coffee.jpg", model="nope", scheduler=s), ModelNotFound, ["nope"]),
        (lambda s: imgscribe.describe(EXAMPLES / "coffee.jpg", options={"temperature": -1}, scheduler=s),
         InvalidRequest, ['option "temperature"', "greater than or equal to 0"]),
        (lambda s: imgscribe.chat("builtin", ["hello"], scheduler=s), InvalidRequest, ["role", "content"]),
        (lambda s: imgscribe.chat("builtin", [{"role": "wizard", "content": "x"}], scheduler=s),
         InvalidRequest, ["wizard"]),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(scheduler, call, error, words):
    with pytest.raises(error) as caught:
        call(scheduler)
    assert all(w in str(caught.value) for w in words), str(caught.value)


def test_a_result_carries_what_each_image_became():
    from imgscribe.api import collect
    from imgscribe.types import Chunk, Metrics

    costs = [{"original_size": [4000, 3000], "size": [1120, 840], "tokens": 1200}]
    result = collect("m", [Chunk(text="a"), Chunk(done=True, metrics=Metrics(), images=costs)])
    assert result.text == "a" and result.image_costs == costs
