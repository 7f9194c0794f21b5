"""Image token budgets through the llamacpp engine (issue 14), for real: the tokens llama-server's mtmd
makes of an image are predicted from the mmproj header (engines/llamacpp/image_tokens.py) and equal
what llama-server counts (``prompt_eval_count``) for every family it serves and several sizes; a
12 MP photo is scaled down to the request's budget before llama-server sees it; the final Ollama
object says what each image became; a prompt over the context is raised to the trained length or
refused with the numbers (400, never a 500); EXIF-rotated photos are budgeted upright.

Without the llama-server binary these tests skip locally and fail in CI, as test_llamacpp.py's.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import SERVES, gguf_pair, live_server, llama_server_binary, ollama_chat  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.image_budget import CPU_BUDGET, context_error, fit  # noqa: E402
from imgscribe.engines.llamacpp import LlamaCppRunner, budget  # noqa: E402
from imgscribe.engines.llamacpp.budget import tokenize  # noqa: E402
from imgscribe.engines.llamacpp.image_tokens import calc_size_preserved_ratio, counter_for  # noqa: E402
from imgscribe.formats.gguf import GGUFHeader, read_gguf  # noqa: E402
from imgscribe.images import intake  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402
from imgscribe.wire.media import b64  # noqa: E402

PROMPT = "Describe this image."
SIZES = [(90, 60), (4000, 3000), (300, 1200)]  # small (upscaled by some), a 12 MP photo, a tall one


@pytest.fixture(scope="module")
def binary() -> Path:
    return llama_server_binary()


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    return testing.photo_jpeg(size, orientation, quality=80)


@pytest.fixture(scope="module")
def photos() -> dict[tuple[int, int], bytes]:
    return {size: _jpeg(size) for size in SIZES}


@pytest.fixture(autouse=True)
def _on_a_cpu(monkeypatch):
    """The hardware default is CPU_BUDGET (1,024) on a CPU, none on a GPU: these tests assume a CPU."""
    monkeypatch.setattr(budget, "_gpu_found", lambda: False)
    monkeypatch.delenv("IMGSCRIBE_IMAGE_MAX_TOKENS", raising=False)


def _final(chunks) -> object:
    chunks = list(chunks)
    assert chunks and chunks[-1].done
    return chunks[-1]


# -- the prediction equals llama-server's count, every family -----------------------------------------


@pytest.mark.parametrize("family", SERVES)
def test_predicted_tokens_are_what_llama_server_counts(family, binary, photos):
    model, mmproj = gguf_pair(family)
    runner = LlamaCppRunner(manifest_for_gguf(family.replace("_", "-"), model, mmproj), binary=binary)
    try:
        process = runner.process
        counter = counter_for(read_gguf(mmproj),
                              text_tokens=lambda t: len(tokenize(process, [t], add_special=False)))  # fmt: skip
        assert counter is not None, f"{family}: no counter for its projector"
        for (w, h), data in photos.items():
            request = ChatRequest(model=family, messages=[Message("user", PROMPT, [intake(data)])],
                                  options=Options(num_predict=1, temperature=0, image_max_tokens=10**9))  # fmt: skip
            final = _final(runner.chat(request))
            predicted = counter.tokens(w, h)
            assert final.images == [{"original_size": [w, h], "size": [w, h], "tokens": predicted}], (family, w, h)
            # the text: the rendered prompt cut at the media markers, each piece on its own, as mtmd does
            prompt, marker = runner._render(process, request, threading.Event()), runner._marker(process)
            text = len(tokenize(process, ["", *[p for p in prompt.split(marker) if p]], add_special=True))
            assert final.metrics.prompt_eval_count == predicted + text, (family, (w, h), predicted, text)
        # two images in one prompt: the text cut at both markers
        two = [SIZES[0], SIZES[2]]
        request = ChatRequest(model=family, messages=[Message("user", PROMPT, [intake(photos[s]) for s in two])],
                              options=Options(num_predict=1, temperature=0, image_max_tokens=10**9))  # fmt: skip
        final = _final(runner.chat(request))
        prompt, marker = runner._render(process, request, threading.Event()), runner._marker(process)
        text = len(tokenize(process, ["", *[p for p in prompt.split(marker) if p]], add_special=True))
        assert final.metrics.prompt_eval_count == sum(counter.tokens(*s) for s in two) + text, family
    finally:
        runner.close()


def test_calc_size_preserved_ratio_is_llama_cpps_float_arithmetic():
    # Qwen2-VL's limits in llama.cpp (set_limit_image_tokens(8, 4096), 14 px patches merged 2x2)
    area = 14 * 14 * 2 * 2
    assert calc_size_preserved_ratio(4000, 3000, 28, 8 * area, 4096 * area) == (2044, 1540)  # 73 x 55 = 4,015
    assert calc_size_preserved_ratio(90, 60, 28, 8 * area, 4096 * area) == (112, 84)  # 4 x 3 = 12 after min_pixels
    assert calc_size_preserved_ratio(20, 20, 28, 8 * area, 4096 * area) == (84, 84)  # min_pixels: scaled up


def _header(projector: str, image_size: int, patch: int, **extra) -> GGUFHeader:
    tensors = extra.pop("tensors", {})
    metadata = {"general.architecture": "clip", "clip.projector_type": projector,
                "clip.vision.image_size": image_size, "clip.vision.patch_size": patch, **extra}  # fmt: skip
    return GGUFHeader(3, metadata, {t: ((1,), 0) for t in tensors})


def test_real_projector_dimensions():
    """The real models' mmproj hyper-parameters (each marker text counted as its one special token)."""
    qwen = counter_for(_header("qwen2vl_merger", 560, 14))
    assert qwen.tokens(4000, 3000) == 4015 + 2  # llama.cpp's own cap: 4,096 (not the processor's 12.8 MP)
    wide_open = counter_for(_header("qwen2vl_merger", 560, 14), image_max_tokens=16384)  # --image-max-tokens
    assert wide_open.tokens(4000, 3000) > 15000
    assert fit(qwen, 4000, 3000, CPU_BUDGET) < (4000, 3000) and qwen.tokens(*fit(qwen, 4000, 3000, CPU_BUDGET)) <= 1024

    pins = [336, 672, 672, 336, 672, 672, 1008, 336, 336, 1008]
    llava16 = counter_for(_header("mlp", 336, 14, **{"clip.vision.image_grid_pinpoints": pins}))
    assert llava16.resizable and llava16.tokens(4000, 3000) == 5 * 576 and llava16.tokens(336, 200) == 576
    assert max(fit(llava16, 4000, 3000, CPU_BUDGET)) <= 336  # the overview alone: its fewest tiles over 1,024

    llava15 = counter_for(_header("mlp", 336, 14))
    assert not llava15.resizable and llava15.tokens(4000, 3000) == llava15.tokens(20, 20) == 576
    yi = counter_for(_header("mlp", 336, 14, tensors=["mm.3.weight"]))
    assert yi.projector == "mlp_norm" and yi.tokens(100, 100) == 576
    assert counter_for(_header("ldp", 336, 14)).tokens(640, 480) == 144  # MobileVLM: 576 / 4

    gemma3 = counter_for(_header("gemma3", 896, 14))
    assert not gemma3.resizable and gemma3.tokens(4000, 3000) == 256 + 2  # <start_of_image> ... <end_of_image>

    pixtral = counter_for(_header("pixtral", 1024, 16, tensors=["v.token_embd.img_break"]))
    assert pixtral.tokens(4000, 3000) == 36 * 27 + 26 + 1  # 576x432: 26 [IMG_BREAK]s and [IMG_END]

    llama4 = counter_for(_header("llama4", 336, 14, **{"clip.vision.projector.scale_factor": 2}))
    assert llama4.tokens(4000, 3000) == (3 * 3 + 1) * 144 + 2  # 1008x1008: 3x3 tiles and the overview

    assert counter_for(_header("resampler", 448, 14)) is None  # MiniCPM-V: not mirrored, no budget


# -- the budget, through the Ollama API ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(binary, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("models"))
    for family in ("qwen2_vl", "llava_next", "gemma3", "llava15"):
        model, mmproj = gguf_pair(family)
        store.create(family.replace("_", "-"), manifest_for_gguf(family.replace("_", "-"), model, mmproj))
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            yield live
    finally:
        scheduler.close()


def _ask(served, family: str, images: list[bytes], **options) -> dict:
    lines, _ = ollama_chat(served.url, family.replace("_", "-"), PROMPT, None,
                           options={"num_predict": 1, "temperature": 0, **options},
                           messages=[{"role": "user", "content": PROMPT, "images": [b64(i) for i in images]}])  # fmt: skip
    errors = [line["error"] for line in lines if "error" in line]
    assert not errors, errors
    assert lines and lines[-1]["done"] is True
    return lines[-1]


def _text_part(final: dict) -> int:
    return final["prompt_eval_count"] - sum(i["tokens"] for i in final["images"])


@pytest.fixture(scope="module")
def big() -> bytes:
    return _jpeg((4000, 3000))


def test_qwen2_vl_scales_a_12_mp_photo_to_the_budget(served, big):
    full = _ask(served, "qwen2_vl", [big], image_max_tokens=100_000)  # llama.cpp's own maximum: 4,096
    assert full["images"] == [{"original_size": [4000, 3000], "size": [4000, 3000], "tokens": 4017}]

    # the server decodes the JPEG no larger than the budget needs (libjpeg's 1/2..1/8: draft mode)
    side = served.scheduler.loaded_runner("qwen2-vl").image_side(4000, 3000, Options())
    assert 1000 < side < 1400
    assert served.scheduler.loaded_runner("qwen2-vl").image_side(4000, 3000, Options(image_max_tokens=10**6)) == 0
    default = _ask(served, "qwen2_vl", [big])  # on a CPU: 1,024
    [image] = default["images"]
    w, h = image["size"]
    assert image["original_size"] == [4000, 3000] and w < 4000 and abs(w / h - 4 / 3) < 0.01
    assert 800 < image["tokens"] <= 1024
    lowered = _ask(served, "qwen2_vl", [big], image_max_tokens=256)
    [small] = lowered["images"]
    assert 150 < small["tokens"] <= 256 and small["size"][0] < w
    # what llama-server counted is the prediction: the same text beside each
    assert _text_part(full) == _text_part(default) == _text_part(lowered) > 0


def test_llava_next_chooses_fewer_tiles_under_the_budget(served, big, monkeypatch):
    full = _ask(served, "llava_next", [big], image_max_tokens=100_000)  # 672x672: 4 tiles + the overview
    assert full["images"] == [{"original_size": [4000, 3000], "size": [4000, 3000], "tokens": 5 * 576}]
    monkeypatch.setenv("IMGSCRIBE_IMAGE_MAX_TOKENS", "2000")
    two = _ask(served, "llava_next", [big])  # the setting: two tiles + the overview
    [image] = two["images"]
    assert image["tokens"] == 3 * 576 and image["size"][0] < 4000
    one = _ask(served, "llava_next", [big], image_max_tokens=1000)  # the option: the overview alone
    [image] = one["images"]
    assert image["tokens"] == 576 and max(image["size"]) <= 336
    assert _text_part(full) == _text_part(two) == _text_part(one) > 0


def test_gemma3_fixed_resolution_is_untouched(served, big):
    final = _ask(served, "gemma3", [big], image_max_tokens=4)
    assert served.scheduler.loaded_runner("gemma3").image_side(4000, 3000, Options(image_max_tokens=4)) == 0
    # 224 px / 14 px patches, pooled 4x4: 16 embeddings, with <start_of_image> and <end_of_image>
    assert final["images"] == [{"original_size": [4000, 3000], "size": [4000, 3000], "tokens": 18}]


def test_an_exif_rotated_photo_is_budgeted_upright(served):
    rotated = _jpeg((4000, 3000), orientation=6)  # stored landscape, shown portrait
    final = _ask(served, "qwen2_vl", [rotated], image_max_tokens=300)
    [image] = final["images"]
    assert image["original_size"] == [3000, 4000]
    w, h = image["size"]
    assert h > w and abs(h / w - 4 / 3) < 0.01 and image["tokens"] <= 300


# -- the context ---------------------------------------------------------------------------------------


def _post(served, images: int, **options) -> httpx.Response:
    photo = b64(testing.photo("chelsea"))
    body = {"model": "llava15", "stream": True, "options": {"num_predict": 1, **options},
            "messages": [{"role": "user", "content": PROMPT, "images": [photo] * images}]}  # fmt: skip
    return httpx.post(served.url + "/api/chat", json=body, timeout=300, trust_env=False)


_SENTENCE = re.compile(r"this prompt needs ([\d,]+) tokens \(([\d,]+) for (\d+) images, ([\d,]+) for text\); "
                       r"the context is ([\d,]+); lower image_max_tokens or send fewer images")  # fmt: skip


def test_too_many_images_for_the_trained_context_is_a_400_with_the_numbers(served):
    response = _post(served, 8, num_ctx=1024)  # 8 x 576 image tokens: over LLaVA-1.5's 4,096
    assert response.status_code == 400, response.text
    error = json.loads(response.text)["error"]
    match = _SENTENCE.fullmatch(error)
    assert match, error
    need, images, count, text, ctx = (int(g.replace(",", "")) for g in match.groups())
    assert (images, count, ctx) == (8 * 576, 8, 1024) and need == images + text and 0 < text < 100
    assert error == str(context_error(images, 8, text, 1024))


def test_the_memory_estimate_refuses_a_larger_context(served, monkeypatch):
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    monkeypatch.setattr(budget, "probe_ram", lambda: (1 << 30, 1, []))  # 1 byte free: no room for a larger KV cache
    response = _post(served, 3, num_ctx=1024)
    assert response.status_code == 400, response.text
    assert "for 3 images" in response.text and "the context is 1,024" in response.text


def test_a_prompt_over_num_ctx_raises_the_context_when_the_trained_length_allows(served):
    lines = [json.loads(line) for line in _post(served, 3, num_ctx=1024).text.splitlines() if line.strip()]
    assert lines and "error" not in lines[-1] and lines[-1]["done"] is True, lines[-1:]
    final = lines[-1]
    assert [i["tokens"] for i in final["images"]] == [576] * 3
    assert final["prompt_eval_count"] == 3 * 576 + _text_part(final) > 1024
    assert served.scheduler.runner("llava15").ctx >= final["prompt_eval_count"]
