"""The transformers engine: Hugging Face checkpoint folders of the supported VLM families.

A model is a folder as ``save_pretrained`` writes it (config.json, safetensors weights, the
processor's and tokenizer's files with the chat template), registered with
``imgscribe create NAME --from FOLDER`` (:func:`imgscribe.store.importer.create_from_path`).

Manifest parameters (all optional): ``device`` ("auto", "cpu", "cuda", "cuda:1", "mps"), ``dtype``
("auto", "float32", "bfloat16", "float16"), and default options by Ollama's names (``temperature``,
``num_predict``...), which a request's own options override.

This module stays light (no torch at import): :mod:`.families` is what the store's importer reads.
"""

from __future__ import annotations

from ...types import ModelManifest
from .families import FAMILIES, Family, detect

__all__ = ["ENGINE", "FAMILIES", "Family", "TransformersEngine", "detect"]


class TransformersEngine:
    name = "transformers"

    def load(self, manifest: ModelManifest):
        from ...errors import EngineFailed
        from .loading import load
        from .runner import TransformersRunner

        path = manifest.files.get("model")
        if not path:
            raise EngineFailed(f"model '{manifest.name}' has no model folder in its manifest")
        return TransformersRunner(manifest, load(path, manifest.parameters))


ENGINE = TransformersEngine()
