"""The one internal language every front door speaks (see docs/architecture.md).

Front doors turn their input into a :class:`ChatRequest`; runners answer with a stream of
:class:`Chunk`. This module imports nothing else from the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: File name extensions taken as images when scanning folders or prompts (content still decides).
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif")

Role = Literal["system", "user", "assistant", "tool"]
# "json", a JSON-schema object, or None for free text.
Format = Literal["json"] | dict[str, Any] | None


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


@dataclass
class Message:
    role: Role
    content: str = ""
    images: list[Image] = field(default_factory=list)


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    options: Options = field(default_factory=Options)
    format: Format = None
    keep_alive: float | None = None  # seconds; None = the default, negative = forever, 0 = unload after
    stream: bool = True
    think: bool | str | None = None

    @property
    def images(self) -> list[Image]:
        return [img for m in self.messages for img in m.images]


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

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities


class ModelManifest(BaseModel):
    """Everything an engine needs to load a model: produced by the store, consumed by ``Engine.load``."""

    name: str
    engine: str
    files: dict[str, str] = Field(default_factory=dict)  # role ("model", "projector", ...) -> path
    parameters: dict[str, Any] = Field(default_factory=dict)  # default options, engine settings
    system: str = ""
    info: ModelInfo
