"""Every setting and its default, in one table (:data:`TABLE`). The only module that reads the
environment.

Settings are read afresh by :func:`settings` (cheap), so a test or a long-lived server sees the
environment it was started with, and nothing caches a stale value at import time. A bad value is a
:class:`ConfigError` that names the variable and what it accepts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ImgscribeError

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


#: llama-server's slots for a model whose manifest does not say, when ``IMGSCRIBE_NUM_PARALLEL`` is 0
PARALLEL_WHEN_UNSET = 4


def parallel_slots(num_parallel: int, engine_limit: int | None = None) -> int:
    """What ``IMGSCRIBE_NUM_PARALLEL`` (``num_parallel``) means, in one place: how many requests a
    loaded model serves at once. ``engine_limit``: how many its runner can take (None: the engine
    asks how many slots to open); ``num_parallel`` 0 means as many as the engine allows
    (:data:`PARALLEL_WHEN_UNSET` when it asks), else at most ``num_parallel``."""
    if engine_limit is None:
        return num_parallel if num_parallel > 0 else PARALLEL_WHEN_UNSET
    return max(1, min(engine_limit, num_parallel) if num_parallel > 0 else engine_limit)


def named_variable(name: str) -> str:
    """The value of an environment variable the server's owner named in a model's settings (the
    API key of a remote model, ``api_key_env``); empty when unset."""
    return os.environ.get(name, "")


class ConfigError(ImgscribeError):
    """A setting has a value it does not accept: a usage error (exit 2) naming the variable."""

    exit_code = 2


# -- value parsers: each takes the variable's text (never empty) and says what it accepts ----------


def _text(raw: str) -> str:
    return raw


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError(f"below {minimum}")
        return value

    parse.accepts = f"a whole number, {minimum} or more"  # type: ignore[attr-defined]
    return parse


def _tokens_or_auto(raw: str) -> int:
    if raw.strip().lower() == "auto":
        return 0
    return _whole(1)(raw)


_tokens_or_auto.accepts = "`auto` or a whole number, 1 or more"  # type: ignore[attr-defined]


def _seconds(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("not a positive number")
    return value


def _duration(raw: str) -> float:
    value = parse_duration(raw)
    assert value is not None
    return value


def _flag(raw: str) -> bool:
    word = raw.lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(word)


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _folders(raw: str) -> tuple[Path, ...]:
    return tuple(Path(part).expanduser().resolve() for part in _list(raw))


def _folder(raw: str) -> Path:
    return Path(raw).expanduser()


def _base_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(raw)
    return raw.rstrip("/")


_text.accepts = "any text"  # type: ignore[attr-defined]
_seconds.accepts = "a number of seconds above 0"  # type: ignore[attr-defined]
_duration.accepts = "seconds or a duration like '5m', '1h30m'; negative means forever"  # type: ignore[attr-defined]
_flag.accepts = "1, true, yes, on or 0, false, no, off"  # type: ignore[attr-defined]
_list.accepts = "a comma-separated list"  # type: ignore[attr-defined]
_folders.accepts = "a comma-separated list of folders"  # type: ignore[attr-defined]
_folder.accepts = "a folder"  # type: ignore[attr-defined]
_base_url.accepts = "an http(s) URL"  # type: ignore[attr-defined]
parse_host.accepts = "host:port or http://host:port, e.g. 127.0.0.1:11434 or 0.0.0.0"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Setting:
    """One row of :data:`TABLE`: an environment variable, how it is read, and what it means."""

    name: str
    field: str  # the :class:`Settings` attribute it fills
    parse: Callable[[str], Any]
    default: str  # as it would be written in the environment; "" means unset
    help: str
    also: str = ""  # another variable read when this one is unset (HF_TOKEN...)
    why: str = ""  # a sentence ``serve --help`` adds: why the default is what it is

    @property
    def accepts(self) -> str:
        return getattr(self.parse, "accepts", "a valid value")


_HOME_MODELS = "~/.imgscribe/models"

#: Every setting: the one table ``Settings`` is built from, ``imgscribe serve --help`` prints and
#: the README's settings table is checked against.
TABLE: tuple[Setting, ...] = (
    Setting("IMGSCRIBE_HOST", "host", parse_host, "127.0.0.1:11434", "server address, parsed like OLLAMA_HOST"),
    Setting("IMGSCRIBE_MODELS", "models_dir", _folder, _HOME_MODELS, "model store"),
    Setting("IMGSCRIBE_KEEP_ALIVE", "keep_alive", _duration, "5m", "how long a model stays loaded after use"),
    Setting("IMGSCRIBE_MAX_LOADED_MODELS", "max_loaded_models", _whole(1), "3", "models loaded at once"),
    Setting("IMGSCRIBE_NUM_PARALLEL", "num_parallel", _whole(0), "1",
            "requests served at once per model (0: the engine's choice)",
            why="The server keeps 1, Ollama's default, because each llama-server slot holds num_ctx tokens "
                "of KV cache in memory for the whole time the model is loaded; `imgscribe describe` in "
                "process opens as many slots as the memory allows by itself."),
    Setting("IMGSCRIBE_MAX_QUEUE", "max_queue", _whole(0), "512", "queued requests before `503 server busy`"),
    Setting("IMGSCRIBE_API_KEY", "api_key", _text, "",
            "a key every request must send (`Authorization: Bearer KEY`, or `x-api-key`); / and /health excepted"),
    Setting("IMGSCRIBE_ORIGINS", "origins", _list, "",
            "extra browser origins allowed (comma-separated, `*` wildcards), beyond this machine's, "
            "like `OLLAMA_ORIGINS`; any other origin gets 403"),
    Setting("IMGSCRIBE_REMOTES", "remotes", _list, "",
            "servers that `/api/create` may register as remote models (`host[:port]` or a base URL, "
            "comma-separated; `*` wildcards), like `OLLAMA_REMOTES`; the local CLI may register any"),
    Setting("IMGSCRIBE_REMOTE_KEYS", "remote_keys", _list, "",
            "environment variables that `/api/create` may name as a remote model's `api_key_env`"),
    Setting("IMGSCRIBE_IMPORT_ROOTS", "import_roots", _folders, "",
            "folders whose files `/api/create` may register by path (`from`, `mmproj`); the local CLI "
            "registers any file"),
    Setting("IMGSCRIBE_MAX_BLOB_BYTES", "max_blob_bytes", _whole(0), str(200_000 * MB),
            "largest model file `POST /api/blobs` accepts (413 over it; 0: no limit); an upload must also "
            "average 1 MB/s once `IMGSCRIBE_BODY_TIMEOUT` has passed"),
    Setting("IMGSCRIBE_MAX_IMAGE_BYTES", "max_image_bytes", _whole(0), str(100 * MB), "largest image file accepted"),
    Setting("IMGSCRIBE_MAX_IMAGE_PIXELS", "max_image_pixels", _whole(0), str(50 * MB),
            "largest image accepted, in pixels"),
    Setting("IMGSCRIBE_MAX_REQUEST_IMAGES", "max_request_images", _whole(0), "32", "images in one request"),
    Setting("IMGSCRIBE_MAX_REQUEST_PIXELS", "max_request_pixels", _whole(0), str(100 * MB),
            "pixels of all the images in one request together"),
    Setting("IMGSCRIBE_DECODE_PIXELS", "decode_pixels", _whole(0), str(200 * MB),
            "pixels being decoded or held at once, all requests together; more waits its turn "
            "(503 when the queue is full)"),
    Setting("IMGSCRIBE_IMAGE_MAX_TOKENS", "image_max_tokens", _tokens_or_auto, "auto",
            "prompt tokens one image may cost; a larger one is scaled down to fit (a request's `image_max_tokens` "
            "option wins); `auto`: 1024 on a CPU, the model's own maximum on a GPU"),
    Setting("IMGSCRIBE_BODY_TIMEOUT", "body_timeout", _seconds, "120",
            "seconds a client has to send a whole request body (408 after)"),
    Setting("IMGSCRIBE_HEADER_TIMEOUT", "header_timeout", _seconds, "10",
            "seconds a client has to send a request's headers (the connection is closed after)"),
    Setting("IMGSCRIBE_ALLOW_URLS", "allow_urls", _flag, "off",
            "let the server fetch `http(s)` image URLs (SSRF-guarded)"),
    Setting("IMGSCRIBE_ALLOW_PRIVATE_URLS", "allow_private_urls", _flag, "off",
            "with URLs on, also allow loopback and private addresses"),
    Setting("IMGSCRIBE_URL_TIMEOUT", "url_timeout", _seconds, "20", "seconds allowed for fetching one image URL"),
    Setting("IMGSCRIBE_HF_ENDPOINT", "hf_endpoint", _base_url, "https://huggingface.co",
            "Hugging Face Hub for `hf.co/...` pulls", also="HF_ENDPOINT"),
    Setting("IMGSCRIBE_HF_TOKEN", "hf_token", _text, "", "token for gated or private repos", also="HF_TOKEN"),
    Setting("IMGSCRIBE_RAY_ADDRESS", "ray_address", _text, "",
            "the Ray cluster `describe --ray` joins (default: a private local one)", also="RAY_ADDRESS"),
    Setting("IMGSCRIBE_IGNORE_MEMORY", "ignore_memory", _flag, "off",
            "load a model even when the memory estimate says it will not fit"),
    Setting("IMGSCRIBE_LLAMA_SERVER", "llama_server", _text, "",
            "an existing `llama-server` binary (default: built by `scripts/build-llama-server.sh`)"),
    Setting("IMGSCRIBE_DEBUG", "debug", _flag, "off", "verbose logs"),
)


@dataclass(frozen=True)
class Settings:
    host: HostAddress
    models_dir: Path
    keep_alive: float  # seconds; math.inf = forever
    max_loaded_models: int
    num_parallel: int
    max_queue: int
    api_key: str
    origins: tuple[str, ...]
    remotes: tuple[str, ...]
    remote_keys: tuple[str, ...]
    import_roots: tuple[Path, ...]
    max_blob_bytes: int  # 0: no limit
    max_image_bytes: int
    max_image_pixels: int
    max_request_images: int
    max_request_pixels: int
    decode_pixels: int
    image_max_tokens: int  # 0: auto (engines/image_budget.py)
    body_timeout: float
    header_timeout: float
    allow_urls: bool
    allow_private_urls: bool
    url_timeout: float
    hf_endpoint: str  # where hf.co/... names are pulled from
    hf_token: str  # for gated and private Hugging Face repositories
    ray_address: str  # the Ray cluster to join; empty: a private local instance
    ignore_memory: bool  # load even when the memory estimate says it will not fit
    llama_server: str
    debug: bool


def _value(row: Setting, env: Mapping[str, str]) -> Any:
    raw = env.get(row.name, "").strip() or (env.get(row.also, "").strip() if row.also else "")
    if not raw:
        return row.parse(row.default) if row.default else _empty(row)
    try:
        return row.parse(raw)
    except (ValueError, OverflowError):
        raise ConfigError(f"{row.name}={raw!r} is not valid: it accepts {row.accepts}") from None


def _empty(row: Setting) -> Any:
    """The value of a setting that is unset and has no default: empty text, an empty list."""
    return () if row.parse in (_list, _folders) else ""


#: this process's overrides (:func:`configure`), by field: what every ``settings()`` of the
#: process environment applies
_overrides: dict[str, Any] = {}


def settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings from ``env`` (default: this process's environment, with :func:`configure`'s
    overrides over it), with ``overrides`` (a command's flags, by field name) over them.
    ConfigError names a variable with a bad value."""
    process = env is None
    env = os.environ if env is None else env
    values = {row.field: _value(row, env) for row in TABLE}
    return Settings(**{**values, **(_overrides if process else {}), **overrides})


def configure(**overrides: Any) -> None:
    """Overrides (a command's flags, by :class:`Settings` field) for this process: every
    ``settings()`` of the environment (the schedulers, the engines) sees them. The CLI's
    ``--force`` is ``configure(ignore_memory=True)``; None takes an override back (the
    environment's value counts again). Nothing is written to the environment."""
    unknown = set(overrides) - set(Settings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
    for name, value in overrides.items():
        if value is None:
            _overrides.pop(name, None)
        else:
            _overrides[name] = value


def process_settings() -> Settings:
    """This process's settings: the environment's, with :func:`configure`'s overrides over them."""
    return settings()


def chosen(field: str) -> bool:
    """Whether the user chose this setting: its variable is set (not empty), or a command's
    override (:func:`configure`) is in force; False when it has its default."""
    if field in _overrides:
        return True
    row = next((r for r in TABLE if r.field == field), None)
    if row is None:
        raise TypeError(f"not a setting: {field}")
    return bool(os.environ.get(row.name, "").strip() or (row.also and os.environ.get(row.also, "").strip()))


def help_table() -> str:
    """The settings as ``imgscribe serve --help`` prints them."""
    width = max(len(row.name) for row in TABLE)
    lines = []
    for row in TABLE:
        default = row.default or "unset"
        why = f" {row.why}" if row.why else ""
        lines.append(f"  {row.name:<{width}}  {row.help} (default: {default}; {row.accepts}).{why}")
    return "\n".join(lines)
