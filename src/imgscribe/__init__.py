"""imgscribe: describe and answer questions about images with local vision-language models."""

from __future__ import annotations

from .errors import (
    Busy,
    EngineFailed,
    ImageTooLarge,
    ImgscribeError,
    InvalidImage,
    InvalidRequest,
    ModelNotFound,
    Unsupported,
)

from .version import __version__ as __version__

__all__ = [
    "Busy",
    "EngineFailed",
    "ImageTooLarge",
    "ImgscribeError",
    "InvalidImage",
    "InvalidRequest",
    "ModelNotFound",
    "Result",
    "Unsupported",
    "ask",
    "chat",
    "describe",
    "intake",
]


def __getattr__(name: str):
    # The API pulls in Pillow and the scheduler; keep `import imgscribe` (and the CLI's start) light.
    if name in ("ask", "chat", "describe", "Result"):
        from . import api

        return getattr(api, name)
    if name == "intake":
        from .images import intake

        return intake
    raise AttributeError(f"module 'imgscribe' has no attribute {name!r}")
