"""What comes over the wire: Ollama's and OpenAI's request bodies, validated into plain values
(``Options``, a ``Format``, keep-alive seconds) with messages a person can act on.

Bodies are parsed by hand rather than by FastAPI, so that every mistake is a 400 with one clear
sentence (FastAPI would answer 422 with a list), as Ollama answers.
"""

from __future__ import annotations

import json
import logging
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import parse_duration
from ..errors import InvalidRequest
from ..types import Format, Options

log = logging.getLogger("imgscribe.server")


# -- requests -------------------------------------------------------------------------------------


class Body(BaseModel):
    """A request body: unknown fields are ignored, as Ollama ignores them."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def parse(cls, raw: bytes) -> Body:
        if not raw.strip():
            raise InvalidRequest("missing request body")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"invalid JSON in the request body: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the request body must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"invalid request: {where}: {err['msg']}"


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
            "format": parse_format(self.format),
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
    files: dict[str, str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    stream: bool | None = None
    # imgscribe: ``from`` may be an absolute path on the server (a checkpoint folder or a GGUF),
    # with the GGUF's projector here; or ``remote`` names another server's model.
    mmproj: str | None = None
    remote: str | None = None
    remote_model: str | None = None
    api: str | None = None
    api_key_env: str | None = None


class ImageUrl(Body):
    url: str


class ContentPart(Body):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None


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
    messages: list[OpenAIMessage] = []
    stream: bool = False
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


# -- fields -----------------------------------------------------------------------------------------


def require_model(name: str) -> str:
    if not name or not name.strip():
        raise InvalidRequest("model is required")
    return name


def parse_format(value: Any) -> Format:
    """``"json"``, a JSON-schema object, or nothing (``""``/null), as Ollama accepts."""
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        try:
            validator_for(value).check_schema(value)
        except SchemaError as exc:
            raise InvalidRequest(f"invalid format: not a valid JSON Schema: {exc.message}") from None
        return value
    raise InvalidRequest(f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object')


def parse_keep_alive(value: Any) -> float | None:
    """Seconds (``math.inf`` for a negative value: forever), from a number or a duration string."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise InvalidRequest(
            f"keep_alive: unsupported type {type(value).__name__}: use seconds or a duration like '5m'"
        )
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"keep_alive: {exc}") from None


def parse_options(value: Any) -> Options:
    """Ollama's ``options``: unknown keys are ignored (and logged), wrong types are a 400."""
    if value is None:
        return Options()
    if not isinstance(value, dict):
        raise InvalidRequest("options must be a JSON object")
    fields = Options.model_fields
    unknown = sorted(k for k in value if k not in fields)
    if unknown:
        log.info("ignoring options this server does not use: %s", ", ".join(unknown))
    known = {k: v for k, v in value.items() if k in fields and v is not None}
    if isinstance(known.get("stop"), str):
        known["stop"] = [known["stop"]]
    try:
        return Options.model_validate(known)
    except ValidationError as exc:
        name = str(exc.errors()[0]["loc"][0])
        raise InvalidRequest(f'option "{name}" must be of type {_type_name(name)}') from None


def _type_name(option: str) -> str:
    kinds = get_args(Options.model_fields[option].annotation)
    if int in kinds:
        return "integer"
    if float in kinds:
        return "float"
    return "array of strings"


def check_think(value: bool | str | None) -> None:
    if isinstance(value, str) and value not in ("low", "medium", "high", "max"):
        raise InvalidRequest(f'invalid think value {value!r}: use true, false, "low", "medium" or "high"')


def check_top_logprobs(value: int | None) -> None:
    if value is not None and not 0 <= value <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20")
