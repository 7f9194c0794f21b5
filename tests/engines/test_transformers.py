"""Every family the transformers engine runs, end to end: a tiny random checkpoint of the real
architecture -> ``create`` -> a streamed ``/api/chat`` request with a real photo over Ollama's HTTP API
-> an answer whose prompt token count is what the family's own processor makes of the same input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_support import (  # noqa: E402
    ALL_FAMILIES,
    OLLAMA_FAMILY,
    TEXT_MODEL,
    checkpoint,
    ollama_chat,
    reference_inputs,
)

from imgscribe import testing  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.server import create_app  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.importer import create_from_path  # noqa: E402

PROMPT = "Describe this image."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Ollama-compatible app for the module: models stay loaded between a family's tests. No image
    budget: these tests compare with the family's processor on the photo as sent (budgets are
    test_transformers_budget.py's)."""
    store = Store(tmp_path_factory.mktemp("store"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", "1000000")
        scheduler = Scheduler(store, keep_alive=600)
        with TestClient(create_app(scheduler)) as client:
            yield client, store
        scheduler.close()


def _created(server, family: str) -> str:
    client, store = server
    name = f"tiny-{family.replace('_', '-')}"
    if not store.exists(name):
        create_from_path(store, name, checkpoint(family))
    return name


def _photo(family: str) -> bytes:
    # LLaVA-1.6 on a wide (3:1) photo: several tiles (see below)
    return testing.wide_photo("coffee", 3.0) if family == "llava_next" else testing.photo("chelsea")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_family_answers_over_ollama_http(server, family):
    name = _created(server, family)
    client, store = server
    info = store.resolve(name).info
    assert info.engine == "transformers" and info.is_vlm and info.vision
    assert info.family == OLLAMA_FAMILY[family]
    if family in TEXT_MODEL:
        assert TEXT_MODEL[family] in info.families
    photo = _photo(family)

    lines = ollama_chat(client, name, PROMPT, [photo], options={"num_predict": 6, "temperature": 0})
    *parts, final = lines
    assert final["done"] is True and final["done_reason"] in ("stop", "length"), final
    assert all(p["done"] is False and p["message"]["role"] == "assistant" for p in parts)
    expected = reference_inputs(checkpoint(family), family, PROMPT, [photo])
    assert final["prompt_eval_count"] == expected["input_ids"].shape[1]
    assert 1 <= final["eval_count"] <= 6
    if final["done_reason"] == "length":
        assert final["eval_count"] == 6
    # one stream object per piece of text (random weights may also pick special tokens, which are not shown)
    assert len(parts) <= final["eval_count"] and all(p["message"]["content"] for p in parts)
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "image_encode_duration"):
        assert final[key] > 0, key
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
    if family == "llava_next":
        # anyres picks the 672x336 grid: two 336 tiles side by side, plus the overview
        assert expected["pixel_values"].shape[1] == 3, "the wide photo takes LLaVA-1.6's multi-tile path"


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_family_takes_two_images_in_one_message(server, family):
    name = _created(server, family)
    client, _ = server
    photos = [testing.photo("chelsea"), testing.photo("rocket")]
    lines = ollama_chat(client, name, "Compare these two images.", photos, options={"num_predict": 2, "temperature": 0})
    expected = reference_inputs(checkpoint(family), family, "Compare these two images.", photos)
    assert lines[-1]["done"] and lines[-1]["prompt_eval_count"] == expected["input_ids"].shape[1]


def test_llava_next_tiles_follow_the_aspect_ratio(server):
    """A square photo takes the 2x2 grid (4 tiles), a wide one the 2x1 grid: each plus the overview, and
    each tile's tokens (less its padding) on top of LLaVA-1.5's 576."""
    name = _created(server, "llava_next")
    client, _ = server
    counts = {}
    for label, photo in {"square": testing.photo("astronaut"), "wide": testing.wide_photo("coffee", 3.0)}.items():
        final = ollama_chat(client, name, PROMPT, [photo], options={"num_predict": 1})[-1]
        expected = reference_inputs(checkpoint("llava_next"), "llava_next", PROMPT, [photo])
        assert final["prompt_eval_count"] == expected["input_ids"].shape[1]
        counts[label] = (expected["pixel_values"].shape[1], final["prompt_eval_count"])
    assert counts["square"][0] == 5 and counts["wide"][0] == 3
    assert min(c for _, c in counts.values()) > 576 * 2
