"""Images as clients send them: base64 (Ollama), data URIs (OpenAI, and tolerated on Ollama's
routes too, where Ollama fails with "illegal base64 data"), or http(s) URLs fetched by
:mod:`.urls` when the server allows it.

A string is never read as a path on the server: a client must not be able to make the server read
its own files.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import Settings
from ..errors import InvalidImage
from ..images import decode_base64, intake
from ..types import Image
from .urls import UrlFetcher

# "file:", "javascript:", "ftp:"...: base64 has no ':', so a string that starts like this is a URL.
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")


class ImageReader:
    def __init__(self, cfg: Settings, fetcher: UrlFetcher | None = None):
        self.max_bytes = cfg.max_image_bytes
        self.max_pixels = cfg.max_image_pixels
        self.fetcher = fetcher or UrlFetcher.from_settings(cfg)

    def read(self, value: Any, where: str) -> Image:
        """One image from a base64 string, a data URI or a URL; ``where`` names it in errors."""
        if not isinstance(value, str):
            raise InvalidImage(f"{where}: expected a base64 string, got {type(value).__name__}")
        text = value.strip()
        scheme = _SCHEME.match(text)
        if scheme and scheme[1].lower() not in ("http", "https", "data"):
            raise InvalidImage(
                f"{where}: {scheme[1]}: URLs are not accepted: send the image as base64 or a data: URI "
                "(or an http(s) URL, where the server fetches URLs)"
            )
        try:
            if text[:8].lower().startswith(("http://", "https://")):
                data = self.fetcher.fetch(text)
            else:
                data = decode_base64(text, max_bytes=self.max_bytes)
            return intake(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels, source_name=where)
        except InvalidImage as exc:
            if str(exc).startswith(where) or f"'{where}'" in str(exc):
                raise
            raise type(exc)(f"{where}: {exc}") from None

    def read_all(self, values: list[Any] | None, where: str) -> list[Image]:
        return [self.read(v, f"{where}[{i}]") for i, v in enumerate(values or [])]
