"""Image token budgets: how many tokens an image costs an engine, and the largest size under a budget.

A phone photo is 12 MP or more; a dynamic-resolution model (Qwen2-VL allows 12.8 MP) turns it into
~16,000 tokens, a context overflow or minutes of prefill on a CPU. Each engine says what an image of a
given size costs it (a :class:`TokenCounter`: transformers from the family's processor, llamacpp from
the projector's hyper-parameters), and an image over the request's budget is scaled down, aspect kept,
to the largest size under it before the engine sees it. Fixed-resolution models (LLaVA-1.5: 576) cost
the same whatever the size and are left alone.

The budget of a request (:func:`image_budget`): its ``image_max_tokens`` option, else the model's
parameter, else ``IMGSCRIBE_IMAGE_MAX_TOKENS``, else a default for the hardware (on a CPU one that
keeps prefill interactive, :data:`CPU_BUDGET`; on a GPU none: the model's own maximum).
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Protocol

from PIL import Image as PILImage

from ..errors import InvalidRequest
from ..types import Image, ModelManifest

__all__ = ["CPU_BUDGET", "ImageCost", "TokenCounter", "context_error", "cost_of", "decode_side", "fit", "image_budget", "model_budget",
           "resized", "scaled_image"]

#: Tokens per image on a CPU by default: about a second or two of prefill for a 7B model.
CPU_BUDGET = 1024
_MIN_SIDE = 28  # below this no model sees anything


class TokenCounter(Protocol):
    """What an image costs one model."""

    #: False when every image costs the same (a fixed-resolution encoder): nothing to scale.
    resizable: bool

    def tokens(self, width: int, height: int) -> int:
        """The prompt tokens one image of this size (upright, as sent) becomes."""
        ...


@dataclass(frozen=True)
class ImageCost:
    """What one image of a request became: reported in the final answer."""

    original: tuple[int, int]  # width, height as received, after EXIF rotation
    size: tuple[int, int]  # as the engine got it
    tokens: int

    def as_dict(self) -> dict[str, object]:
        return {"original_size": list(self.original), "size": list(self.size), "tokens": self.tokens}


def fit(counter: TokenCounter, width: int, height: int, budget: int | None) -> tuple[int, int]:
    """The largest size, aspect kept, whose cost is within ``budget`` (the size itself when it fits,
    when there is no budget, or when the model is not ``resizable``). When even the smallest useful
    size is over budget, the largest size that costs no more than that smallest one (LLaVA-1.6's one
    tile costs the same at 448 px as at 28 px)."""
    if not budget or budget <= 0 or not counter.resizable or counter.tokens(width, height) <= budget:
        return width, height
    floor = min(1.0, _MIN_SIDE / max(1, min(width, height)))
    least = counter.tokens(*_scaled(width, height, floor))
    return _scaled(width, height, _largest(counter, width, height, max(budget, least), floor))


def _largest(counter: TokenCounter, width: int, height: int, budget: int, low: float) -> float:
    """The largest scale in [low, 1] whose cost is within ``budget`` (``low``'s is)."""
    high = 1.0
    for _ in range(30):
        mid = (low + high) / 2
        if counter.tokens(*_scaled(width, height, mid)) <= budget:
            low = mid
        else:
            high = mid
        if high - low < 1e-4:
            break
    return low


def cost_of(counter: TokenCounter, image: Image, budget: int | None) -> ImageCost:
    """What ``image`` becomes under ``budget``: its size for the engine (:func:`fit` of its upright
    pixels) and tokens; ``original`` is the size it was sent at, upright, even when the server
    decoded it at a reduced size (:func:`decode_side`)."""
    w, h = image.pil.size
    size = fit(counter, w, h, budget)
    return ImageCost(original=upright(image), size=size, tokens=counter.tokens(*size))


def upright(image: Image) -> tuple[int, int]:
    """The image's size as sent, with its EXIF rotation applied (what the user sees)."""
    ow, oh = image.original_size
    pw, ph = image.pil.size
    return (oh, ow) if pw != ph and ow != oh and (pw > ph) != (ow > oh) else (ow, oh)


def decode_side(counter: TokenCounter | None, width: int, height: int, budget: int | None) -> int:
    """The long side an image of ``width`` x ``height`` needs under ``budget`` (0: all of it): the
    server may decode a JPEG at 1/2, 1/4 or 1/8 as long as it keeps that much, so a 48 MP photo
    never costs a full decode."""
    if counter is None:
        return 0
    size = fit(counter, width, height, budget)
    return 0 if size == (width, height) else max(size)


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def resized(image: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """``image`` at ``size`` (a high-quality downscale; the same image when the size is its own)."""
    if image.size == tuple(size):
        return image
    return image.resize(size, PILImage.Resampling.LANCZOS, reducing_gap=3.0)


def scaled_image(image: Image, size: tuple[int, int]) -> Image:
    """``image`` as an engine that takes encoded files should get it at ``size``: the pixels scaled
    and encoded again (JPEG stays JPEG, quality 95; anything else becomes PNG); itself when unchanged."""
    if image.pil.size == tuple(size):
        return image
    pil = resized(image.pil, size)
    kind = "JPEG" if image.format == "JPEG" else "PNG"
    out = io.BytesIO()
    pil.save(out, kind, **({"quality": 95} if kind == "JPEG" else {}))
    data = out.getvalue()
    return dataclasses.replace(image, pil=pil, data=data, format=kind, byte_size=len(data))


def image_budget(option: int | None, parameter: object, setting: int | None, on_gpu: bool) -> int | None:
    """The per-image token budget of a request: the request's option, the model's parameter, the
    server's setting, the hardware default (None: no budget, the model's own maximum)."""
    for value in (option, parameter, setting):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None if on_gpu else CPU_BUDGET


def model_budget(option: int | None, manifest: ModelManifest, on_gpu: bool) -> int | None:
    """:func:`image_budget` for a request to ``manifest``'s model: its parameter and the server's
    setting filled in (what every engine asks)."""
    from ..config import settings

    return image_budget(option, manifest.parameters.get("image_max_tokens"), settings().image_max_tokens, on_gpu)


def context_error(image_tokens: int, images: int, text_tokens: int, context: int) -> InvalidRequest:
    """The answer when a prompt cannot fit the context even at its largest."""
    return InvalidRequest(
        f"this prompt needs {image_tokens + text_tokens:,} tokens ({image_tokens:,} for {images} image"
        f"{'s' if images != 1 else ''}, {text_tokens:,} for text); the context is {context:,}; "
        "lower image_max_tokens or send fewer images"
    )
