"""The shared part of image token budgets: fitting a size under a budget, which budget applies, the
context sentence, the rescaled image, and how the server reports what each image became."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image as PILImage

from imgscribe.engines.image_budget import CPU_BUDGET, ImageCost, context_error, fit, image_budget, scaled_image
from imgscribe.images import intake
from imgscribe.types import Chunk, Metrics


class Grid:
    """A Qwen2-VL-like counter: 28-pixel cells, rounded as smart_resize rounds."""

    resizable = True

    def tokens(self, width: int, height: int) -> int:
        return max(1, round(width / 28)) * max(1, round(height / 28))


class Fixed:
    resizable = False

    def tokens(self, width: int, height: int) -> int:
        return 576


@pytest.mark.parametrize(("size", "budget"), [((4000, 3000), 1024), ((3000, 4000), 256), ((8000, 500), 300), ((640, 480), 64)])
def test_fit_is_the_largest_size_under_the_budget_with_the_aspect_kept(size, budget):
    w, h = fit(Grid(), *size, budget)
    assert Grid().tokens(w, h) <= budget
    assert math.isclose(w / h, size[0] / size[1], rel_tol=0.02)
    bigger = (round(w * 1.03), round(h * 1.03))
    assert Grid().tokens(*bigger) > budget  # not much smaller than it could be


def test_fit_leaves_alone_what_fits_what_is_fixed_and_what_has_no_budget():
    assert fit(Grid(), 280, 280, 1024) == (280, 280)
    assert fit(Fixed(), 4000, 3000, 10) == (4000, 3000)
    assert fit(Grid(), 4000, 3000, None) == (4000, 3000)


class AtLeastFour(Grid):
    def tokens(self, width: int, height: int) -> int:
        return max(4, super().tokens(width, height))


class Tiles(Grid):
    """LLaVA-1.6-like: a tile of 336 px costs as much as a thumbnail."""

    def tokens(self, width: int, height: int) -> int:
        return 576 * (1 + math.ceil(width / 336) * math.ceil(height / 336)) if max(width, height) > 336 else 1152


def test_a_budget_below_the_smallest_image_gives_the_largest_size_at_the_least_cost():
    w, h = fit(AtLeastFour(), 4000, 3000, 1)
    assert AtLeastFour().tokens(w, h) == 4 and min(w, h) >= 28
    w, h = fit(Tiles(), 4000, 3000, 1000)  # nothing is within 1000: one tile, as large as it costs no more
    assert Tiles().tokens(w, h) == 1152 and max(w, h) == 336
    assert Grid().tokens(*fit(Grid(), 4000, 3000, 1)) == 1


def test_which_budget_applies():
    assert image_budget(300, 500, 700, on_gpu=False) == 300  # the request's option
    assert image_budget(None, 500, 700, on_gpu=False) == 500  # the model's parameter
    assert image_budget(None, None, 700, on_gpu=True) == 700  # IMGSCRIBE_IMAGE_MAX_TOKENS
    assert image_budget(None, None, 0, on_gpu=False) == CPU_BUDGET == 1024
    assert image_budget(None, None, 0, on_gpu=True) is None  # a GPU: the model's own maximum
    assert image_budget(0, True, 0, on_gpu=False) == CPU_BUDGET  # 0 and booleans are not budgets


def test_the_context_sentence():
    assert str(context_error(4608, 3, 713, 4096)) == (
        "this prompt needs 5,321 tokens (4,608 for 3 images, 713 for text); the context is 4,096; "
        "lower image_max_tokens or send fewer images"
    )


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_a_scaled_image_is_encoded_again(kind):
    out = io.BytesIO()
    PILImage.new("RGB", (400, 300), (200, 10, 10)).save(out, kind)
    image = intake(out.getvalue())
    small = scaled_image(image, (200, 150))
    assert small.pil.size == (200, 150) and small.format == kind
    assert PILImage.open(io.BytesIO(small.data)).size == (200, 150) and small.byte_size == len(small.data)
    assert scaled_image(image, (400, 300)) is image


def test_the_server_reports_each_image():
    from imgscribe.server.render import Ollama, OpenAI

    costs = [ImageCost((4000, 3000), (1120, 840), 1200).as_dict()]
    chunk = Chunk(done=True, done_reason="stop", metrics=Metrics(prompt_eval_count=1250, eval_count=3), images=costs)
    final = Ollama("m", "chat").final(chunk, "hi")
    assert final["images"] == [{"original_size": [4000, 3000], "size": [1120, 840], "tokens": 1200}]
    whole = OpenAI("m").whole([chunk])
    assert whole["usage"]["prompt_tokens_details"] == {"image_tokens": 1200, "images": costs}
    assert "images" not in Ollama("m", "chat").final(Chunk(done=True, metrics=Metrics()), "")
