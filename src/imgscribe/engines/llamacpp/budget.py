"""Every image of a llamacpp request fits its token budget, and the prompt fits the slot's context,
before llama-server sees it (issue 14).

- Each image's cost comes from the projector (``image_tokens.py``: llama.cpp's own arithmetic, the
  texts around an image counted by llama-server's ``/tokenize``); one over the request's budget
  (``image_budget``: the option, the model's parameter, ``IMGSCRIBE_IMAGE_MAX_TOKENS``, the hardware
  default) is scaled down, aspect kept, to the largest size under it.
- The text's tokens: the rendered prompt cut at the media markers, each piece tokenized on its own
  with the BOS llama-server adds (``/tokenize`` ``add_special``), as ``mtmd_tokenize`` does; not
  asked when a bound from the text's bytes already fits the context (issue 19: no round trip).
- The slot's context is llama-server's own (``/props``: padded to 256 by llama.cpp). A prompt that
  does not fit is given a larger context up to the model's trained length when the KV cache of it
  fits the memory free now (``memory.kv_cache_bytes`` with the GGUF's layers and heads); otherwise
  the request is refused with the numbers (``context_error``).
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ...config import settings
from ...errors import EngineFailed
from ...formats.gguf import GGUFHeader, read_gguf
from ...hardware import probe_gpus, probe_ram
from ...memory import kv_cache_bytes, ram_budget, vram_budget
from ...store.catalog import Arch
from ...types import Image, ModelManifest
from ...wire.transport import DeadlineClient, error_message, get_json
from ..image_budget import ImageCost, cost_of, decode_side, model_budget, scaled_image
from .image_tokens import MtmdCounter, counter_for
from .process import ServerProcess

__all__ = ["Plan", "Budget", "kv_allows", "on_gpu", "raised_ctx"]

_slot_ctx: weakref.WeakKeyDictionary[ServerProcess, int] = weakref.WeakKeyDictionary()
_ROOM = 1024  # tokens left for the answer when the context is raised (unless num_predict says)
_BYTE_BOUNDED = ("llama", "gpt2")  # tokenizers whose tokens are bounded by the bytes (Budget.text_bound)
_SPECIAL_EXTRA = 4  # a piece's BOS, EOS and SPM dummy prefix, with room to spare


@dataclass
class Plan:
    """What a request's images became, and what its prompt costs."""

    images: list[Image]
    costs: list[ImageCost]
    text_tokens: int
    exact: bool = True  # text_tokens counted by llama-server; False: an upper bound (it fits anyway)

    @property
    def image_tokens(self) -> int:
        return sum(c.tokens for c in self.costs)

    @property
    def total(self) -> int:
        return self.image_tokens + self.text_tokens

    def reported(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.costs]


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@functools.lru_cache(maxsize=1)
def _gpu_found() -> bool:
    return bool(probe_gpus(timeout=3.0)[0])


def on_gpu(manifest: ModelManifest) -> bool:
    """Whether the model runs on a GPU: its ``num_gpu`` layers when set, else an NVIDIA GPU found
    (probed once)."""
    layers = _int(manifest.parameters.get("num_gpu"))
    return layers > 0 if layers is not None else _gpu_found()


class Budget:
    """One model's image budgets (its projector's counter, read once from the mmproj header)."""

    def __init__(self, manifest: ModelManifest):
        self.manifest = manifest
        self._lock = threading.Lock()
        self._counters: weakref.WeakKeyDictionary[ServerProcess, MtmdCounter | None] = weakref.WeakKeyDictionary()

    @functools.cached_property
    def _projector(self) -> GGUFHeader | None:
        path = self.manifest.files.get("projector")
        return read_gguf(path) if path and Path(path).is_file() else None

    def counter(self, process: ServerProcess) -> MtmdCounter | None:
        """The projector's counter, its texts tokenized by this llama-server; None when llama.cpp's
        arithmetic for its projector type is not mirrored (then no budget applies)."""
        with self._lock:
            if process not in self._counters:
                header = self._projector
                p = self.manifest.parameters
                self._counters[process] = None if header is None else counter_for(
                    header, image_min_tokens=_int(p.get("image_min_tokens")),
                    image_max_tokens=_int(p.get("image_max_tokens")),
                    text_tokens=lambda text: len(tokenize(process, [text], add_special=False)))  # fmt: skip
            return self._counters[process]

    def budget(self, option: int | None) -> int | None:
        """The request's per-image budget (``image_budget``'s order)."""
        return model_budget(option, self.manifest, on_gpu(self.manifest))

    def image_side(self, process: ServerProcess, width: int, height: int, option: int | None) -> int:
        """The long side an image of this size needs under the budget (0: all of it), for the server
        to decode a large JPEG at a reduced size (``decode_side``); 0 when unknown."""
        try:
            counter = self.counter(process)
        except Exception:  # noqa: BLE001 - llama-server restarting: decode in full, plan() will fit it
            return 0
        return decode_side(counter, width, height, self.budget(option)) if counter is not None else 0

    def plan(self, process: ServerProcess, prompt: str, marker: str, images: list[Image],
             option: int | None, ctx: int | None = None) -> Plan | None:  # fmt: skip
        """Each image fitted to the budget, and the prompt's cost; None when the projector's counts
        are unknown (the images go as they are, llama-server checks the context). ``ctx``: the
        slot's context; when the text's upper bound (:meth:`text_bound`) with the images already fits
        it, the text is not tokenized (``Plan.exact`` False: ``text_tokens`` is that bound)."""
        counter = self.counter(process)
        if counter is None:
            return None
        budget = self.budget(option)
        out, costs = [], []
        for image in images:
            # its upright pixels (intake applied the EXIF orientation, perhaps decoded a JPEG smaller:
            # decode_side); the original reported as sent, upright
            cost = cost_of(counter, image, budget)
            out.append(scaled_image(image, cost.size) if cost.size != image.pil.size else image)
            costs.append(cost)
        pieces = [piece for piece in prompt.split(marker) if piece] if marker else [prompt]
        bound = self.text_bound(pieces)
        if ctx is not None and bound is not None and bound + sum(c.tokens for c in costs) < ctx:
            return Plan(out, costs, bound, exact=False)  # fits whatever the exact count: no round trip
        text = len(tokenize(process, ["", *pieces], add_special=True))  # "" first: the BOS alone, if any
        return Plan(out, costs, text)

    def text_bound(self, pieces: list[str]) -> int | None:
        """At most how many tokens ``pieces`` (with the BOS/EOS llama-server adds) can be, for the
        tokenizers whose count cannot exceed it; None for the others (always tokenized).

        llama.cpp's SPM (``llama``) and BPE (``gpt2``) tokenizers end at single bytes: a piece never
        has more tokens than its UTF-8 bytes, except SPM's space, escaped to the 3-byte ``▁`` (and
        one more for its dummy prefix), and BPE's bytes mapped to 1-2 byte characters: 3 tokens a
        byte, 4 more a piece, bound both. Special tokens (``parse_special``) only lower the count."""
        if self._tokenizer not in _BYTE_BOUNDED:
            return None
        return _SPECIAL_EXTRA + sum(3 * len(piece.encode()) + _SPECIAL_EXTRA for piece in pieces)

    @functools.cached_property
    def _tokenizer(self) -> str | None:
        """The GGUF's ``tokenizer.ggml.model`` (``llama``: SPM, ``gpt2``: BPE...); None when unread."""
        try:
            value = _header(Path(self.manifest.files.get("model") or "")).metadata.get("tokenizer.ggml.model")
        except Exception:  # noqa: BLE001 - unreadable here: llama-server counts, as before
            return None
        return value if isinstance(value, str) else None


def tokenize(process: ServerProcess, pieces: list[str], *, add_special: bool) -> list[int]:
    """llama-server's ``/tokenize`` of ``pieces``, each tokenized on its own (special tokens parsed;
    ``add_special``: the first one gets the vocabulary's BOS/EOS)."""
    body = {"content": pieces, "add_special": add_special, "parse_special": True}
    try:
        with DeadlineClient(60, timeout=60, trust_env=False) as client:
            r = client.post(process.url + "/tokenize", json=body, headers=process.headers)
    except httpx.HTTPError as exc:
        raise EngineFailed(f"llama-server did not tokenize the prompt: {exc}") from None
    if r.status_code != 200:
        raise EngineFailed(f"llama-server did not tokenize the prompt: {error_message(r.text, r.status_code)}")
    return list(r.json().get("tokens") or [])


def slot_ctx(process: ServerProcess, asked: int) -> int:
    """A slot's context as llama-server runs it (``/props``; llama.cpp pads it to a multiple of
    256), else ``asked``."""
    if process not in _slot_ctx:
        try:
            n = _int((get_json(process.url + "/props", process.headers).get("default_generation_settings") or {})
                     .get("n_ctx"))  # fmt: skip
        except (httpx.HTTPError, ValueError, AttributeError):
            n = None
        _slot_ctx[process] = n or asked
    return _slot_ctx[process]


def raised_ctx(total: int, num_predict: int | None, trained: int) -> int | None:
    """The context to restart with for a prompt of ``total`` tokens: room for the answer
    (``num_predict``, else 1,024 tokens), in steps of 1,024, at most ``trained``; None when even
    ``trained`` cannot hold the prompt."""
    if total >= trained:
        return None
    want = total + (num_predict if num_predict and num_predict > 0 else _ROOM)
    return min(trained, -(-want // 1024) * 1024)


def kv_bytes(model: Path, ctx: int) -> int:
    head = _header(model)
    a, md = head.architecture, head.metadata

    def first(key: str) -> int:
        value = md.get(f"{a}.{key}")
        value = max(value) if isinstance(value, list) and value else value
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    layers, heads = first("block_count"), first("attention.head_count")
    kv_heads = first("attention.head_count_kv") or heads
    head_dim = first("attention.key_length") or (first("embedding_length") // heads if heads else 0)
    if layers and kv_heads and head_dim:
        return kv_cache_bytes(Arch(layers=layers, kv_heads=kv_heads, head_dim=head_dim), ctx)
    return kv_cache_bytes(None, ctx, text_params_b=head.parameters / 1e9)


@functools.lru_cache(maxsize=16)
def _header(model: Path) -> GGUFHeader:
    return read_gguf(model)


def kv_allows(manifest: ModelManifest, old_ctx: int, new_ctx: int, parallel: int) -> bool:
    """Whether the KV cache of ``new_ctx`` tokens a slot (``parallel`` slots) fits the memory free
    now, over what ``old_ctx`` already holds (GPU memory when the model runs on one, else RAM), a
    reserve kept; always when the memory check is off (``IMGSCRIBE_IGNORE_MEMORY``)."""
    if settings().ignore_memory:
        return True
    model = Path(manifest.files.get("model") or "")
    extra = kv_bytes(model, new_ctx * parallel) - kv_bytes(model, old_ctx * parallel)
    if extra <= 0:
        return True
    if on_gpu(manifest):
        gpus = probe_gpus(timeout=3.0)[0]
        if gpus:
            return extra <= vram_budget(max(g.memory_free for g in gpus))
    return extra <= ram_budget(probe_ram()[1])
