"""Loading a checkpoint folder: its processor (with its chat template) and its model, on a device."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import EngineFailed, InvalidRequest, Unsupported
from ...formats.checkpoints import CAUSAL_LM, Family, detect, read_config, weights_facts
from . import compat

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "f32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16"}  # fmt: skip


@dataclass
class Loaded:
    family: Family
    config: dict[str, Any]
    processor: Any
    model: Any
    device: str
    dtype: Any


def pick_device(requested: str | None = None) -> str:
    """``requested`` ("cpu", "cuda", "cuda:1", "mps"), or the best one here for "auto"/None."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise Unsupported(f"device {requested!r} was asked for, but torch sees no CUDA GPU here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str | None, path: Path):
    """float32 on the CPU (fast and exact; bfloat16 when float32 would not fit in memory), bfloat16 on
    a GPU that has it, else float16; or what ``requested`` names."""
    import torch

    if requested and requested != "auto":
        try:
            return getattr(torch, _DTYPES[requested.lower()])
        except KeyError:
            raise InvalidRequest(f"unknown dtype {requested!r}: use auto, float32, bfloat16 or float16") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    params, stored = weights_facts(path)
    if stored in ("BF16", "F16") and params * 4 > 0.6 * _physical_memory():
        return torch.bfloat16
    return torch.float32


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def load(path: str | os.PathLike, *, device: str | None = None, dtype: str | None = None) -> Loaded:
    """The checkpoint folder's processor and model on ``device`` in ``dtype`` (None/"auto": the best here)."""
    path = Path(path)
    if not path.is_dir():
        raise EngineFailed(f"the model folder {path} is gone (re-create the model with 'imgscribe create')")
    config = read_config(path)
    family = detect(config, str(path))
    if family.key in compat.NEEDS_TORCHVISION and not compat.has_torchvision():
        raise Unsupported(
            f"{family.title} needs torchvision: its image processor exists only in a torchvision build. Install the "
            "torchvision that matches your torch (for torch 2.14.1: pip install torchvision==0.29.1)"
        )
    compat.install()
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype, path)
    processor = load_processor(path, family)
    model = load_model(path, family, device, torch_dtype)
    return Loaded(family, config, processor, model, device, torch_dtype)


def load_processor(path: Path, family: Family):
    from transformers import AutoProcessor

    try:
        cls = compat.processor_class(family.key)
    except KeyError:
        cls = None
    try:
        if cls is None:
            processor = AutoProcessor.from_pretrained(path)
        else:
            try:
                processor = cls.from_pretrained(path)
            except Exception:
                # a folder saved without a video processor (no torchvision where it was made)
                if getattr(cls, "_imgscribe_image_only", False) or cls.__name__ == "PixtralProcessor":
                    raise
                processor = compat.image_only(cls).from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise EngineFailed(f"cannot load the processor of {path}: {type(exc).__name__}: {exc}") from exc
    tokenizer = getattr(processor, "tokenizer", None)
    if not getattr(processor, "chat_template", None) and getattr(tokenizer, "chat_template", None):
        processor.chat_template = tokenizer.chat_template  # Phi-4-multimodal drops it on reload
    if not getattr(processor, "chat_template", None):
        raise EngineFailed(
            f"{path} has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json): "
            "add the one the model was trained with"
        )
    return processor


def load_model(path: Path, family: Family, device: str, dtype):
    import transformers

    auto = transformers.AutoModelForCausalLM if family.auto == CAUSAL_LM else transformers.AutoModelForImageTextToText
    try:
        model = auto.from_pretrained(path, dtype=dtype, device_map=device)
    except (ImportError, ValueError) as exc:
        if "accelerate" not in str(exc).lower():
            raise EngineFailed(f"cannot load {path}: {exc}") from exc
        model = auto.from_pretrained(path, dtype=dtype).to(device)
    except (OSError, RuntimeError) as exc:
        raise EngineFailed(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    return model.eval()
