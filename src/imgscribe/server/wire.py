"""What comes over the wire: Ollama's and OpenAI's request bodies, validated into plain values
(``Options``, a ``Format``, keep-alive seconds) with messages a person can act on.

Bodies are parsed by hand rather than by FastAPI, so that every mistake is a 400 with one clear
sentence (FastAPI would answer 422 with a list), as Ollama answers.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import parse_duration
from ..errors import InvalidRequest
from ..types import check_format, check_option, check_think, json_type, options_from, MODEL_PARAMETERS, ModelParameters, Options

log = logging.getLogger("imgscribe.server")


# -- requests -------------------------------------------------------------------------------------


# JSON deeper than this is refused: no real request comes near it, and a deep one would exhaust
# the stack of whatever walks it (the JSON decoder, pydantic, jsonschema).
MAX_DEPTH = 64


class Body(BaseModel):
    """A request body: unknown fields are ignored, as Ollama ignores them. Types are strict, as Go's
    decoder is: ``"stream": "yes"`` or ``"seed": true`` is a 400, not a guess."""

    model_config = ConfigDict(extra="ignore", strict=True)

    @classmethod
    def parse(cls, raw: bytes) -> Body:
        data = load_json(raw)
        if not isinstance(data, dict):
            raise InvalidRequest(f"the request body must be a JSON object, not {json_type(data)}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc, data)) from None


def load_json(raw: bytes) -> Any:
    """The body as JSON: UTF-8 only, no NaN or Infinity, at most :data:`MAX_DEPTH` deep; lone
    UTF-16 surrogates (``"\\ud800"``) become U+FFFD, as Go's decoder (so Ollama) makes them."""
    if not raw.strip():
        raise InvalidRequest("missing request body")
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some Windows tools write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the request body is not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start}): send JSON in UTF-8"
        ) from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON in the request body: {exc}") from None
    except ValueError:  # Python refuses to read an integer of more than 4,300 digits
        raise InvalidRequest("invalid JSON in the request body: a number has too many digits") from None
    except RecursionError:
        raise _too_deep() from None
    return _clean(data, 0)


def _no_constant(name: str) -> Any:
    raise InvalidRequest(f"invalid JSON in the request body: {name} is not a JSON value")


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"invalid JSON in the request body: nested more than {MAX_DEPTH} levels deep")


def _clean(value: Any, depth: int) -> Any:
    """``value`` with lone surrogates replaced; InvalidRequest when it nests too deep or holds a
    number no float can hold."""
    if depth > MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, str):
        return _unsurrogate(value)
    if isinstance(value, float) and not math.isfinite(value):  # 1e400 parses as inf
        raise InvalidRequest("invalid JSON in the request body: a number is too large for a 64-bit float")
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_unsurrogate(k): _clean(v, depth + 1) for k, v in value.items()}
    return value


def _unsurrogate(text: str) -> str:
    if text.isascii():  # O(1) in CPython (a flag on the string): a base64 image is never walked
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def validation_message(exc: ValidationError, data: Any = None) -> str:
    """One sentence for the deepest mistake, its place written as in the request
    (``messages[0].content[1].image_url.url``), in JSON's words, with what was sent instead."""
    errors = [(_where(err, data), err) for err in exc.errors()]
    depth = max(len(where) for where, _ in errors)
    deepest = [(where, err) for where, err in errors if len(where) == depth]
    where, err = deepest[0]
    wanted = list(dict.fromkeys(_json_words(e["msg"]).removeprefix("Input should be ") for _, e in deepest))
    if len(wanted) > 1 and all(e["msg"].startswith("Input should be ") for _, e in deepest):
        msg = "Input should be " + " or ".join(wanted)
    else:
        msg = _json_words(err["msg"])
    if err["type"] != "missing" and "input" in err:
        msg += f", got {_sent(err['input'])}"
    return f"invalid request: {_path(where) or 'body'}: {msg}"


def _json_words(msg: str) -> str:
    msg = re.sub(r"a valid dictionary( or instance of \w+)?", "an object", msg)
    return msg.replace("a valid list", "an array")


def _sent(value: Any) -> str:
    """What a client sent, for a message: a number itself, otherwise its JSON type."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(str(value)) <= 20:
        return str(value)
    return json_type(value)


def _where(err: dict, data: Any) -> list[str | int]:
    """The parts of the error's place that are really in the request: pydantic's ``loc`` also holds
    a union member's type (``content.str``) where the input matched none."""
    parts: list[str | int] = []
    loc = err["loc"]
    for i, key in enumerate(loc):
        if isinstance(data, dict) and isinstance(key, str) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        elif not (err["type"] == "missing" and i == len(loc) - 1):
            continue
        parts.append(key)
    return parts


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


class OllamaMessage(Body):
    role: str = "user"
    content: str | None = ""
    images: list[str] | None = None


class Answering(Body):
    """The fields ``/api/generate`` and ``/api/chat`` share."""

    model: str = ""
    stream: bool | None = None
    format: Any = None
    options: Any = None
    keep_alive: Any = None
    think: bool | str | None = None
    top_logprobs: int | None = None

    def settings(self) -> dict[str, Any]:
        """The shared fields, checked: keyword arguments for a ``ChatRequest``."""
        require_model(self.model)
        check_think(self.think)
        check_top_logprobs(self.top_logprobs)
        return {
            "options": parse_options(self.options),
            "format": check_format(self.format),  # here too, so a bad one is refused before any image is read
            "keep_alive": parse_keep_alive(self.keep_alive),
            "stream": self.stream is not False,  # Ollama streams unless told not to
            "think": self.think,
        }


class GenerateBody(Answering):
    prompt: str | None = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None


class ChatBody(Answering):
    messages: list[OllamaMessage] | None = None
    tools: list[Any] | None = None


class ModelBody(Body):
    """``show``, ``delete``, ``pull``: older clients send ``name`` instead of ``model``."""

    model: str = ""
    name: str = ""
    stream: bool | None = None
    insecure: bool | None = None

    @property
    def target(self) -> str:
        if not (self.model or self.name):
            raise InvalidRequest("model is required")
        return self.model or self.name


class CopyBody(Body):
    source: str = ""
    destination: str = ""


class CreateBody(Body):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = ""
    from_: str | None = Field(None, alias="from")
    files: dict[str, str] | None = None  # file name -> digest of a blob uploaded with POST /api/blobs
    adapters: dict[str, str] | None = None  # refused: no LoRA adapters here
    quantize: str | None = None  # refused: files are registered as they are
    system: str | None = None
    parameters: dict[str, Any] | None = None
    template: str | None = None
    messages: list[OllamaMessage] | None = None  # turns the model starts every conversation with
    license: str | list[str] | None = None
    stream: bool | None = None
    # imgscribe: ``from`` may be an absolute path on the server (a checkpoint folder or a GGUF),
    # with the GGUF's projector here; or ``remote`` names another server's model.
    mmproj: str | None = None
    remote: str | None = None
    remote_model: str | None = None
    api: str | None = None
    api_key: str | None = None  # the remote's key, stored with the manifest (never shown)
    api_key_env: str | None = None  # only a variable the owner listed in IMGSCRIBE_REMOTE_KEYS


class ImageUrl(Body):
    url: str


class ContentPart(Body):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None
    video_url: ImageUrl | str | None = None  # vLLM's extension: a clip, as a data URI (or a URL, where fetched)


class OpenAIMessage(Body):
    role: str
    content: str | list[ContentPart] | None = None


class ResponseFormat(Body):
    type: str = "text"
    json_schema: dict[str, Any] | None = None


class StreamOptions(Body):
    include_usage: bool = False


class CompletionBody(Body):
    model: str = ""
    messages: list[OpenAIMessage] | None = None
    stream: bool | None = False
    n: int | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    keep_alive: Any = None
    image_max_tokens: Any = None  # imgscribe's (extra_body): prompt tokens one image may cost
    video_max_tokens: Any = None  # imgscribe's (extra_body): prompt tokens one clip may cost, all its frames
    video_sampling: Any = None  # imgscribe's (extra_body): a clip's frames "uniform" (default) or at "scenes"


# -- fields -----------------------------------------------------------------------------------------


def require_model(name: str) -> str:
    if not name or not name.strip():
        raise InvalidRequest("model is required")
    return name


def parse_keep_alive(value: Any) -> float | None:
    """Seconds (``math.inf`` for a negative value: forever), from a number or a duration string."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise InvalidRequest(
            f"keep_alive: unsupported type {type(value).__name__}: use seconds or a duration like '5m'"
        )
    try:
        seconds = parse_duration(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"keep_alive: {exc}") from None
    if seconds is not None and math.isnan(seconds):
        raise InvalidRequest(f"keep_alive: invalid duration {value!r}: use seconds or a duration like '5m'")
    return seconds


def parse_options(value: Any) -> Options:
    """Ollama's ``options``: unknown keys are ignored (and logged), wrong types are a 400."""
    if value is None:
        return Options()
    if not isinstance(value, dict):
        raise InvalidRequest(f"options must be a JSON object, not {json_type(value)}")
    unknown = sorted(k for k in value if k not in Options.model_fields)
    if unknown:
        log.info("ignoring options this server does not use: %s", ", ".join(unknown))
    return options_from(value)


def model_parameters(values: dict[str, Any] | None) -> dict[str, Any]:
    """A model's default options (/api/create ``parameters``, a Modelfile's ``PARAMETER``), as the
    manifest keeps them: only the names of :data:`MODEL_PARAMETERS` (anything else, an engine setting
    above all, is a 400 naming it: Ollama's ``unknown parameter``), each of its type and within its
    range; nulls are left out."""
    values = values or {}
    for key in values:
        if key not in MODEL_PARAMETERS:
            raise InvalidRequest(
                f"unknown parameter '{key}': a model's parameters are Ollama's options (temperature, num_ctx, "
                "stop...); engine settings cannot be set by a request"
            )
    checked = {k: check_option(k, v) for k, v in values.items() if v is not None}
    try:
        ModelParameters.checked(checked)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return checked


def check_top_logprobs(value: int | None) -> None:
    if value is not None and not 0 <= value <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20")
