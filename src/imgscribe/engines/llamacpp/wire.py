"""What goes over the wire to an OpenAI-style or Ollama-style server: messages with images,
options, response formats; and a streamed POST that a cancel event can cut off at any moment.

Shared by the llamacpp engine (its own ``llama-server`` child) and the remote engine.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image as PILImage

from ...errors import Cancelled, EngineFailed, InvalidRequest
from ...types import ChatRequest, Image, Message, Options

__all__ = [
    "StreamedPost",
    "data_uri",
    "get_json",
    "json_schema",
    "merged_options",
    "encode_image",
    "ollama_messages",
    "openai_messages",
    "openai_sampling",
    "response_format",
]

_PNG_MAX_PIXELS = 2_000_000  # larger re-encoded images go as JPEG (quality 95): PNG is slow to write


def encode_image(image: Image) -> tuple[bytes, str]:
    """The bytes to send for an image, and their MIME type.

    llama.cpp decodes with stb_image (JPEG, PNG, BMP, GIF...) and knows nothing of EXIF orientation,
    transparency or HEIC/WebP/AVIF/TIFF. The original bytes go as they are only when they would
    decode to exactly what intake produced (an upright RGB/grey JPEG or opaque RGB PNG); anything
    else is re-encoded from the normalised picture.
    """
    if image.format in ("JPEG", "PNG") and image.data and _forwardable(image):
        return image.data, "image/jpeg" if image.format == "JPEG" else "image/png"
    buf = io.BytesIO()
    pil = image.pil if image.pil.mode == "RGB" else image.pil.convert("RGB")
    if pil.size[0] * pil.size[1] <= _PNG_MAX_PIXELS:
        pil.save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), "image/png"
    pil.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), "image/jpeg"


def _forwardable(image: Image) -> bool:
    try:
        with PILImage.open(io.BytesIO(image.data)) as im:  # header only: cheap
            if im.size != image.size:
                return False  # rotated by its EXIF orientation
            if im.getexif().get(0x0112, 1) not in (0, 1):
                return False  # a flip keeps the size
            if image.format == "JPEG":
                return im.mode in ("RGB", "L")
            return im.mode in ("RGB", "L") and "transparency" not in im.info
    except Exception:  # noqa: BLE001 - when in doubt, re-encode
        return False


def data_uri(image: Image) -> str:
    data, mime = encode_image(image)
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _with_system(request: ChatRequest, system: str) -> list[Message]:
    messages = list(request.messages)
    if system and not any(m.role == "system" for m in messages):
        messages.insert(0, Message(role="system", content=system))
    return messages


def openai_messages(request: ChatRequest, system: str = "", image_url=None) -> list[dict[str, Any]]:
    """OpenAI chat messages; a message with images becomes content parts, images first (as Ollama
    places them before the text). ``image_url(image)`` makes each image's URL (default: a data URI)."""
    image_url = image_url or data_uri
    out: list[dict[str, Any]] = []
    for m in _with_system(request, system):
        if not m.images:
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url(img)}} for img in m.images]
        if m.content:
            parts.append({"type": "text", "text": m.content})
        out.append({"role": m.role, "content": parts})
    return out


def ollama_messages(request: ChatRequest, system: str = "") -> list[dict[str, Any]]:
    out = []
    for m in _with_system(request, system):
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            msg["images"] = [base64.b64encode(encode_image(img)[0]).decode() for img in m.images]
        out.append(msg)
    return out


def merged_options(request: ChatRequest, defaults: dict[str, Any]) -> Options:
    """The request's options over the model's defaults (a manifest's ``parameters``)."""
    known = {k: v for k, v in defaults.items() if k in Options.model_fields and v is not None}
    given = request.options.model_dump(exclude_none=True)
    return Options.model_validate({**known, **given})


# Ollama option -> llama-server field (llama-server also takes OpenAI's names for the shared ones).
_LLAMA_FIELDS = {
    "temperature": "temperature",
    "seed": "seed",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_OPENAI_FIELDS = ("temperature", "seed", "top_p", "presence_penalty", "frequency_penalty")


def openai_sampling(options: Options, *, llama: bool) -> dict[str, Any]:
    """Sampling fields for a chat-completions body. ``llama``: the server is llama-server, which
    takes every Ollama option (``top_k``, ``min_p``...); others get OpenAI's fields only."""
    body: dict[str, Any] = {}
    names = _LLAMA_FIELDS if llama else {k: k for k in _OPENAI_FIELDS}
    for key, field in names.items():
        value = getattr(options, key)
        if value is not None:
            body[field] = value
    if options.seed is not None and options.seed < 0:
        body.pop("seed", None)  # Ollama's -1 means random; llama-server's default is random too
    if options.num_predict is not None and options.num_predict >= 0:
        body["max_tokens"] = options.num_predict
    stops = [s for s in options.stop or [] if s]  # "" would match at once and end every answer empty
    if stops:
        body["stop"] = stops
    return body


def json_schema(format: Any) -> dict[str, Any] | None:
    """Ollama's ``format`` as a JSON schema ("json": any object)."""
    if format is None or format == "":
        return None
    if format == "json":
        return {"type": "object"}
    if isinstance(format, dict):
        return format
    raise InvalidRequest(f"unsupported format {format!r}: use \"json\" or a JSON schema object")


def response_format(format: Any) -> dict[str, Any] | None:
    """Ollama's ``format`` ("json" or a JSON schema) as OpenAI's ``response_format``."""
    if format is None or format == "":
        return None
    if format == "json":
        return {"type": "json_object"}
    if isinstance(format, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": format, "strict": True}}
    raise InvalidRequest(f"unsupported format {format!r}: use \"json\" or a JSON schema object")


class StreamedPost:
    """A streamed POST whose lines are read one by one. Setting ``cancel`` (from any thread) cuts
    the connection at once, at any stage: while connecting, while the server reads the prompt and
    sends nothing, or mid-answer. A server such as llama-server or Ollama stops working on a
    request whose client has gone.

    Built on :mod:`http.client` over a socket this object holds from the start, so another thread
    can ``shutdown()`` it: that wakes a blocked read, where closing it would not.
    """

    def __init__(self, url: str, body: dict[str, Any], cancel: threading.Event | None = None,
                 headers: dict[str, str] | None = None, connect_timeout: float = 10.0,
                 read_timeout: float | None = None):  # fmt: skip
        self.url = urlsplit(url)
        if self.url.scheme not in ("http", "https"):
            raise EngineFailed(f"unsupported URL {url!r}: use http:// or https://")
        self.body = json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson, text/event-stream, */*",
                        "User-Agent": "imgscribe", **(headers or {})}  # fmt: skip
        self.cancel = cancel or threading.Event()
        self.cancelled = False
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.status = 0
        self._done = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None

    def __enter__(self) -> StreamedPost:
        if self.cancel.is_set():
            raise Cancelled("request canceled")
        host, port = self.url.hostname or "127.0.0.1", self.url.port
        if self.url.scheme == "https":
            self._conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                                     context=ssl.create_default_context())  # fmt: skip
        else:
            self._conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        threading.Thread(target=self._watch, name="imgscribe-cancel", daemon=True).start()
        try:
            self._conn.connect()
            self._conn.sock.settimeout(self.read_timeout)
            if self.cancel.is_set():
                self._cut()
            path = self.url.path or "/"
            if self.url.query:
                path += "?" + self.url.query
            self._conn.request("POST", path, body=self.body, headers=self.headers)
            self._response = self._conn.getresponse()
            self.status = self._response.status
        except BaseException as exc:
            self.__exit__()
            if self.cancelled:
                raise Cancelled("request canceled") from None
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._conn is not None:
            self._conn.close()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.cancel.wait(0.05):
                if not self._done.is_set():
                    self._cut()
                return

    def abort(self) -> None:
        """Cut the connection now (from any thread), as a set ``cancel`` would."""
        self._cut()

    def _cut(self) -> None:
        self.cancelled = True
        sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass

    def error_text(self) -> str:
        """The body of an error response, as a message (OpenAI or Ollama shaped, or plain)."""
        assert self._response is not None
        try:
            raw = self._response.read(100_000).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            return f"HTTP {self.status}"
        try:
            data = json.loads(raw)
        except ValueError:
            return raw.strip()[:500] or f"HTTP {self.status}"
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)

    def lines(self) -> Iterator[str]:
        """The body's lines, without line ends. Raises ConnectionError when the connection breaks
        (the peer died, or ``cancel`` cut it: then ``cancelled`` is True)."""
        assert self._response is not None
        while True:
            try:
                raw = self._response.readline()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            if not raw:
                if self.cancelled:
                    raise ConnectionError("cut by cancel")
                return
            yield raw.decode("utf-8", "replace").rstrip("\r\n")

    def sse(self) -> Iterator[dict[str, Any]]:
        """The JSON objects of a server-sent-event stream, up to ``[DONE]``."""
        for line in self.lines():
            if not line.startswith("data:"):
                continue  # comments (": ping"), event names, blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield json.loads(data)

    def ndjson(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line.strip():
                yield json.loads(line)


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    """GET a JSON document (small requests: health, props, model lists)."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response.json()
