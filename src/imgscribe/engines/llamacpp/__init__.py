"""The llamacpp engine: a GGUF model and its mmproj projector, served by a ``llama-server`` child
process per loaded model (as Ollama does).

- :mod:`.binary`  finds ``llama-server`` (``IMGSCRIBE_LLAMA_SERVER`` or the cached build of
  ``scripts/build-llama-server.sh``), ``llama-quantize`` and llama.cpp's converter;
- :mod:`.process` starts, watches and stops the child (no orphans);
- :mod:`.runner`  turns a ChatRequest into llama-server requests and its answers into Chunks;
- :mod:`.convert` makes GGUF + mmproj from a Hugging Face checkpoint with llama.cpp's converter.
"""

from __future__ import annotations

from .runner import LlamaCppEngine, LlamaCppRunner

ENGINE = LlamaCppEngine()

__all__ = ["ENGINE", "LlamaCppEngine", "LlamaCppRunner"]
