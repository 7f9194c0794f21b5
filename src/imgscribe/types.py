"""The one internal language every front door speaks (see docs/architecture.md).

Front doors turn their input into a :class:`ChatRequest`, whose constructor is the one check of a
request (roles, options, ``format``, ``think``): every door refuses the same bad input with the
same sentence, and engines trust what passes. Runners answer with a stream of :class:`Chunk`. This
module imports only :mod:`imgscribe.errors` from the package.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, get_args, get_origin

from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidRequest

#: File name extensions taken as images when scanning folders or prompts (content still decides).
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif")
#: File name extensions taken as video clips in prompts (imgscribe.video; content still decides).
VIDEO_EXTENSIONS = ("mp4", "m4v", "mov", "mkv", "webm", "avi")

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
THINK_LEVELS = ("low", "medium", "high", "max")
# "json", a JSON-schema object, or None for free text.
Format = Literal["json"] | dict[str, Any] | None


T_co = TypeVar("T_co", covariant=True)


class Stream(Protocol[T_co]):
    """An iterator that can be stopped early: ``close()`` ends the work behind it (a generation, a
    download). What a runner's and a client's ``chat`` return, and what the server's jobs read; a
    generator is one."""

    def __iter__(self) -> Iterator[T_co]: ...

    def __next__(self) -> T_co: ...

    def close(self) -> None: ...


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded, normalised image: RGB, upright, within limits, with facts about the original."""

    pil: PILImage.Image  # RGB, EXIF orientation applied, transparency flattened on white
    sha256: str  # of the original bytes, as received
    format: str  # detected from content: "JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"
    original_size: tuple[int, int]  # (width, height) before orientation
    byte_size: int
    data: bytes  # the original bytes (engines that take encoded images forward these)
    frames: tuple[PILImage.Image, ...] = ()  # every frame of an animation, when asked for
    source: str = ""  # a path or "<bytes>", for messages and batch output

    @property
    def size(self) -> tuple[int, int]:
        return self.pil.size


class Options(BaseModel):
    """Sampling and runtime options, with Ollama's names. Unknown keys are ignored, as Ollama does.

    Values outside their meaning (a negative temperature, top_p above 1) are refused here rather
    than by an engine halfway through a request; where Ollama gives a value a meaning (num_predict
    -1: no limit, -2: fill the context; num_ctx 0: the model's default) it is allowed."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(None, ge=0)
    seed: int | None = None
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    num_predict: int | None = Field(None, ge=-2)
    num_ctx: int | None = Field(None, ge=0)
    stop: list[str] | None = None
    repeat_penalty: float | None = Field(None, gt=0)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_thread: int | None = Field(None, ge=0)
    #: imgscribe's: prompt tokens one image may cost (engines/image_budget.py); and, for llama.cpp's
    #: dynamic-resolution projectors, the fewest (a load setting: llama-server's --image-min-tokens)
    image_max_tokens: int | None = Field(None, ge=0)
    image_min_tokens: int | None = Field(None, ge=0)
    #: imgscribe's: prompt tokens one video may cost, all its sampled frames together (video.py)
    video_max_tokens: int | None = Field(None, ge=0)
    #: imgscribe's: how a clip's frames are chosen: evenly spread, or at its scene changes (video.py)
    video_sampling: Literal["uniform", "scenes"] | None = None

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> Options:
        """Options from a user's values; ValueError names the first bad one in one sentence."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            err = exc.errors()[0]
            name = err["loc"][0] if err["loc"] else "options"
            got = f", got {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
            raise ValueError(f'option "{name}": {err["msg"]}{got}') from None


#: Ollama's option names (``api.Options`` and ``api.Runner`` in Ollama's ``api/types.go``, with the
#: older ones Ollama still accepts): what a request's ``options``, a Modelfile's ``PARAMETER`` and
#: /api/create's ``parameters`` may name.
OLLAMA_OPTIONS = frozenset({
    # sampling, set per request
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n",
    "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop",
    # the runner's, set when the model is loaded
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread",
    # older ones Ollama still accepts
    "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "numa", "low_vram",
    "f16_kv", "vocab_only", "use_mlock", "logits_all", "embedding_only",
})  # fmt: skip
#: imgscribe's own options: the image token budget (every engine), the fewest image tokens of
#: llama.cpp's dynamic-resolution projectors (Qwen2-VL...), and a video's token budget (all its frames).
IMGSCRIBE_OPTIONS = frozenset({"image_min_tokens", "image_max_tokens", "video_max_tokens", "video_sampling"})
#: The only keys of :attr:`ModelManifest.parameters` (a model's default options). An engine's own
#: settings (llama-server's slots, a remote's URL and headers...) are never among them: they live in
#: :attr:`ModelManifest.engine_settings`, which only importers and the store write.
MODEL_PARAMETERS = OLLAMA_OPTIONS | IMGSCRIBE_OPTIONS


class ModelParameters(Options):
    """Every option a model may default, typed: :class:`Options` (the ones engines use) and the rest
    of :data:`MODEL_PARAMETERS`. Any other key is refused."""

    model_config = ConfigDict(extra="forbid")

    num_keep: int | None = None
    typical_p: float | None = Field(None, ge=0, le=1)
    num_batch: int | None = Field(None, ge=0)
    num_gpu: int | None = Field(None, ge=-1)
    main_gpu: int | None = Field(None, ge=0)
    use_mmap: bool | None = None
    tfs_z: float | None = Field(None, ge=0)
    mirostat: int | None = Field(None, ge=0, le=2)
    mirostat_tau: float | None = Field(None, ge=0)
    mirostat_eta: float | None = Field(None, ge=0)
    penalize_newline: bool | None = None
    numa: bool | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    vocab_only: bool | None = None
    use_mlock: bool | None = None
    logits_all: bool | None = None
    embedding_only: bool | None = None


def check_model_parameters(values: Mapping[str, Any]) -> None:
    """``ValueError`` (one sentence naming the key) unless ``values`` are model parameters: only
    :data:`MODEL_PARAMETERS`, each of its type and within its range."""
    unknown = sorted(str(k) for k in values if k not in MODEL_PARAMETERS)
    if unknown:
        raise ValueError(
            f"unknown parameter '{unknown[0]}': a model's parameters are its default options "
            "(temperature, num_ctx, stop...), not engine settings"
        )
    ModelParameters.checked(values)


INT64 = (-(2**63), 2**63 - 1)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def check_int(name: str, value: int | None) -> None:
    """Integers an engine passes on (to torch, to llama-server) must fit in 64 bits."""
    if value is not None and not INT64[0] <= value <= INT64[1]:
        raise InvalidRequest(f"{name} is out of range: {value} does not fit in a 64-bit integer")


def check_option(name: str, value: Any) -> Any:
    """One option's value (a name of :data:`MODEL_PARAMETERS`), of the type Ollama checks: a number
    for a number (an integral one, within 64 bits, for an integer), strings for ``stop``; Ollama's
    messages. Its range is :class:`Options`'."""
    kinds = get_args(ModelParameters.model_fields[name].annotation)
    if bool in kinds:
        if not isinstance(value, bool):
            raise InvalidRequest(f'option "{name}" must be of type boolean, got {json_type(value)}')
    elif int in kinds:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f'option "{name}" must be of type integer, got {json_type(value)}')
        check_int(f'option "{name}"', value)
    elif float in kinds:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f'option "{name}" must be of type float, got {json_type(value)}')
        if isinstance(value, int) and abs(value) > 1e308:
            raise InvalidRequest(f'option "{name}" is out of range: too large for a float')
    elif any(get_origin(k) is Literal for k in kinds):  # one of a few words (video_sampling)
        if not isinstance(value, str):
            raise InvalidRequest(f'option "{name}" must be of type string, got {json_type(value)}')
    else:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidRequest(f'option "{name}" must be of type array of strings')
    return value


def options_from(values: Mapping[str, Any], *, unknown: Literal["ignore", "refuse"] = "ignore") -> Options:
    """A request's options, whichever door they came through: each of its type (:func:`check_option`)
    and within its range, with one sentence for the first that is not. Ollama's option names that no
    engine here uses are left out; other names are left out too, as Ollama's server ignores them, or
    refused (``unknown="refuse"``: a command line, where a name is a typing mistake)."""
    if unknown == "refuse":
        for key in values:
            if key not in MODEL_PARAMETERS:
                raise InvalidRequest(f"unknown option {key!r} (known: {', '.join(Options.model_fields)})")
    typed = {k: check_option(k, v) for k, v in values.items() if k in Options.model_fields and v is not None}
    try:
        return Options.checked(typed)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True, eq=False)
class Video:
    """A clip as sampled for a model (imgscribe.video): frames at ``timestamps`` (seconds), upright."""

    frames: list[Image]
    timestamps: list[float]
    duration: float  # seconds
    size: tuple[int, int]  # (width, height) of the clip as shown, upright
    source: str = ""  # a path or "<bytes>", for messages and batch output
    format: str = ""  # the container: "MP4", "WEBM", "GIF"...
    fps: float = 0.0  # the clip's own frame rate (0: unknown)
    sha256: str = ""  # of the original bytes
    tokens_per_frame: int = 0  # the share of the video token budget each frame was sized for


@dataclass
class Message:
    role: Role
    content: str = ""
    images: list[Image] = field(default_factory=list)
    #: clips: engines with native video take them as they are; every other gets them as frames
    #: (engines/frames.py turns them into images with their timestamps in the text)
    videos: list[Video] = field(default_factory=list)

    @classmethod
    def with_media(cls, role: Role, content: str, media: list[Image | Video]) -> Message:
        """A message holding ``media`` as read (images and clips in one list), each in its place."""
        return cls(role, content, [m for m in media if not isinstance(m, Video)], [m for m in media if isinstance(m, Video)])


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    options: Options = field(default_factory=Options)
    format: Format = None
    keep_alive: float | None = None  # seconds; None = the default, negative = forever, 0 = unload after
    stream: bool = True
    think: bool | str | None = None
    raw: bool = False  # /api/generate: the prompt as it is, no template
    template: str | None = None  # /api/generate: a Go template for this request instead of the model's

    def __post_init__(self) -> None:
        """The one check of a request, whichever door it came through (InvalidRequest, one sentence)."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequest("model is required")
        for i, message in enumerate(self.messages):
            check_role(message.role, i)
        if not isinstance(self.options, Options):
            self.options = options_from(self.options or {})
        self.format = check_format(self.format)
        check_think(self.think)

    @property
    def images(self) -> list[Image]:
        return [img for m in self.messages for img in m.images]

    @property
    def videos(self) -> list[Video]:
        return [v for m in self.messages for v in m.videos]

    def with_history(self, history: list[dict[str, str]]) -> ChatRequest:
        """The request after a model's MESSAGE history (Modelfile ``MESSAGE``, /api/create
        ``messages``): those turns first, then the request's own, as Ollama's chat handler orders them."""
        if not history or self.raw:
            return self
        past = [Message(str(m.get("role", "")), str(m.get("content", ""))) for m in history]
        return dataclasses.replace(self, messages=past + list(self.messages))


def check_role(role: str, index: int) -> Role:
    """A message's role, or InvalidRequest naming the message."""
    if role not in ROLES:
        raise InvalidRequest(f"messages[{index}].role: invalid role {role!r}: use system, user, assistant or tool")
    return role  # type: ignore[return-value]


def check_format(value: Any) -> Format:
    """``"json"``, a valid JSON Schema object, or nothing (``""``/None), as Ollama accepts."""
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
    import json

    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    raise InvalidRequest(f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


def check_think(value: bool | str | None) -> None:
    if isinstance(value, str) and value not in THINK_LEVELS:
        raise InvalidRequest(f'invalid think value {value!r}: use true, false, "low", "medium" or "high"')
    if value is not None and not isinstance(value, (bool, str)):
        raise InvalidRequest(f"invalid think value {value!r}: use true, false, \"low\", \"medium\" or \"high\"")


@dataclass
class Metrics:
    """Timings in nanoseconds and token counts, as Ollama reports them (plus image encoding)."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    image_encode_duration: int = 0


DoneReason = Literal["stop", "length", "load", "unload", "cancel"]


@dataclass
class Chunk:
    """A piece of an answer. The last chunk has ``done=True``, a reason, metrics and extra data."""

    text: str = ""
    done: bool = False
    done_reason: DoneReason | None = None
    metrics: Metrics | None = None
    data: dict[str, Any] | None = None  # structured evidence (builtin: labels, text, colours)
    #: per image of the request: {"original_size": [w, h], "size": [w, h], "tokens": n} (engines/image_budget.py)
    images: list[dict[str, Any]] | None = None


class ModelInfo(BaseModel):
    """What a model is and can do: shown by ``list``/``show`` and the API."""

    name: str
    engine: str
    family: str = ""
    families: list[str] = Field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""
    format: str = ""
    capabilities: list[str] = Field(default_factory=lambda: ["completion"])
    is_vlm: bool = True
    summary: str = ""
    description: str = ""  # long text for ``show``: what it can and cannot do
    context_length: int = 0
    size: int = 0  # bytes on disk
    digest: str = ""
    modified_at: str = ""  # RFC 3339
    license: str = ""
    model_info: dict[str, Any] = Field(default_factory=dict)
    #: why the store cannot load it (a file missing, or not the size its manifest records); set by ``list``
    damaged: str = ""
    # The most the model looks at on an image's long side, in pixels (0: everything). A server may
    # decode a much larger JPEG or WebP at 1/2, 1/4 or 1/8 of its size, never below this.
    max_image_side: int = Field(0, ge=0)

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities


#: The layout of :class:`ModelManifest` the store writes. 2: options in ``parameters``, the engine's
#: settings in ``engine_settings``, ``template`` its own field. A stored manifest without it was written
#: before (everything in ``parameters``) and is migrated when read (store/manifests.py).
MANIFEST_SCHEMA = 2


class ModelManifest(BaseModel):
    """Everything an engine needs to load a model: produced by the store, consumed by ``Engine.load``.

    ``parameters`` are the model's default options only (:data:`MODEL_PARAMETERS`, as a Modelfile's
    ``PARAMETER`` lines; a request's own options override them): any other key is refused.
    ``engine_settings`` are the engine's own (each engine's typed ``Settings``, which refuses what it
    does not know when the model loads); importers and the store write them, a request never does.
    """

    schema_version: int = MANIFEST_SCHEMA
    name: str
    engine: str
    files: dict[str, str] = Field(default_factory=dict)  # role ("model", "projector", ...) -> path
    parameters: dict[str, Any] = Field(default_factory=dict)  # default options (MODEL_PARAMETERS)
    engine_settings: dict[str, Any] = Field(default_factory=dict)  # the engine's Settings, by field name
    system: str = ""
    template: str = ""  # Ollama's Go template of a pulled model, shown by ``show`` (prompts use the GGUF's)
    #: a Modelfile's MESSAGE lines (/api/create ``messages``): ``{"role", "content"}``, shown by ``show``
    messages: list[dict[str, str]] = Field(default_factory=list)
    info: ModelInfo

    @field_validator("parameters")
    @classmethod
    def _options_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_model_parameters(value)
        return value
