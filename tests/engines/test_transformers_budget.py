"""Image token budgets through the transformers engine (issue 14): the tokens an image becomes are
predicted from the family's own processor, equal to what the processor puts in ``input_ids``; a
12 MP photo is scaled down, aspect kept, to the request's budget before the processor sees it; the
final Ollama object says what each image became; too many images for the context are a 400 with
the numbers; EXIF-rotated photos are budgeted upright."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_support import b64, checkpoint, ollama_chat  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.image_budget import CPU_BUDGET, context_error, fit  # noqa: E402
from imgscribe.engines.transformers import generation, prompt  # noqa: E402
from imgscribe.engines.transformers.image_tokens import counter_for, image_token_id  # noqa: E402
from imgscribe.engines.transformers.loading import load_processor  # noqa: E402
from imgscribe.errors import InvalidRequest  # noqa: E402
from imgscribe.formats.checkpoints import FAMILIES  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.server import create_app  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.importer import create_from_path  # noqa: E402
from imgscribe.types import Options  # noqa: E402

PROMPT = "Describe this image."
#: one testing build per engine family (the LLaVA-1.5 variants share LLaVA-1.5's processor)
ONE_EACH: list[str] = []
for _name in testing.BUILDERS:
    if testing.ENGINE_FAMILY[_name] not in {testing.ENGINE_FAMILY[n] for n in ONE_EACH}:
        ONE_EACH.append(_name)
SIZES = [(451, 300), (4000, 3000), (3000, 4000), (1000, 200), (64, 900), (1280, 720)]
_processors: dict[str, object] = {}


def _processor(name: str):
    if name not in _processors:
        key = testing.ENGINE_FAMILY[name]
        _processors[name] = load_processor(checkpoint(name), FAMILIES[key])
    return _processors[name]


def _encoded(processor, sizes: list[tuple[int, int]], text: str = PROMPT):
    """What the processor makes of one user turn with blank images of ``sizes`` (only sizes count)."""
    from PIL import Image

    parts = [{"type": "image", "image": Image.new("RGB", s, (90, 120, 150))} for s in sizes]
    return prompt.encode(processor, [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}])


def _image_positions(processor, inputs) -> int:
    return int((inputs["input_ids"] == image_token_id(processor)).sum())


# -- the prediction, at the processor ---------------------------------------------------------------


@pytest.mark.parametrize("name", ONE_EACH)
def test_predicted_tokens_are_what_the_processor_puts_in_the_prompt(name):
    processor = _processor(name)
    counter = counter_for(processor, testing.ENGINE_FAMILY[name])
    assert counter is not None, f"{name} has a counter"
    for w, h in SIZES:
        actual = _image_positions(processor, _encoded(processor, [(w, h)]))
        assert counter.tokens(w, h) == actual, (name, (w, h))
    fixed = {"llava15", "gemma3", "janus", "mllama", "idefics3", "smolvlm"}
    assert counter.resizable is (name not in fixed)
    if not counter.resizable:
        assert len({counter.tokens(w, h) for w, h in SIZES}) == 1 or name in ("idefics3", "smolvlm")


def test_qwen2_vl_with_its_real_pixel_limits_turns_12_mp_into_15_000_tokens():
    """Qwen2-VL's own preprocessor_config (min 56x56, max 12.8 MP): the phone-photo blow-up the budget exists for."""
    from transformers import Qwen2VLImageProcessor

    processor = load_processor(checkpoint("qwen2_vl"), FAMILIES["qwen2_vl"])
    processor.image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    counter = counter_for(processor, "qwen2_vl")
    assert counter.tokens(4000, 3000) == _image_positions(processor, _encoded(processor, [(4000, 3000)])) > 15000
    size = fit(counter, 4000, 3000, CPU_BUDGET)
    assert counter.tokens(*size) <= CPU_BUDGET < counter.tokens(size[0] + 28, size[1] + 21)
    assert counter.tokens(*size) == _image_positions(processor, _encoded(processor, [size]))
    assert abs(size[0] / size[1] - 4 / 3) < 0.01


def test_phi4_multimodal_with_its_real_36_crops():
    processor = load_processor(checkpoint("phi4mm"), FAMILIES["phi4mm"])
    processor.image_processor.dynamic_hd = 36
    counter = counter_for(processor, "phi4mm")
    for w, h in [(4000, 3000), (1000, 800), (3000, 500)]:
        assert counter.tokens(w, h) == _image_positions(processor, _encoded(processor, [(w, h)])), (w, h)


def test_a_full_context_is_the_sentence_with_the_numbers():
    with pytest.raises(InvalidRequest) as err:
        generation.plan(Options(), 1200, 1000, None, image_tokens=1100, images=3)
    assert str(err.value) == str(context_error(1100, 3, 100, 1000))
    assert "1,200 tokens (1,100 for 3 images, 100 for text); the context is 1,000" in str(err.value)
    with pytest.raises(InvalidRequest) as err:  # a num_ctx below the model's: says so
        generation.plan(Options(num_ctx=1000), 1200, 4096, None, image_tokens=1100, images=3)
    more = "; or ask for a larger num_ctx (the model's context is 4,096)"
    assert str(err.value) == f"{context_error(1100, 3, 100, 1000)}{more}"


# -- through the Ollama HTTP API --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    scheduler = Scheduler(store, keep_alive=600)
    with TestClient(create_app(scheduler)) as client:
        yield client, store
    scheduler.close()


def _created(server, name: str) -> str:
    _, store = server
    model = f"tiny-{name.replace('_', '-')}"
    if not store.exists(model):
        create_from_path(store, model, checkpoint(name))
    return model


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    return testing.photo_jpeg(size, orientation, quality=85)


@pytest.fixture(scope="module")
def big() -> bytes:
    return _jpeg((4000, 3000))


def _answer(server, name: str, photos: list[bytes], monkeypatch, setting: str | None, **options) -> dict:
    if setting is None:
        monkeypatch.delenv("IMGSCRIBE_IMAGE_MAX_TOKENS", raising=False)
    else:
        monkeypatch.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", setting)
    client, _ = server
    return ollama_chat(client, _created(server, name), PROMPT, photos, options={"num_predict": 1, **options})[-1]


def _check_against_the_processor(name: str, final: dict) -> None:
    """Each reported size costs the reported tokens at the processor, and the prompt is that prompt."""
    processor = _processor(name)
    sizes = [tuple(i["size"]) for i in final["images"]]
    reference = _encoded(processor, sizes)
    assert final["prompt_eval_count"] == reference["input_ids"].shape[1]
    assert sum(i["tokens"] for i in final["images"]) == _image_positions(processor, reference)


def test_qwen2_vl_scales_a_12_mp_photo_to_the_budget(server, big, monkeypatch):
    full = _answer(server, "qwen2_vl", [big], monkeypatch, "100000")  # no budget in effect: the model's maximum
    [image] = full["images"]
    assert image["original_size"] == [4000, 3000] and image["size"] == [4000, 3000]
    _check_against_the_processor("qwen2_vl", full)

    final = _answer(server, "qwen2_vl", [big], monkeypatch, "200")  # IMGSCRIBE_IMAGE_MAX_TOKENS
    [image] = final["images"]
    w, h = image["size"]
    assert image["original_size"] == [4000, 3000] and w < 4000 and abs(w / h - 4 / 3) < 0.01
    assert 150 < image["tokens"] <= 200 < full["images"][0]["tokens"]
    _check_against_the_processor("qwen2_vl", final)

    lower = _answer(server, "qwen2_vl", [big], monkeypatch, "200", image_max_tokens=64)  # the request's option
    [small] = lower["images"]
    assert small["tokens"] <= 64 and small["size"][0] < w
    assert lower["prompt_eval_count"] < final["prompt_eval_count"]
    _check_against_the_processor("qwen2_vl", lower)


def test_llava_next_chooses_fewer_tiles_under_the_budget(server, big, monkeypatch):
    import torch

    full = _answer(server, "llava_next", [big], monkeypatch, "100000")
    assert full["images"][0]["size"] == [4000, 3000] and full["images"][0]["tokens"] > 2000
    _check_against_the_processor("llava_next", full)

    lowered = _answer(server, "llava_next", [big], monkeypatch, "100000", image_max_tokens=1500)
    [image] = lowered["images"]
    # the 4:3 photo's fewest tiles (one row of two, plus the overview) cost 1,368: the largest size at that
    assert image["tokens"] <= 1500 and image["size"][1] == 336 and abs(image["size"][0] - 448) <= 2  # one tile, as large as it costs no more
    assert lowered["prompt_eval_count"] == full["prompt_eval_count"] - full["images"][0]["tokens"] + image["tokens"]
    assert _encoded(_processor("llava_next"), [(448, 336)])["pixel_values"].shape[1] == 3
    assert _encoded(_processor("llava_next"), [(4000, 3000)])["pixel_values"].shape[1] == 5
    _check_against_the_processor("llava_next", lowered)

    default = _answer(server, "llava_next", [big], monkeypatch, None)  # auto: 1,024 on a CPU, none on a GPU
    if torch.cuda.is_available():
        assert default["images"] == full["images"]
    else:  # under 1,024 is not possible for LLaVA-1.6: its fewest tiles, never a 37x28 thumbnail
        assert default["images"] == lowered["images"]


def test_gemma3_fixed_resolution_is_untouched(server, big, monkeypatch):
    final = _answer(server, "gemma3", [big], monkeypatch, "8", image_max_tokens=4)
    assert final["images"] == [{"original_size": [4000, 3000], "size": [4000, 3000], "tokens": 16}]
    _check_against_the_processor("gemma3", final)


def test_an_exif_rotated_photo_is_budgeted_upright(server, monkeypatch):
    rotated = _jpeg((4000, 3000), orientation=6)  # stored landscape, shown portrait
    final = _answer(server, "qwen2_vl", [rotated], monkeypatch, "200")
    [image] = final["images"]
    assert image["original_size"] == [3000, 4000]
    w, h = image["size"]
    assert h > w and abs(h / w - 4 / 3) < 0.01 and image["tokens"] <= 200
    _check_against_the_processor("qwen2_vl", final)


def test_too_many_images_for_the_context_is_a_400_with_the_numbers(server, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", "200")
    client, _ = server
    name = _created(server, "qwen2_vl")
    photo = testing.photo("chelsea")  # 451x300: under the budget, as it is
    payload = {"model": name, "stream": False, "options": {"num_ctx": 300, "num_predict": 1},
               "messages": [{"role": "user", "content": PROMPT, "images": [b64(photo)] * 3}]}  # fmt: skip
    response = client.post("/api/chat", json=payload)
    assert response.status_code == 400, response.text
    processor = _processor("qwen2_vl")
    counter = counter_for(processor, "qwen2_vl")
    reference = _encoded(processor, [(451, 300)] * 3)
    images, total = 3 * counter.tokens(451, 300), reference["input_ids"].shape[1]
    error = json.loads(response.text)["error"]
    # the request's num_ctx is what is short: the sentence, and that the model takes more
    more = "; or ask for a larger num_ctx (the model's context is 32,768)"
    assert error == f"{context_error(images, 3, total - images, 300)}{more}"
    assert "for 3 images" in error and "the context is 300" in error


def test_openai_usage_says_what_each_image_became(server, big, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", "200")
    client, _ = server
    url = "data:image/jpeg;base64," + b64(big)
    body = {"model": _created(server, "qwen2_vl"), "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": PROMPT}]}]}  # fmt: skip
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    [image] = usage["prompt_tokens_details"]["images"]
    assert image["original_size"] == [4000, 3000] and image["tokens"] <= 200
    assert usage["prompt_tokens_details"]["image_tokens"] == image["tokens"]


def test_a_models_parameter_is_its_budget_and_a_request_option_overrides_it(server, big, monkeypatch):
    client, _ = server
    base = _created(server, "qwen2_vl")
    created = client.post("/api/create", json={"model": "tiny-qwen-budget", "from": base, "stream": False,
                                               "parameters": {"image_max_tokens": 64}})  # fmt: skip
    assert created.status_code == 200, created.text
    monkeypatch.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", "200")
    final = ollama_chat(client, "tiny-qwen-budget", PROMPT, [big], options={"num_predict": 1})[-1]
    assert final["images"][0]["tokens"] <= 64
    final = ollama_chat(client, "tiny-qwen-budget", PROMPT, [big], options={"num_predict": 1, "image_max_tokens": 150})
    assert 64 < final[-1]["images"][0]["tokens"] <= 150


def test_a_loaded_model_gets_a_12_mp_jpeg_decoded_at_a_reduced_size(server, big, monkeypatch):
    """Once the model is loaded the server knows what the budget needs (``Runner.image_side``) and lets
    libjpeg decode at 1/2, 1/4 or 1/8: a 12 MP photo never costs a full decode. What is reported is
    the size it was sent at, and the tokens are the same as from the full decode."""
    from imgscribe.server import inputs

    full = _answer(server, "qwen2_vl", [big], monkeypatch, "200")  # loads it; maybe a full decode
    decoded: list[tuple[int, tuple[int, int]]] = []
    real = inputs.intake

    def spy(*args, **kwargs):
        image = real(*args, **kwargs)
        decoded.append((kwargs.get("max_side", 0), image.pil.size))
        return image

    monkeypatch.setattr(inputs, "intake", spy)
    again = _answer(server, "qwen2_vl", [big], monkeypatch, "200")
    [(side, size)] = decoded
    assert side > 0 and size[0] < 4000 and size[0] >= side  # decoded smaller, never below what the budget needs
    [image] = again["images"]
    assert image["original_size"] == [4000, 3000]
    assert abs(image["tokens"] - full["images"][0]["tokens"]) <= 2 and image["tokens"] <= 200
    _check_against_the_processor("qwen2_vl", again)
