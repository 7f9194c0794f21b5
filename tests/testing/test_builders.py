"""imgscribe.testing: offline tokenizers, tiny checkpoints of every family, real photos."""

from __future__ import annotations

import json
import os

import pytest

from imgscribe import testing
from imgscribe.engines.transformers.families import FAMILIES, detect, weights_facts
from imgscribe.testing.tokenizer import make_tokenizer


def test_offline_and_listed():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert len(testing.BUILDERS) == 16 and set(testing.ENGINE_FAMILY.values()) <= set(FAMILIES)
    assert {f for f in testing.BUILDERS if testing.needs_torchvision(f)} == {"llama4", "phi4mm"}
    with pytest.raises(KeyError, match="unknown family"):
        testing.build("nope", "/tmp/never")


def test_tokenizer_special_tokens_are_atomic_and_named():
    tok = make_tokenizer(["<start_of_turn>"], extra_special_tokens={"image_token": "<image_soft_token>"},
                         bos="<bos>", eos="<eos>", add_bos=True)  # fmt: skip
    ids = tok("<start_of_turn>user hi<image_soft_token>")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[1] == tok.convert_tokens_to_ids("<start_of_turn>")
    assert ids[-1] == tok.convert_tokens_to_ids("<image_soft_token>") and tok.image_token == "<image_soft_token>"
    assert tok.decode(ids, skip_special_tokens=True) == "user hi"
    again = make_tokenizer(["<start_of_turn>"], bos="<bos>", eos="<eos>")
    code = "def main(): return 1"
    assert again(code)["input_ids"] == tok(code, add_special_tokens=False)["input_ids"], "one trained BPE"


def test_same_seed_same_weights(tmp_path):
    a = testing.build("gemma3", tmp_path / "a", seed=1)
    b = testing.build("gemma3", tmp_path / "b", seed=1)
    c = testing.build("gemma3", tmp_path / "c", seed=2)
    weights = [(p / "model.safetensors").read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]
    assert testing.build("gemma3", a, seed=5, overwrite=False) == a, "an existing checkpoint is kept"
    assert (a / "model.safetensors").read_bytes() == weights[0]


@pytest.mark.parametrize("family", testing.BUILDERS)
def test_each_family_is_a_tiny_checkpoint_of_its_architecture(tmp_path, family):
    if testing.needs_torchvision(family) and not testing.has_torchvision():
        message = f"{family} needs torchvision: pip install torch==2.14.1 torchvision==0.29.1 (make setup does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)  # nothing is skipped silently in CI
        pytest.skip(message)
    path = testing.build(family, tmp_path / family)
    config = json.loads((path / "config.json").read_text())
    assert detect(config).key == testing.ENGINE_FAMILY[family]
    params, dtype = weights_facts(path)
    assert 100_000 < params < 600_000 and dtype == "F32"
    assert sum(f.stat().st_size for f in path.iterdir()) < 4_000_000
    templates = [f for f in path.iterdir() if f.name.startswith("chat_template") or f.name == "tokenizer_config.json"]
    assert any("{%" in f.read_text() for f in templates), "the chat template is saved with the checkpoint"


def test_photos_are_real_and_wide_is_wide():
    from io import BytesIO

    from PIL import Image

    cat = Image.open(BytesIO(testing.photo("chelsea")))
    assert cat.size == (451, 300)
    wide = Image.open(BytesIO(testing.wide_photo("coffee", 3.0)))
    assert wide.width == 3 * wide.height
    assert testing.photo_path("rocket").suffix == ".jpg"
