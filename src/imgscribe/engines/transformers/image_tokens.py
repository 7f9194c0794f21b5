"""How many prompt tokens one image becomes, predicted from the family's own processor.

:func:`counter_for` gives a :class:`~imgscribe.engines.image_budget.TokenCounter` for a loaded
processor: ``tokens(width, height)`` is the number of image-token positions (the family's image
token id: ``<|image_pad|>``, ``<image>``, ``[IMG]``, ``<|patch|>``...) the processor puts in
``input_ids`` for one image of that size, upright, as sent. The tokens around them (``<|vision_start|>``,
``[IMG_BREAK]``, Idefics3's row tags, Gemma 3's ``<start_of_image>``) are the prompt's text.

Where transformers has the arithmetic, it is the processor's own (``_get_num_multimodal_tokens``,
``get_number_of_image_patches``, Llama 4's ``get_best_fit``, Gemma 3's pan-and-scan), with the image
processor's own settings (Qwen2-VL's ``min_pixels``/``max_pixels``: 12.8 MP by default); Phi-4's
crop arithmetic is repeated here. Fixed-resolution families (LLaVA-1.5, Gemma 3 without pan-and-scan,
Janus, Llama 3.2 Vision's single ``<|image|>``) are not ``resizable``: every image costs the same; nor
are Idefics3 / SmolVLM, whose processor scales every image to one longest edge (the tiles follow the
aspect only), and Gemma 3's pan-and-scan (its crops follow the aspect).
An unknown family has no counter (None: no budget, the image passes through). Counts are cached per size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["ImageTokens", "counter_for", "image_token_id"]


class ImageTokens:
    """A :class:`~imgscribe.engines.image_budget.TokenCounter` over a count function, cached per size."""

    def __init__(self, count: Callable[[int, int], int], resizable: bool):
        self._count = count
        self.resizable = resizable
        self._cache: dict[tuple[int, int], int] = {}

    def tokens(self, width: int, height: int) -> int:
        key = (int(width), int(height))
        n = self._cache.get(key)
        if n is None:
            n = self._cache[key] = int(self._count(*key))
        return n


def counter_for(processor, family) -> ImageTokens | None:
    """The counter for ``processor`` of ``family`` (a :class:`Family` or its key); None when unknown."""
    key = getattr(family, "key", family)
    make = _FAMILIES.get(key)
    if make is None:
        if not hasattr(processor, "_get_num_multimodal_tokens"):
            return None
        make = _multimodal
    try:
        return make(processor)
    except (AttributeError, KeyError, TypeError, ValueError, ImportError):  # a processor unlike the family's
        return None


def image_token_id(processor) -> int | None:
    """The id whose positions in ``input_ids`` hold an image's embeddings."""
    tok = getattr(processor, "tokenizer", processor)
    # Llama 4: <|patch|>, not <|image|>; Gemma 3: the tokenizer's <image_soft_token>, not the processor's <boi>
    token = getattr(processor, "img_patch_token", None) or getattr(tok, "image_token", None)
    if token:
        return int(tok.convert_tokens_to_ids(token))
    value = getattr(processor, "image_token_id", None)
    if isinstance(value, int):
        return value
    token = getattr(processor, "image_token", None)
    return int(tok.convert_tokens_to_ids(token)) if token else None


# -- the families ----------------------------------------------------------------------------------


def _images_kwargs(processor) -> dict[str, Any]:
    try:
        return dict(processor._merge_kwargs()["images_kwargs"])
    except Exception:  # noqa: BLE001  (older or odd processors: the image processor's attributes)
        return {}


def _multimodal(processor, resizable: bool = True) -> ImageTokens:
    """The processor's own ``_get_num_multimodal_tokens`` (image sizes as (height, width))."""

    def count(width: int, height: int) -> int:
        return processor._get_num_multimodal_tokens(image_sizes=[(height, width)]).num_image_tokens[0]

    counter = ImageTokens(count, resizable)
    counter.tokens(336, 336)  # fails now, not in a request, when the processor lacks what it needs
    return counter


def _llava(processor) -> ImageTokens:
    return _multimodal(processor, resizable=False)  # one center crop: every image the same


def _pixtral(processor) -> ImageTokens:
    """Pixtral / Mistral 3: the image fitted under ``longest_edge``, one [IMG] per merged patch
    (the processor's count adds a break per row, which is text here)."""
    from transformers.models.pixtral import processing_pixtral as module

    size = _images_kwargs(processor).get("size") or processor.image_processor.size
    longest = size["longest_edge"] if isinstance(size, dict) else size.longest_edge
    patch = processor.patch_size * processor.spatial_merge_size

    def count(width: int, height: int) -> int:
        import numpy as np

        h, w = module.get_resize_output_image_size(
            np.zeros((height, width, 1), dtype=np.uint8), size=(longest, longest), patch_size=(patch, patch)
        )
        return (h // patch) * (w // patch)

    return ImageTokens(count, True)


def _gemma3(processor) -> ImageTokens:
    """Gemma 3: ``image_seq_length`` soft tokens an image, once more per pan-and-scan crop when on."""
    ip = processor.image_processor
    kwargs = _images_kwargs(processor)
    seq = int(processor.image_seq_length)

    def option(name: str):
        value = kwargs.get(name)
        return getattr(ip, name, None) if value is None else value

    if not option("do_pan_and_scan"):
        return ImageTokens(lambda width, height: seq, False)
    import torch

    names = ("pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops", "pan_and_scan_min_ratio_to_activate")
    pas = {name: option(name) for name in names}

    def count(width: int, height: int) -> int:
        crops = ip.pan_and_scan_batched(torch.zeros(1).expand(1, 3, height, width), **pas)  # views: no pixels
        return seq * (1 + len(crops))

    # the number of crops follows the aspect, not the size: scaling down gains nothing
    return ImageTokens(count, False)


def _qwen(processor) -> ImageTokens:
    return _multimodal(processor)  # smart_resize within the image processor's min/max pixels


def _idefics(processor) -> ImageTokens:
    """Idefics3 / SmolVLM: ``image_seq_len`` tokens for each tile and the global image."""
    ip = processor.image_processor
    kwargs = {k: v for k, v in _images_kwargs(processor).items() if v is not None}
    seq = int(processor.image_seq_len)

    def count(width: int, height: int) -> int:
        patches, _rows, _cols = ip.get_number_of_image_patches(height, width, kwargs)
        return seq * max(1, patches)

    # the image processor scales every image's longest edge to size["longest_edge"] (up too): the tiles
    # follow the aspect, not the size, so scaling down gains nothing
    counter = ImageTokens(count, False)
    counter.tokens(336, 336)
    return counter


def _llama4(processor) -> ImageTokens:
    """Llama 4: the image processor's canvas (``get_best_fit`` among tile grids up to
    ``max_patches``), a tile's patches after pixel shuffle, for each tile and the global one."""
    import torch
    from transformers.models.llama4 import image_processing_llama4 as module

    ip = processor.image_processor
    kwargs = _images_kwargs(processor)
    size = ip.size
    tile_h, tile_w = (size["height"], size["width"]) if isinstance(size, dict) else (size.height, size.width)
    max_patches = kwargs.get("max_patches") or ip.max_patches
    to_max = bool(kwargs.get("resize_to_max_canvas", getattr(ip, "resize_to_max_canvas", False)))
    resolutions = module.find_supported_resolutions(max_num_chunks=max_patches, patch_size=_SizeLike(tile_h, tile_w))
    resolutions = torch.tensor(resolutions)
    per_tile = (tile_h // processor.patch_size) * (tile_w // processor.patch_size) // processor.downsample_ratio

    def count(width: int, height: int) -> int:
        canvas = module.get_best_fit((height, width), resolutions, resize_to_max_canvas=to_max)
        tiles = (int(canvas[0]) // tile_h) * (int(canvas[1]) // tile_w)
        return per_tile * (tiles + 1 if tiles > 1 else 1)

    return ImageTokens(count, True)


class _SizeLike:
    def __init__(self, height: int, width: int):
        self.height, self.width = height, width

    def __getitem__(self, key: str) -> int:
        return getattr(self, key)


def _phi4mm(processor) -> ImageTokens:
    """Phi-4-multimodal: the image processor's dynamic-HD crop arithmetic (``dynamic_preprocess``
    and the token sum of ``_preprocess``), repeated here without the pixels."""
    ip = processor.image_processor
    kwargs = _images_kwargs(processor)
    size = ip.size
    crop = size["height"] if isinstance(size, dict) else size.height
    patch = int(kwargs.get("patch_size") or ip.patch_size)
    max_num = int(kwargs.get("dynamic_hd") or ip.dynamic_hd)
    mask_size = crop // patch

    def count(width: int, height: int) -> int:
        w_num, h_num = math.ceil(width / crop), math.ceil(height / crop)
        if w_num * h_num > max_num:
            ratios = sorted({(i, j) for n in range(1, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                             if 1 <= i * j <= max_num}, key=lambda r: r[0] * r[1])  # fmt: skip
            w_num, h_num = ip.find_closest_aspect_ratio(width / height, ratios, width, height, crop)
        target_w, target_h = crop * w_num, crop * h_num
        if target_w / width < target_h / height:
            pad_w, pad_h = 0, target_h - int(height * (target_w / width))
        else:
            pad_w, pad_h = target_w - int(width * (target_h / height)), 0
        rows, cols = mask_size * h_num, mask_size * w_num
        masked_cols = math.floor(pad_w / patch) if pad_w >= patch else 0
        masked_rows = math.floor(pad_h / patch) if pad_h >= patch else 0
        # the mask downsampled 2x per crop ([0::2, 0::2] of each mask_size square), as _preprocess does
        kept_cols = sum(1 for c in range(cols) if c % mask_size % 2 == 0 and c < cols - masked_cols)
        kept_rows = sum(1 for r in range(rows) if r % mask_size % 2 == 0 and r < rows - masked_rows)
        # 256 + 16: the global image's 16x16 tokens and its row ends; 1: the separator; + a row end a row
        return 256 + 1 + kept_rows * kept_cols + (kept_rows if kept_cols else 0) + 16

    return ImageTokens(count, True)


def _janus(processor) -> ImageTokens:
    n = int(processor.num_image_tokens)
    return ImageTokens(lambda width, height: n, False)


def _mllama(processor) -> ImageTokens:
    # one <|image|> in the prompt; the tiles are read through cross-attention, at most max_image_tiles
    return ImageTokens(lambda width, height: 1, False)


_FAMILIES: dict[str, Callable[[Any], ImageTokens]] = {
    "llava": _llava,
    "llava_next": _multimodal,
    "llava_onevision": _multimodal,
    "pixtral": _pixtral,
    "mistral3": _pixtral,
    "qwen2_vl": _qwen,
    "qwen2_5_vl": _qwen,
    "gemma3": _gemma3,
    "llama4": _llama4,
    "phi4mm": _phi4mm,
    "janus": _janus,
    "idefics3": _idefics,
    "smolvlm": _idefics,
    "mllama": _mllama,
}
