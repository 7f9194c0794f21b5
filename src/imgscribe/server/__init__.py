"""The HTTP server: Ollama's API and an OpenAI-compatible one over the same scheduler."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
