"""The transformers engine: Hugging Face checkpoint folders of the supported VLM families.

A model is a folder as ``save_pretrained`` writes it (config.json, safetensors weights, the
processor's and tokenizer's files with the chat template), registered with
``imgscribe create NAME --from FOLDER`` (:func:`imgscribe.store.importer.create_from_path`).

Manifest ``engine_settings`` (:class:`TransformersSettings`, all optional): ``device`` ("auto",
"cpu", "cuda", "cuda:1", "mps"), ``dtype`` ("auto", "float32", "bfloat16", "float16"). Manifest
``parameters``: default options by Ollama's names (``temperature``, ``num_predict``...), which a
request's own options override.

This module stays light (no torch at import). What a checkpoint folder says about itself (its family,
its weights) is :mod:`imgscribe.formats.checkpoints`, which the store reads too.
"""

from __future__ import annotations

from ...formats.checkpoints import FAMILIES, Family, detect
from ...types import ModelManifest
from ..base import EngineSettings

__all__ = ["ENGINE", "FAMILIES", "Family", "TransformersEngine", "TransformersSettings", "detect"]


class TransformersSettings(EngineSettings):
    engine = "transformers"

    device: str | None = None  # "auto" (None), "cpu", "cuda", "cuda:1", "mps"
    dtype: str | None = None  # "auto" (None), "float32", "bfloat16", "float16"


class TransformersEngine:
    name = "transformers"
    settings = TransformersSettings

    def load(self, manifest: ModelManifest):
        from ...errors import EngineFailed
        from .loading import load
        from .runner import TransformersRunner

        path = manifest.files.get("model")
        if not path:
            raise EngineFailed(f"model '{manifest.name}' has no model folder in its manifest")
        settings = TransformersSettings.of(manifest)
        return TransformersRunner(manifest, load(path, device=settings.device, dtype=settings.dtype))


ENGINE = TransformersEngine()
