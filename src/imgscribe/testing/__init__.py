"""Tiny random-weight checkpoints of every VLM family imgscribe runs, built offline.

    >>> from imgscribe import testing
    >>> path = testing.build("qwen2_vl", tmp_path / "qwen2_vl")   # a Hugging Face checkpoint folder
    >>> testing.photo("chelsea")                                   # a real photo (scikit-image's)

Each model has its family's real architecture, processor classes and chat template, with every size
shrunk (about 0.2-0.5 M parameters, 1-2 MB, a second to build). Its tokenizer is a byte-level BPE
trained here on Python's own sources. The weights are random, so the text is too; token counts,
image tiling, templates, streaming and timings are real. Nothing is downloaded: ``HF_HUB_OFFLINE``
is set on import.

Tests and benchmarks share these builders. :data:`BUILDERS` lists the families;
:func:`needs_torchvision` says which need torchvision (Llama 4, Phi-4-multimodal).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__all__ = ["BUILDERS", "ENGINE_FAMILY", "build", "has_torchvision", "needs_torchvision", "photo", "photo_jpeg", "photo_path"]

#: testing name -> the engine family it exercises (several LLaVA variants share one)
ENGINE_FAMILY = {
    "llava15": "llava",
    "llava_llama3": "llava",
    "llava_phi3": "llava",
    "llava_next": "llava_next",
    "llava_onevision": "llava_onevision",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "gemma3": "gemma3",
    "pixtral": "pixtral",
    "mistral3": "mistral3",
    "llama4": "llama4",
    "phi4mm": "phi4mm",
    "janus": "janus",
    "idefics3": "idefics3",
    "smolvlm": "smolvlm",
    "mllama": "mllama",
}


def _builder(name: str) -> Callable[[Path], None]:
    from . import builders

    return getattr(builders, name)


#: every family that :func:`build` makes, in a stable order
BUILDERS: tuple[str, ...] = tuple(ENGINE_FAMILY)
_lock = threading.Lock()


def needs_torchvision(name: str) -> bool:
    from ..engines.transformers.compat import NEEDS_TORCHVISION

    return ENGINE_FAMILY[name] in NEEDS_TORCHVISION


def has_torchvision() -> bool:
    from ..engines.transformers.compat import has_torchvision as check

    return check()


def build(name: str, dest: str | os.PathLike, *, seed: int = 0, overwrite: bool = True) -> Path:
    """Build the tiny ``name`` checkpoint into the folder ``dest`` (created; replaced if it exists)."""
    if name not in ENGINE_FAMILY:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(BUILDERS)}")
    dest = Path(dest)
    if dest.exists():
        if not overwrite and (dest / "config.json").is_file():
            return dest
        shutil.rmtree(dest)
    import torch

    from ..engines.transformers import compat

    compat.install()
    with _lock:  # the global RNG: one build at a time gives the same weights for the same seed
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            _builder(name)(dest)
        finally:
            torch.random.set_rng_state(state)
    return dest


# -- photos -------------------------------------------------------------------------------------------

PHOTOS = {
    "chelsea": "chelsea.png",  # a cat, 451x300
    "coffee": "coffee.png",  # a cup of coffee, 600x400
    "astronaut": "astronaut.png",  # 512x512
    "rocket": "rocket.jpg",  # 427x640, JPEG
    "motorcycle": "motorcycle_left.png",  # wide
}


def photo_path(name: str = "chelsea") -> Path:
    """A real photograph shipped inside the scikit-image wheel (public domain / CC0), read in place."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test photos come from scikit-image: pip install scikit-image")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / PHOTOS.get(name, name)
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def photo(name: str = "chelsea") -> bytes:
    return photo_path(name).read_bytes()


def photo_jpeg(size: tuple[int, int], orientation: int | None = None, quality: int = 85,
               name: str = "chelsea") -> bytes:  # fmt: skip
    """A real photo scaled to ``size`` (its stored pixels), as a JPEG; ``orientation``: its EXIF tag
    (6: stored landscape, shown portrait). A 12 MP phone photo is ``photo_jpeg((4000, 3000))``."""
    import io

    from PIL import Image

    pil = Image.open(photo_path(name)).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    pil.save(out, "JPEG", quality=quality, exif=exif)
    return out.getvalue()


def wide_photo(name: str = "coffee", ratio: float = 3.0) -> bytes:
    """A real photo cropped to ``ratio``:1 (PNG bytes): LLaVA-1.6 tiles it in several 336 tiles."""
    import io

    from PIL import Image

    img = Image.open(photo_path(name)).convert("RGB")
    w = img.width
    h = max(1, int(w / ratio))
    top = (img.height - h) // 2
    out = io.BytesIO()
    img.crop((0, top, w, top + h)).save(out, format="PNG")
    return out.getvalue()
