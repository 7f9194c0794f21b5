"""What goes back over the wire: answers in Ollama's and OpenAI's dialects, and model descriptions.

A *dialect* turns a :class:`Chunk` stream into Ollama NDJSON objects or OpenAI SSE events; the routes
never build an answer dict themselves.

Compatibility rules the official clients depend on (``notes/anchors.md`` 3.1): every chat object has
``message.role``; metrics appear only on the final object and zero values are left out; no blank
lines in NDJSON; ``created_at`` is RFC 3339 in UTC; ``/api/show`` always has ``model_info``.

Two fields go beyond Ollama's, on the final object only: ``image_encode_duration`` (ns) and ``data``
(an engine's structured evidence, e.g. the builtin model's labels and OCR text).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import ImgscribeError
from ..scheduler import LoadedModel
from ..store import parse_name
from ..types import Chunk, ModelInfo, ModelManifest
from ..wire.ollama import metric_fields
from ..wire.openai import finish_reason, usage
from .errors import message_of, ollama_body, openai_body


def created_at() -> str:
    """RFC 3339 in UTC with fractional seconds, as Ollama writes it. The second's text is kept
    for the next calls within the same second (a stream writes one per chunk)."""
    global _second
    now = time.time()
    second, text = _second
    if int(now) != second:
        second = int(now)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)  # one tuple: every thread reads a matching pair
    return f"{text}.{int((now - second) * 1e6):06d}Z"


_second: tuple[int, str] = (-1, "")


def rfc3339(value: datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value or None


def dump(obj: Any) -> bytes:
    """Compact JSON, as Go writes it; numpy values from an engine's ``data`` become plain ones.
    orjson (a tenth of the standard module's time for a stream's small objects); what it refuses
    (integers beyond 64 bits, keys that are not strings) goes through the standard module; dates
    and dataclasses go to ``_plain`` as they did with it."""
    try:
        return orjson.dumps(obj, default=_plain, option=_ORJSON)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_plain).encode()


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    return tolist() if callable(tolist) else str(value)


class Ollama:
    """Ollama's NDJSON objects for ``/api/generate`` (``response``) and ``/api/chat`` (``message``)."""

    media_type = "application/x-ndjson"

    def __init__(self, model: str, kind: Literal["generate", "chat"]):
        self.model = model
        self.kind = kind

    def _object(self, text: str, done: bool) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.kind == "chat":
            obj["message"] = {"role": "assistant", "content": text}
        else:
            obj["response"] = text
        obj["done"] = done
        return obj

    def events(self, chunk: Chunk) -> list[dict[str, Any]]:
        """What one chunk becomes in a stream: nothing, a piece of text, and/or the final object."""
        out = [self._object(chunk.text, False)] if chunk.text else []
        if chunk.done:
            out.append(self.final(chunk, ""))
        return out

    def final(self, chunk: Chunk, text: str) -> dict[str, Any]:
        obj = self._object(text, True)
        obj["done_reason"] = chunk.done_reason or "stop"
        obj.update(metric_fields(chunk.metrics))
        if chunk.data:
            obj["data"] = chunk.data
        if chunk.images:  # imgscribe's: what each image became (clients ignore fields they do not know)
            obj["images"] = chunk.images
        return obj

    def whole(self, chunks: Iterable[Chunk]) -> dict[str, Any]:
        """The one object of ``stream: false``: the whole text with the final object's fields."""
        chunks = list(chunks)
        return self.final(chunks[-1], "".join(c.text for c in chunks))

    def load(self, reason: Literal["load", "unload"]) -> dict[str, Any]:
        obj = self._object("", True)
        obj["done_reason"] = reason
        return obj

    @staticmethod
    def error(exc: BaseException) -> dict[str, Any]:
        return ollama_body(exc)

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return dump(obj) + b"\n"

    end = b""


class OpenAI:
    """OpenAI chat completions: one ``chat.completion`` object, or ``chat.completion.chunk`` SSE."""

    media_type = "text/event-stream"
    end = b"data: [DONE]\n\n"

    id_prefix = "chatcmpl"

    def __init__(self, model: str, include_usage: bool = False):
        self.model = model
        self.include_usage = include_usage
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self._role_sent = False

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": "fp_imgscribe"}  # fmt: skip

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        obj = self._head("chat.completion.chunk")
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return obj

    def events(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = []
        if chunk.text or not self._role_sent:
            delta = {"role": "assistant", "content": chunk.text} if not self._role_sent else {"content": chunk.text}
            self._role_sent = True
            out.append(self._chunk(delta, None))
        if chunk.done:
            out.append(self._chunk({}, finish_reason(chunk.done_reason)))
            if self.include_usage:
                obj = self._head("chat.completion.chunk")
                obj["choices"] = []
                obj["usage"] = usage(chunk.metrics, chunk.images)
                out.append(obj)
        return out

    def whole(self, chunks: Iterable[Chunk]) -> dict[str, Any]:
        chunks = list(chunks)
        obj = self._head("chat.completion")
        obj["choices"] = [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(c.text for c in chunks)},
            "finish_reason": finish_reason(chunks[-1].done_reason),
        }]  # fmt: skip
        obj["usage"] = usage(chunks[-1].metrics, chunks[-1].images)
        return obj

    @staticmethod
    def error(exc: BaseException) -> dict[str, Any]:
        return openai_body(exc if isinstance(exc, ImgscribeError) else ImgscribeError(message_of(exc)))

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return b"data: " + dump(obj) + b"\n\n"


class Progress:
    """Ollama's status stream for ``pull`` and ``create``: ``{"status", "digest"?, "total"?,
    "completed"?}`` objects, ending with ``{"status": "success"}``."""

    media_type = Ollama.media_type
    end = b""
    error = staticmethod(Ollama.error)
    encode = staticmethod(Ollama.encode)

    @staticmethod
    def events(item: dict[str, Any]) -> list[dict[str, Any]]:
        return [item]

    @staticmethod
    def whole(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
        return list(items)[-1]


Dialect = Ollama | OpenAI | Progress


# -- models ------------------------------------------------------------------------------------------


def digest(info: ModelInfo) -> str:
    """The model's digest as Ollama gives it, bare hex (no ``sha256:``), or a stable one derived
    from its description. The store's digest does not depend on the name, so ``cp`` keeps it."""
    return (info.digest or hashlib.sha256(info.model_dump_json().encode()).hexdigest()).removeprefix("sha256:")


def modified_at(info: ModelInfo) -> str:
    """When the model was written (RFC 3339, UTC, ``Z``); for one that ships inside the package,
    when that was installed."""
    if info.modified_at:
        try:
            return rfc3339(datetime.fromisoformat(info.modified_at.replace("Z", "+00:00"))) or info.modified_at
        except ValueError:
            return info.modified_at
    installed = datetime.fromtimestamp(Path(__file__).stat().st_mtime, UTC)
    return rfc3339(installed) or ""


#: ``expires_at`` for a model kept forever (``keep_alive: -1``): as Ollama, now plus Go's largest
#: duration (about 292 years), never null, since typed clients expect a timestamp.
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)


def context_length(info: ModelInfo) -> int:
    """The context the model was made for: the importer's (a GGUF's ``<arch>.context_length``, a
    checkpoint's config) or its ``model_info`` key; 0 when unknown."""
    if info.context_length:
        return info.context_length
    for key, value in info.model_info.items():
        if key.endswith(".context_length") and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def details(info: ModelInfo) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": info.format or info.engine,
        "family": info.family or info.engine,
        "families": info.families or [info.family or info.engine],
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization_level,
    }


def tag(info: ModelInfo, available: int = 0) -> dict[str, Any]:
    """An ``/api/tags`` entry. ``imgscribe`` holds our whole description, for the imgscribe CLI and
    the web page, with ``memory``: what loading it needs and whether it fits the ``available`` RAM."""
    ours = info.model_dump(mode="json")
    ours["memory"] = memory_fit(info, available)
    return {
        "name": info.name,
        "model": info.name,
        "modified_at": modified_at(info),
        "size": info.size,
        "digest": digest(info),
        "details": details(info),
        "capabilities": info.capabilities,
        "imgscribe": ours,
    }


def memory_fit(info: ModelInfo, available: int) -> dict[str, Any] | None:
    """``{"needs", "available", "fits", "summary"}`` from imgscribe.memory's estimate; None when the
    engine needs none (builtin, remote) or the RAM is unknown."""
    from ..memory import estimate_manifest

    est = estimate_manifest(ModelManifest(name=info.name, engine=info.engine, info=info))
    if est is None:
        return None
    return {"needs": est.total, "available": available or None, "fits": est.total <= available if available else None,
            "summary": est.summary()}  # fmt: skip


def show(manifest: ModelManifest) -> dict[str, Any]:
    """``/api/show``: ``capabilities`` (with ``vision``, which the ``ollama`` CLI looks for before it
    attaches images) and ``model_info`` (the Python client requires the key)."""
    info = manifest.info
    arch = info.family or info.engine
    model_info: dict[str, Any] = {"general.architecture": arch, "general.basename": info.name.split(":")[0]}
    model_info.update(info.model_info)
    arch = str(model_info.get("general.architecture") or arch)
    if context_length(info) and not model_info.get(f"{arch}.context_length"):
        model_info[f"{arch}.context_length"] = context_length(info)
    from ..store.modelfile import parameters_text, to_modelfile

    template = manifest.template  # the engine's settings are never shown: they are not options
    shown = {
        "license": info.license,
        "modelfile": to_modelfile(manifest),
        "parameters": parameters_text(manifest.parameters),
        "template": template,
        "system": manifest.system,
        "messages": list(manifest.messages),
        "details": details(info),
        "model_info": model_info,
        "capabilities": info.capabilities,
        "modified_at": modified_at(info),
        "imgscribe": info.model_dump(mode="json"),
    }
    projector = projector_info(manifest)
    if projector:
        shown["projector_info"] = projector
    return shown


def projector_info(manifest: ModelManifest) -> dict[str, Any]:
    """A GGUF projector's metadata (``clip.*``), as Ollama's ``projector_info``; empty without one."""
    path = manifest.files.get("projector")
    if not path or not Path(path).is_file():
        return {}
    from ..formats.gguf import read_gguf

    try:
        head = read_gguf(path)
    except ImgscribeError:
        return {}
    return {k: v for k, v in head.metadata.items() if isinstance(v, (bool, int, float, str))
            and (k.startswith("clip.") or k == "general.architecture")}  # fmt: skip


def running(row: LoadedModel) -> dict[str, Any]:
    """An ``/api/ps`` entry; ``expires_at`` for a model kept forever is far in the future, as Ollama's."""
    info = row.info
    expires = row.expires_at or datetime.now(UTC) + FOREVER
    return {
        "name": info.name,
        "model": info.name,
        "size": row.memory,
        "digest": digest(info),
        "details": details(info),
        "expires_at": rfc3339(expires),
        "size_vram": 0,
        "context_length": context_length(info),
    }


def openai_model(info: ModelInfo) -> dict[str, Any]:
    try:
        created = int(datetime.fromisoformat(modified_at(info).replace("Z", "+00:00")).timestamp())
    except ValueError:
        created = 0
    return {"id": info.name, "object": "model", "created": created, "owned_by": parse_name(info.name).namespace}
