"""Every setting and its default. The only module that reads the environment.

Settings are read afresh by :func:`settings` (cheap), so a test or a long-lived server sees the
environment it was started with, and nothing caches a stale value at import time.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_PORT = 11434
MB = 1_000_000


@dataclass(frozen=True)
class HostAddress:
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def client_url(self) -> str:
        """Where a client connects: a wildcard bind address means this machine's loopback."""
        if self.host in ("0.0.0.0", "::", ""):
            return HostAddress(self.scheme, "127.0.0.1", self.port, self.path).url
        return self.url


def parse_host(value: str | None) -> HostAddress:
    """Parse a host the way Ollama parses ``OLLAMA_HOST``.

    No scheme: http and port 11434. ``http://x``: port 80. ``https://x``: port 443. A path is kept,
    IPv6 addresses go in brackets.
    """
    value = (value or "").strip()
    if not value:
        return HostAddress("http", "127.0.0.1", DEFAULT_PORT)
    scheme, default_port = "http", DEFAULT_PORT
    if "://" in value:
        scheme, _, rest = value.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"IMGSCRIBE_HOST: unsupported scheme {scheme!r} (use http or https)")
        default_port = 443 if scheme == "https" else 80
        value = rest
    if any(c.isspace() for c in value):
        raise ValueError(f"IMGSCRIBE_HOST: invalid address {value!r} (no spaces; e.g. 127.0.0.1:11434)")
    try:
        parts = urlsplit("//" + value)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise ValueError(f"IMGSCRIBE_HOST: invalid address {value!r} ({exc}; e.g. [::1]:11434)") from exc
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError(f"IMGSCRIBE_HOST: invalid port in {value!r}") from exc
    host = parts.hostname or "127.0.0.1"
    return HostAddress(scheme, host, port, parts.path.rstrip("/"))


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float | None) -> float | None:
    """Seconds from a number or a Go-style duration (``"5m"``, ``"1h30m"``, ``"-1"``).

    A negative value means "forever" and is returned as ``math.inf``. ``None`` stays ``None``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pieces = _DURATION.findall(text)
            if not pieces or "".join(n + u for n, u in pieces) != text.replace(" ", ""):
                raise ValueError(
                    f"invalid duration {value!r}: use seconds or a duration like '5m', '1h', '30s'"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in pieces)
    return math.inf if seconds < 0 else seconds


def named_variable(name: str) -> str:
    """The value of an environment variable a user named in a model's settings (e.g. the API key
    of a remote model, ``api_key_env``); empty when unset."""
    return os.environ.get(name, "")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _bool(name: str) -> bool:
    return _env(name).lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    host: HostAddress
    models_dir: Path
    keep_alive: float  # seconds; math.inf = forever
    max_loaded_models: int
    num_parallel: int
    max_queue: int
    max_image_bytes: int
    max_image_pixels: int
    allow_urls: bool
    allow_private_urls: bool
    url_timeout: float
    origins: tuple[str, ...]
    llama_server: str
    ignore_memory: bool  # load even when the memory estimate says it will not fit
    debug: bool
    hf_endpoint: str = "https://huggingface.co"  # where hf.co/... names are pulled from
    hf_token: str = ""  # for gated and private Hugging Face repositories


def settings() -> Settings:
    models = _env("IMGSCRIBE_MODELS") or str(Path.home() / ".imgscribe" / "models")
    keep_alive = parse_duration(_env("IMGSCRIBE_KEEP_ALIVE") or "5m")
    return Settings(
        host=parse_host(_env("IMGSCRIBE_HOST")),
        models_dir=Path(models).expanduser(),
        keep_alive=keep_alive if keep_alive is not None else 300.0,
        max_loaded_models=_int("IMGSCRIBE_MAX_LOADED_MODELS", 3),
        num_parallel=_int("IMGSCRIBE_NUM_PARALLEL", 1),
        max_queue=_int("IMGSCRIBE_MAX_QUEUE", 512),
        max_image_bytes=_int("IMGSCRIBE_MAX_IMAGE_BYTES", 100 * MB),
        max_image_pixels=_int("IMGSCRIBE_MAX_IMAGE_PIXELS", 50 * MB),
        allow_urls=_bool("IMGSCRIBE_ALLOW_URLS"),
        allow_private_urls=_bool("IMGSCRIBE_ALLOW_PRIVATE_URLS"),
        url_timeout=float(_env("IMGSCRIBE_URL_TIMEOUT") or 20),
        origins=tuple(o for o in _env("IMGSCRIBE_ORIGINS").split(",") if o),
        llama_server=_env("IMGSCRIBE_LLAMA_SERVER"),
        ignore_memory=_bool("IMGSCRIBE_IGNORE_MEMORY"),
        debug=_bool("IMGSCRIBE_DEBUG"),
        hf_endpoint=(_env("IMGSCRIBE_HF_ENDPOINT") or _env("HF_ENDPOINT") or "https://huggingface.co").rstrip("/"),
        hf_token=_env("IMGSCRIBE_HF_TOKEN") or _env("HF_TOKEN"),
    )
