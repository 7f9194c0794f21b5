"""Llama 3.2 Vision (mllama) in the transformers engine: a tiny random checkpoint of the real architecture
(tiled ViT, gated cross-attention layers, the real chat template and special tokens) -> ``create`` -> a
streamed ``/api/chat`` over Ollama's HTTP API, its prompt counted as the family's own processor counts it
(one ``<|image|>`` token an image: the pixels reach the language model through cross-attention)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_support import b64, checkpoint, ollama_chat, reference_inputs, reference_processor  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.transformers import prompt  # noqa: E402
from imgscribe.formats import checkpoints  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.server import create_app  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.importer import create_from_path  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402

FAMILY = "mllama"
PROMPT = "Describe this image."
NAME = "tiny-mllama"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    scheduler = Scheduler(store, keep_alive=600)
    with TestClient(create_app(scheduler)) as client:
        create_from_path(store, NAME, checkpoint(FAMILY))
        yield client, store
    scheduler.close()


def _image_token(path: Path) -> int:
    return reference_processor(path, FAMILY).image_token_id


def test_the_transformers_engine_runs_mllama():
    assert "MllamaForConditionalGeneration" in checkpoints.supported_architectures()
    config = json.loads((checkpoint(FAMILY) / "config.json").read_text())
    family = checkpoints.detect(config)
    assert family.key == "mllama" and family.title == "Llama 3.2 Vision"
    assert checkpoints.families_of(family, config) == ["mllama"]
    assert config["text_config"]["cross_attention_layers"], "the language model reads the image by cross-attention"


def test_the_checkpoint_has_the_real_template_and_special_tokens():
    path = checkpoint(FAMILY)
    processor = reference_processor(path, FAMILY)
    tok = processor.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|begin_of_text|>", "<|eot_id|>",
                                                             "<|finetune_right_pad_id|>")  # fmt: skip
    assert tok("Hi")["input_ids"][0] == tok.bos_token_id, "as Llama 3's tokenizer, it adds <|begin_of_text|>"
    config = json.loads((path / "config.json").read_text())
    assert config["image_token_index"] == tok.convert_tokens_to_ids("<|image|>") == config["text_config"]["vocab_size"]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}], add_generation_prompt=True
    )
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>Describe this image."
                    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")  # fmt: skip


def test_a_photo_streams_text_and_counts_its_image_token(server):
    client, store = server
    info = store.resolve(NAME).info
    assert info.engine == "transformers" and info.is_vlm and info.vision and info.family == "mllama"
    photo = testing.photo("chelsea")
    lines = ollama_chat(client, NAME, PROMPT, [photo], options={"num_predict": 6, "temperature": 0})
    *parts, final = lines
    assert final["done"] is True and final["done_reason"] in ("stop", "length"), final
    assert all(p["done"] is False and p["message"]["role"] == "assistant" and p["message"]["content"] for p in parts)
    expected = reference_inputs(checkpoint(FAMILY), FAMILY, PROMPT, [photo])
    ids = expected["input_ids"][0].tolist()
    assert ids.count(_image_token(checkpoint(FAMILY))) == 1
    assert final["prompt_eval_count"] == len(ids) and ids.count(ids[0]) == 1, "one <|begin_of_text|>, the template's"
    assert expected["pixel_values"].shape[:3] == (1, 1, 2), "the 451x300 photo in two 112 tiles"
    assert 1 <= final["eval_count"] <= 6 and len(parts) <= final["eval_count"]
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "image_encode_duration"):
        assert final[key] > 0, key


def test_two_images_are_two_image_tokens(server):
    client, _ = server
    photos = [testing.photo("chelsea"), testing.photo("rocket")]
    final = ollama_chat(client, NAME, "Compare these two images.", photos, options={"num_predict": 2})[-1]
    expected = reference_inputs(checkpoint(FAMILY), FAMILY, "Compare these two images.", photos)
    assert final["done"] and final["prompt_eval_count"] == expected["input_ids"].shape[1]
    assert expected["input_ids"][0].tolist().count(_image_token(checkpoint(FAMILY))) == 2
    assert expected["cross_attention_mask"].shape[2] == 2


def test_text_only_and_a_system_message(server):
    client, _ = server
    body = {"model": NAME, "stream": False, "options": {"num_predict": 3},
            "messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Hi"}]}  # fmt: skip
    answer = client.post("/api/chat", json=body).json()
    assert answer["done"] and answer["prompt_eval_count"] > 0


def test_a_system_message_is_text_and_with_an_image_a_clear_refusal(server):
    client, _ = server
    processor = reference_processor(checkpoint(FAMILY), FAMILY)
    request = ChatRequest(NAME, [Message("system", "Answer in one word."), Message("user", "Hi")])
    messages, _ = prompt.conversation(request, system_text=True)
    text = processor.tokenizer.decode(prompt.encode(processor, messages)["input_ids"][0])
    assert "Today Date: " in text and "\n\nAnswer in one word.<|eot_id|>" in text and "'type'" not in text
    # the real template refuses a system message beside an image: a 400 with its reason, no traceback
    body = {"model": NAME, "stream": False,
            "messages": [{"role": "system", "content": "Answer in one word."},
                         {"role": "user", "content": PROMPT, "images": [b64(testing.photo("chelsea"))]}]}  # fmt: skip
    r = client.post("/api/chat", json=body)
    assert r.status_code == 400, r.text
    assert "Prompting with images is incompatible with system messages" in r.json()["error"]
    assert "Traceback" not in r.text


def test_the_image_reaches_the_language_model():
    """The cross-attention gates are not zero (as freshly made ones are): another photo, other logits."""
    import torch
    from transformers import MllamaForConditionalGeneration

    path = checkpoint(FAMILY)
    model = MllamaForConditionalGeneration.from_pretrained(path).eval()
    logits = []
    for name in ("chelsea", "rocket"):
        inputs = reference_inputs(path, FAMILY, PROMPT, [testing.photo(name)])
        with torch.inference_mode():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


def test_the_pull_the_llama3_2_vision_refusal_suggests_runs(tmp_path, monkeypatch):
    """``imgscribe pull hf.co/meta-llama/Llama-3.2-11B-Vision-Instruct``, what refusing Ollama's
    llama3.2-vision suggests, from a Hub stand-in that serves the tiny checkpoint under that name (with a
    token, as for a gated model): a transformers model that answers about a photo."""
    from store.fake_remotes import FakeHub

    from imgscribe.images import intake
    from imgscribe.store.pull.inspect import MLLAMA_CHECKPOINT

    hub = FakeHub()
    try:
        monkeypatch.setenv("IMGSCRIBE_HF_ENDPOINT", hub.url)
        monkeypatch.delenv("IMGSCRIBE_HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_TOKEN", "hf_granted")
        hub.token = "hf_granted"
        folder = checkpoint(FAMILY)
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        # as in the real repository: Meta's own weights beside the Hugging Face ones, not downloaded
        files.update({"original/consolidated.pth": b"meta" * 2000, "original/params.json": b"{}"})
        hub.add_repo(MLLAMA_CHECKPOINT, files)
        store = Store(tmp_path / "models")
        assert list(store.pull(f"hf.co/{MLLAMA_CHECKPOINT}"))[-1] == {"status": "success"}
    finally:
        hub.close()
    name = f"hf.co/{MLLAMA_CHECKPOINT}".lower()
    info = store.resolve(name).info
    assert info.engine == "transformers" and info.family == "mllama" and info.vision
    assert not (Path(store.resolve(name).files["model"]) / "original").exists()
    scheduler = Scheduler(store)
    try:
        request = ChatRequest(name, [Message("user", PROMPT, [intake(testing.photo("chelsea"))])],
                              options=Options(num_predict=3, temperature=0))  # fmt: skip
        chunks = list(scheduler.chat(request))
    finally:
        scheduler.close()
    final = chunks[-1]
    expected = reference_inputs(folder, FAMILY, PROMPT, [testing.photo("chelsea")])
    assert final.done and final.metrics.prompt_eval_count == expected["input_ids"].shape[1]
