"""Model parameters that go on llama-server's command line (``runner.py``, ``slots.py``)."""

from __future__ import annotations

from ...errors import EngineFailed
from ...types import ModelManifest

DEFAULT_CTX = 4096  # tokens of context a slot has when the model's num_ctx does not say


def int_option(manifest: ModelManifest, name: str) -> int | None:
    """A model parameter that goes on llama-server's command line: an integer, or None when unset."""
    value = manifest.parameters.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise EngineFailed(f"model '{manifest.name}': parameter {name!r} must be an integer, got {value!r}")
    return int(value)
