"""Shared by the transformers engine tests: tiny checkpoints (built once per test run), the family's
own processor as the reference for prompt token counts, and a streaming Ollama chat over HTTP."""

from __future__ import annotations

import atexit
import base64
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from imgscribe import testing

#: testing family -> the family ``show`` reports (Ollama's spelling where Ollama has one)
OLLAMA_FAMILY = {
    "mllama": "mllama", "llava15": "llava", "llava_llama3": "llava", "llava_phi3": "llava", "llava_next": "llava",
    "llava_onevision": "llava", "qwen2_vl": "qwen2vl", "qwen2_5_vl": "qwen25vl", "gemma3": "gemma3",
    "pixtral": "pixtral", "mistral3": "mistral3", "llama4": "llama4", "phi4mm": "phi4mm", "janus": "janus",
    "idefics3": "idefics3", "smolvlm": "smolvlm",
}  # fmt: skip
#: the language model each LLaVA variant must carry (llava-llama3 and llava-phi3 are LLaVA-1.5 with these)
TEXT_MODEL = {"llava15": "llama", "llava_llama3": "llama", "llava_phi3": "phi3", "llava_next": "mistral",
              "llava_onevision": "qwen2"}  # fmt: skip

_root: Path | None = None
_built: dict[str, Path] = {}
_lock = threading.Lock()


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ALL_FAMILIES = list(testing.BUILDERS)


def checkpoint(family: str) -> Path:
    """The tiny ``family`` checkpoint folder, built on first use in this test run.

    Llama 4 and Phi-4-multimodal need torchvision (``make test`` installs it): without it their tests
    are skipped here with the reason, and fail in CI, where nothing may be skipped silently.
    """
    global _root
    if testing.needs_torchvision(family) and not testing.has_torchvision():
        message = f"{family} needs torchvision: pip install torch==2.14.1 torchvision==0.29.1 (make setup does)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="imgscribe-tiny-hf-"))
            atexit.register(shutil.rmtree, _root, True)
        if family not in _built:
            _built[family] = testing.build(family, _root / family)
        return _built[family]


def reference_processor(path: Path, family: str):
    """The family's own processor, as its model card loads it (``AutoProcessor``); without torchvision,
    the image-only class that imgscribe's engine uses for the families whose processor insists on a
    video processor."""
    from transformers import AutoProcessor

    if testing.has_torchvision():
        return AutoProcessor.from_pretrained(path)
    from imgscribe.engines.transformers.compat import processor_class

    try:
        return processor_class(testing.ENGINE_FAMILY[family]).from_pretrained(path)
    except KeyError:
        return AutoProcessor.from_pretrained(path)


def reference_inputs(path: Path, family: str, text: str, photos: list[bytes]):
    """What the family's own processor makes of one user turn: the images (decoded by PIL here,
    upright, RGB) and then the text, through its chat template."""
    from PIL import Image, ImageOps

    images = [ImageOps.exif_transpose(Image.open(io.BytesIO(p))).convert("RGB") for p in photos]
    processor = reference_processor(path, family)
    if getattr(processor, "chat_template", None) is None:  # Phi-4-multimodal keeps it with the tokenizer
        processor.chat_template = processor.tokenizer.chat_template
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": text}]
    return processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True, return_dict=True,
        return_tensors="pt",
    )  # fmt: skip


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ollama_chat(client, model: str, text: str, photos: list[bytes], **body) -> list[dict]:
    """POST /api/chat with stream true; every NDJSON object of the answer."""
    payload = {"model": model, "stream": True,
               "messages": [{"role": "user", "content": text, "images": [b64(p) for p in photos]}], **body}  # fmt: skip
    with client.stream("POST", "/api/chat", json=payload) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
        assert response.status_code == 200, lines
    return lines
