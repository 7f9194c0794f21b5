"""How many prompt tokens llama-server (its ``mtmd`` library, llama.cpp b11434) makes of an image of a
given size: the projector's hyper-parameters from the mmproj GGUF header, and llama.cpp's own
arithmetic, rounding included, so that the count is exact rather than an estimate.

Where the numbers come from (``tools/mtmd`` of llama.cpp b11434):

- ``clip.cpp`` ``clip_model_loader::load_hparams``: per projector type, the merge (``n_merge``: the
  GGUF's ``clip.vision.spatial_merge_size`` or ``clip.vision.projector.scale_factor``, else the
  type's default), the pixel limits (``set_limit_image_tokens(min, max)`` with ``--image-min-tokens``
  / ``--image-max-tokens`` taking the place of the defaults), LLaVA-1.6's ``image_grid_pinpoints``,
  Llama 4's tiles (``set_llava_uhd_res_candidates(model, 3)``);
- ``mtmd-image.cpp``: the size each preprocessor makes of the image (``calc_size_preserved_ratio``,
  in float32; ``mtmd_image_preprocessor_llava_uhd::get_slice_instructions`` /
  ``select_best_resolution``; ``mtmd_image_preprocessor_idefics3::preprocess``);
- ``clip.cpp`` ``clip_n_output_tokens``: the embeddings of one preprocessed image (or tile);
- ``mtmd.cpp`` ``mtmd_context::init_vision`` and ``mtmd_tokenizer::add_media``: the text put around
  an image (``img_beg``/``img_end``, Idefics3's ``<row_1_col_1>`` per tile, a ``\\n`` between rows),
  tokenized with the model's vocabulary. Those texts are counted by ``text_tokens`` (llama-server's
  ``/tokenize``); without it each counts one token (what the real vocabularies make of them).

Projector types not mirrored here get no counter (``counter_for`` returns None): no budget applies,
the images pass through as they are.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ...formats.gguf import GGUFHeader

__all__ = ["MtmdCounter", "counter_for"]

_FIXED = ("mlp", "mlp_norm", "ldp", "ldpv2", "janus_pro")  # fixed size, or LLaVA-1.6 tiles with pinpoints
_QWEN = ("qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger")
SUPPORTED = (*_FIXED, *_QWEN, "gemma3", "pixtral", "llama4", "idefics3")


def _f32(x: float) -> float:
    """``x`` as a C ``float`` (IEEE single): each float operation of clip.cpp rounds through this."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _cround(x: float) -> int:
    """``std::round``: halves away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def calc_size_preserved_ratio(width: int, height: int, align: int, min_pixels: int = 0, max_pixels: int = 0,
                              longest_edge: int = 0) -> tuple[int, int]:  # fmt: skip
    """``img_tool::calc_size_preserved_ratio`` (mtmd-image.cpp, "smart_resize"), float32 as there."""
    if width <= 0 or height <= 0:
        return 0, 0
    f = float(align)

    def round_by(x: float) -> int:
        return _cround(_f32(_f32(x) / f)) * align

    def ceil_by(x: float) -> int:
        return math.ceil(_f32(_f32(x) / f)) * align

    def floor_by(x: float) -> int:
        return math.floor(_f32(_f32(x) / f)) * align

    if longest_edge > 0:
        scale = min(_f32(longest_edge / width), _f32(longest_edge / height))
        w_bar, h_bar = ceil_by(_f32(width * scale)), ceil_by(_f32(height * scale))
    else:
        w_bar, h_bar = max(align, round_by(width)), max(align, round_by(height))
    if max_pixels > 0 and h_bar * w_bar > max_pixels:
        beta = _f32(math.sqrt(_f32(_f32(float(height) * width) / max_pixels)))
        h_bar = max(align, floor_by(_f32(height / beta)))
        w_bar = max(align, floor_by(_f32(width / beta)))
    elif min_pixels > 0 and h_bar * w_bar < min_pixels:
        beta = _f32(math.sqrt(_f32(float(min_pixels) / _f32(float(height) * width))))
        h_bar, w_bar = ceil_by(_f32(height * beta)), ceil_by(_f32(width * beta))
    return w_bar, h_bar


def select_best_resolution(width: int, height: int, candidates: list[tuple[int, int]]) -> tuple[int, int]:
    """``mtmd_image_preprocessor_llava_uhd::select_best_resolution``: the candidate that keeps the most
    of the image, then wastes the least (``resize_maintain_aspect_ratio`` in float32, truncated)."""
    best, max_effective, min_wasted = (0, 0), 0, 1 << 62
    for cw, ch in candidates:
        scale = min(_f32(cw / width), _f32(ch / height))
        tw, th = int(_f32(width * scale)), int(_f32(height * scale))
        effective = min(tw * th, width * height)
        wasted = cw * ch - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            max_effective, min_wasted, best = effective, wasted, (cw, ch)
    return best


@dataclass(frozen=True)
class Layout:
    """What one image becomes: its embeddings, the texts tokenized around them (each on its own, as
    ``add_text(text, true)``), and the single tokens looked up by name (``lookup_token``)."""

    embeddings: int
    texts: tuple[str, ...] = ()
    single_tokens: int = 0
    size: tuple[int, int] = (0, 0)  # what the preprocessor resized the image (or the refined grid) to


@dataclass
class MtmdCounter:
    """A :class:`~imgscribe.engines.image_budget.TokenCounter` for one mmproj."""

    projector: str
    image_size: int
    patch_size: int
    n_merge: int = 1
    min_pixels: int = 0
    max_pixels: int = 0
    longest_edge: int = 0
    candidates: list[tuple[int, int]] = field(default_factory=list)
    img_beg: str = ""
    img_end: str = ""
    img_break: bool = False  # pixtral's [IMG_BREAK] embedding after every row but the last
    resizable: bool = False
    #: counts the tokens of a text as llama-server tokenizes it (parse_special, no BOS); None: 1 each
    text_tokens: Callable[[str], int] | None = None
    _texts: dict[str, int] = field(default_factory=dict, repr=False)

    def tokens(self, width: int, height: int) -> int:
        layout = self.layout(width, height)
        return layout.embeddings + layout.single_tokens + sum(self._text(t) for t in layout.texts)

    def _text(self, text: str) -> int:
        if text not in self._texts:
            self._texts[text] = self.text_tokens(text) if self.text_tokens else 1
        return self._texts[text]

    # -- clip_n_output_tokens, per projector type ---------------------------------------------------

    def _per_image(self, nx: int, ny: int) -> int:
        p, kind = self.patch_size, self.projector
        n = (nx // p) * (ny // p)
        if kind in ("ldp", "ldpv2"):
            return n // 4  # (no BOI/EOI embeddings: mm_boi is only loaded for glm-edge)
        if kind in _QWEN:
            return (nx // (p * 2)) * (ny // (p * 2))
        if kind in ("gemma3", "idefics3", "llama4"):
            return n // (self.n_merge * self.n_merge)
        if kind == "pixtral":
            x, y = nx // p // self.n_merge, ny // p // self.n_merge
            return y * x + (y - 1 if self.img_break else 0)
        return n  # mlp, mlp_norm, janus_pro

    # -- the preprocessors (mtmd-image.cpp) and the texts around the image (mtmd.cpp) ----------------

    def layout(self, width: int, height: int) -> Layout:
        wrap = tuple(t for t in (self.img_beg, self.img_end) if t)
        kind, s = self.projector, self.image_size
        if kind in _QWEN or kind == "pixtral":  # mtmd_image_preprocessor_dyn_size
            w, h = calc_size_preserved_ratio(width, height, self.patch_size * self.n_merge, self.min_pixels,
                                             self.max_pixels)  # fmt: skip
            return Layout(self._per_image(w, h), wrap, size=(w, h))
        if kind == "idefics3":
            return self._idefics3(width, height)
        if self.candidates:  # mtmd_image_preprocessor_llava_uhd with pinpoints (LLaVA-1.6, Llama 4)
            n = self._per_image(s, s)  # the overview
            if width <= s and height <= s:
                return Layout(n, wrap, size=(s, s))
            rw, rh = select_best_resolution(width, height, self.candidates)
            for y in range(0, rh, s):
                for x in range(0, rw, s):
                    n += self._per_image(min(s, rw - x), min(s, rh - y))
            return Layout(n, wrap, size=(rw, rh))
        return Layout(self._per_image(s, s), wrap, size=(s, s))  # mtmd_image_preprocessor_fixed_size

    def _idefics3(self, width: int, height: int) -> Layout:
        """``mtmd_image_preprocessor_idefics3::preprocess``, laid out by ``add_media`` with
        MTMD_SLICE_TMPL_IDEFICS3: per tile ``<fake_token_around_image><row_Y_col_X>`` and its
        embeddings, ``\\n`` after each row but the last, then ``\\n\\n``, ``<fake_token_around_image>``,
        ``<global-img>``, the overview, ``<fake_token_around_image>`` (those five looked up)."""
        s = self.image_size
        if self.longest_edge > 0 and self.min_pixels <= 0 and self.max_pixels <= 0:
            aspect = width / height
            if width >= height:
                rw, rh = self.longest_edge, int(self.longest_edge / aspect)
                rh += rh % 2
            else:
                rw, rh = int(self.longest_edge * aspect), self.longest_edge
                rw += rw % 2
            gx, gy = (rw + s - 1) // s, (rh + s - 1) // s
            tiles = [[(s, s)] * gx for _ in range(gy)]
            size = (gx * s, gy * s)
        else:
            rw, rh = calc_size_preserved_ratio(width, height, s, max(0, self.min_pixels), max(0, self.max_pixels),
                                               self.longest_edge)  # fmt: skip
            gx, gy = math.ceil(_f32(rw / s)), math.ceil(_f32(rh / s))
            tiles = [[(min(s, rw - x), min(s, rh - y)) for x in range(0, rw, s)] for y in range(0, rh, s)]
            size = (rw, rh)
        embeddings = self._per_image(s, s) + sum(self._per_image(*t) for row in tiles for t in row)
        texts = tuple(f"<fake_token_around_image><row_{y + 1}_col_{x + 1}>" for y in range(gy) for x in range(gx))
        return Layout(embeddings, texts, single_tokens=(gy - 1) + 3 + 1, size=size)


def _int(metadata: dict, key: str, default: int = 0) -> int:
    value = metadata.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def counter_for(mmproj: GGUFHeader, *, image_min_tokens: int | None = None, image_max_tokens: int | None = None,
                text_tokens: Callable[[str], int] | None = None) -> MtmdCounter | None:  # fmt: skip
    """The counter of the projector in ``mmproj`` (llama-server started with ``--image-min-tokens`` /
    ``--image-max-tokens`` when given), or None when its type is not one mirrored here."""
    md = mmproj.metadata
    kind = str(md.get("clip.projector_type") or md.get("clip.vision.projector_type") or "")
    if kind == "mlp" and "mm.3.weight" in mmproj.tensors:
        kind = "mlp_norm"  # clip.cpp: "a hack to support Yi-type llava"
    if kind not in SUPPORTED:
        return None
    image_size, patch = _int(md, "clip.vision.image_size"), _int(md, "clip.vision.patch_size")
    if patch <= 0 or (image_size <= 0 and kind not in _QWEN and kind != "pixtral"):
        return None
    c = MtmdCounter(kind, image_size, patch, text_tokens=text_tokens)
    lo, hi = (image_min_tokens or 0), (image_max_tokens or 0)

    def limits(n_min: int | None, n_max: int | None) -> None:  # clip_hparams::set_limit_image_tokens
        area = patch * patch * c.n_merge * c.n_merge
        if lo > 0 or n_min is not None:
            c.min_pixels = (lo if lo > 0 else n_min or 0) * area
        if hi > 0 or n_max is not None:
            c.max_pixels = (hi if hi > 0 else n_max or 0) * area

    pins = md.get("clip.vision.image_grid_pinpoints")
    if kind in _FIXED:
        if isinstance(pins, list) and len(pins) >= 2 and len(pins) % 2 == 0:
            c.candidates = [(int(pins[i]), int(pins[i + 1])) for i in range(0, len(pins), 2)]
            c.resizable = True
    elif kind in _QWEN:
        c.n_merge = _int(md, "clip.vision.spatial_merge_size", 2)
        c.img_beg, c.img_end = "<|vision_start|>", "<|vision_end|>"
        limits(8, 4096)
        c.resizable = True
    elif kind == "gemma3":
        c.n_merge = _int(md, "clip.vision.projector.scale_factor", 4)
        c.img_beg, c.img_end = "<start_of_image>", "<end_of_image>"
    elif kind == "pixtral":
        c.n_merge = _int(md, "clip.vision.spatial_merge_size", 1)
        c.img_end = "[IMG_END]"
        c.img_break = "v.token_embd.img_break" in mmproj.tensors
        limits(8, 1024)
        c.resizable = True
    elif kind == "llama4":
        c.n_merge = _int(md, "clip.vision.projector.scale_factor", 1)
        c.img_beg, c.img_end = "<|image_start|>", "<|image_end|>"
        c.candidates = [(x * image_size, y * image_size) for x in range(1, 4) for y in range(1, 4) if (x, y) != (1, 1)]
        c.resizable = True
    elif kind == "idefics3":
        c.n_merge = _int(md, "clip.vision.projector.scale_factor", 1)
        c.longest_edge = _int(md, "clip.vision.preproc_image_size")
        limits(None, None)  # set_limit_image_tokens(): only the --image-*-tokens values
        # the longest-edge path resizes every image to the same longest side: the tiles follow the
        # aspect, not the size, so a smaller image saves nothing
        c.resizable = c.min_pixels > 0 or c.max_pixels > 0 or c.longest_edge <= 0
    if c.max_pixels and c.min_pixels > c.max_pixels:
        return None  # llama-server refuses to load it ("image_max_pixels is less than image_min_pixels")
    return c
