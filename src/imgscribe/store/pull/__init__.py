"""``pull NAME``: from Ollama's registry, or ``hf.co/ORG/REPO[:QUANT]`` from the Hugging Face Hub.

:func:`pull` yields Ollama's progress objects, in Ollama's order::

    {"status": "pulling manifest"}
    {"status": "pulling <first 12 hex of digest>", "digest": "sha256:...", "total": N, "completed": n}  (many)
    {"status": "verifying sha256 digest"}
    {"status": "writing manifest"}
    {"status": "removing unused layers"}     (only when a new version replaced files of an old one)
    {"status": "success"}

Errors before the first object (no such model or tag, offline, refused) are raised on the first
``next()``, so a server can still answer them with their own status code. See ``download.py`` for
how files are fetched, ``ollama.py`` and ``hf.py`` for the two protocols.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ...errors import InvalidRequest
from ..names import parse_name
from .errors import DigestMismatch, DiskError, Offline, PullError

__all__ = ["DigestMismatch", "DiskError", "Offline", "PullError", "pull"]


def pull(store, name: str, insecure: bool = False, cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    text = name.strip() if isinstance(name, str) else name
    scheme = ""
    if isinstance(text, str) and "://" in text:
        scheme = text.split("://", 1)[0].lower()
    parsed = parse_name(text)  # also refuses names that could leave the store
    if parsed.short == "builtin:latest":
        yield {"status": "success"}  # it ships inside imgscribe
        return
    if scheme == "http" and not insecure:
        raise InvalidRequest(f"{name!r} asks for plain http: pass --insecure (or \"insecure\": true) to allow it")
    from .hf import HF_HOSTS

    if parsed.host in HF_HOSTS:
        from . import hf

        yield from hf.pull(store, parsed, text, cancel)
    else:
        from . import ollama

        yield from ollama.pull(store, parsed, text, insecure=insecure or scheme == "http", cancel=cancel)
