"""Manifests: ``<root>/manifests/<host>/<namespace>/<model>/<tag>``, one JSON file per model name.

The file is written atomically, and last, so a model is listed only once everything it needs is in
place. It holds::

    {
      "schemaVersion": 2,
      "mediaType": "application/vnd.imgscribe.manifest.v1+json",
      "layers": [{"mediaType", "digest", "size", "role"?, "path"?}, ...],   # blobs it uses
      "source": {...},                                                      # where it came from
      "model": { a ModelManifest }
    }

``layers`` are the blobs the model keeps alive: ``rm`` frees a blob only when no other manifest lists
it. In ``model.files`` a relative path is inside the store (``blobs/sha256-...``,
``snapshots/<key>``) and is made absolute when the manifest is read, so the store folder can be
moved; an absolute path is a user's file, used in place and never deleted by the store.

A file that holds a bare ``ModelManifest`` (the store's first format) is read as one with no layers.

``model.schema_version`` (:data:`~imgscribe.types.MANIFEST_SCHEMA`) is the layout of the model
itself. Every manifest written now carries it, and its ``parameters`` hold options only: a file
with anything else there is refused when read (a :class:`ValueError` naming the key), never
"migrated". A ``model`` without ``schema_version`` was written before engine settings had their
own field, with everything in ``parameters``; it is migrated once, when first read (:func:`migrate`,
and the file is rewritten in the new layout): the engine's declared settings move to
``engine_settings``, ``template`` to its field, and what is neither an option nor a setting of that
engine (``server_args``, ``request_args`` other than ``ignore_eos``, a misspelt name) is dropped,
with a warning in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import InvalidRequest
from ..types import MANIFEST_SCHEMA, MODEL_PARAMETERS, ModelManifest, ModelParameters
from .blobs import write_atomic
from .names import ModelName, parse_name

__all__ = ["MEDIA_TYPE", "Layer", "ManifestFiles", "StoredManifest", "migrate", "model_options", "validation_message"]

MEDIA_TYPE = "application/vnd.imgscribe.manifest.v1+json"
log = logging.getLogger("imgscribe.store")


class Layer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    media_type: str = Field("application/octet-stream", alias="mediaType")
    digest: str
    size: int = 0
    role: str = ""  # "model", "projector", "config", ... for a blob used as one file
    path: str = ""  # the file's name inside a snapshot folder


class StoredManifest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    schema_version: int = Field(2, alias="schemaVersion")
    media_type: str = Field(MEDIA_TYPE, alias="mediaType")
    layers: list[Layer] = Field(default_factory=list)
    source: dict[str, Any] = Field(default_factory=dict)
    model: ModelManifest
    _migrated: bool = PrivateAttr(False)  # read in an older layout: rewrite it

    @property
    def digests(self) -> set[str]:
        return {layer.digest for layer in self.layers}

    @property
    def migrated(self) -> bool:
        return self._migrated

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    @classmethod
    def parse(cls, text: str | bytes) -> StoredManifest:
        """Either format; raises ``ValueError`` (one line) for anything else: a half-written or
        foreign file, or a model that is not valid (options only in ``parameters``...)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a manifest")  # noqa: TRY004 - callers catch ValueError, as for bad JSON
        full = "model" in data and "layers" in data
        model = data["model"] if full else data  # the first format: a bare ModelManifest
        if not isinstance(model, dict):
            raise ValueError("not a manifest")  # noqa: TRY004
        version = model.get("schema_version")
        old = version is None
        if old:
            model = migrate(model)
        elif version != MANIFEST_SCHEMA:
            raise ValueError(f"model schema_version {version!r} is not one this imgscribe reads ({MANIFEST_SCHEMA})")
        try:
            stored = cls.model_validate({**data, "model": model}) if full else cls(model=ModelManifest.model_validate(model))
        except ValidationError as exc:
            raise ValueError(validation_message(exc)) from None
        stored._migrated = old
        return stored


def validation_message(exc: ValidationError) -> str:
    """A manifest's first validation error in one line: where, and what (``model.parameters: unknown
    parameter 'server_args': ...``)."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def migrate(model: dict[str, Any]) -> dict[str, Any]:
    """A model written before :data:`MANIFEST_SCHEMA` 2 (options, the engine's settings and Ollama's
    template all in ``parameters``) in today's layout. Only the engine's declared settings survive
    as settings; what is neither one nor a valid option is dropped (and logged)."""
    from ..engines import settings_of

    name = model.get("name", "?")
    engine = str(model.get("engine", ""))
    out = {k: v for k, v in model.items() if k != "parameters"}
    params = model.get("parameters")
    if not isinstance(params, dict):
        params = {}
    options = model_options(params, name)
    candidates: dict[str, Any] = dict(model.get("engine_settings") or {})
    for key, value in params.items():
        if key in MODEL_PARAMETERS:
            continue
        if key == "template":
            if isinstance(value, str) and not out.get("template"):
                out["template"] = value
        elif key == "request_args" and engine == "llamacpp":
            extra = value if isinstance(value, dict) else {}
            if extra.get("ignore_eos"):
                candidates["ignore_eos"] = True
            dropped = sorted(str(k) for k in extra if k != "ignore_eos")
            if dropped:
                log.warning("model '%s': dropped request_args %s: no longer passed to llama-server", name, dropped)
        else:
            candidates[key] = value
    settings_model = settings_of(engine)
    if settings_model is None:  # an engine that declares no settings: it judges them when it loads
        settings = candidates
    else:
        settings = {}
        for key, value in candidates.items():
            try:
                settings_model.model_validate({key: value})
            except ValidationError:
                log.warning("model '%s': dropped %r: not a valid %s setting (engine settings are typed now)",
                            name, key, engine)  # fmt: skip
                continue
            settings[key] = value
    out.update(parameters=options, engine_settings=settings, schema_version=MANIFEST_SCHEMA)
    return out


def model_options(values: dict[str, Any], name: str) -> dict[str, Any]:
    """The options among ``values`` (from an older manifest, a registry's params layer), as a
    manifest holds them. Other keys are left out (the caller's to judge); an option whose value is
    not valid is dropped and logged; a null is simply unset."""
    options: dict[str, Any] = {}
    for key, value in values.items():
        if key not in MODEL_PARAMETERS or value is None:
            continue
        checked = _option_value(key, value)
        if checked is None:
            log.warning("model '%s': dropped parameter %r: %r is not a valid value of that option", name, key, value)
        else:
            options[key] = checked
    return options


def _option_value(key: str, value: Any) -> Any:
    """An option's value as today's manifest holds it (2048.0 -> 2048, "END" -> ["END"]), or None."""
    if value is None:
        return None
    kinds = ModelParameters.model_fields[key].annotation
    if key == "stop" and isinstance(value, str):
        value = [value]
    elif isinstance(value, float) and value.is_integer() and int in getattr(kinds, "__args__", ()):
        value = int(value)
    try:
        ModelParameters.checked({key: value})
    except ValueError:
        return None
    return value


class ManifestFiles:
    """Where each model name's manifest lives, and walking them."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "manifests"

    def path(self, name: ModelName) -> Path:
        path = self.dir.joinpath(*name.parts)
        if not path.resolve().is_relative_to(self.dir.resolve()):
            raise InvalidRequest(f"invalid model name {name.short!r}")
        return path

    def read(self, name: ModelName) -> StoredManifest | None:
        path = self.path(name)
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        stored = StoredManifest.parse(text)
        if stored.migrated:
            self._rewrite(path, text, stored)
        return stored

    @staticmethod
    def _rewrite(path: Path, text: str, stored: StoredManifest) -> None:
        """A migrated manifest in today's layout, unless it changed meanwhile (or cannot be written:
        it is then migrated again on the next read)."""
        try:
            if path.read_text() == text:
                write_atomic(path, stored.dump())
                log.info("manifest %s: migrated to schema_version %d", path, MANIFEST_SCHEMA)
        except OSError:
            pass

    def write(self, name: ModelName, manifest: StoredManifest) -> None:
        write_atomic(self.path(name), manifest.dump())

    def remove(self, name: ModelName) -> bool:
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # drop folders left empty, up to manifests/
        parent = path.parent
        while parent != self.dir and parent.is_relative_to(self.dir):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def names(self) -> Iterator[ModelName]:
        """Every model name with a manifest file (temporary and foreign files skipped)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*/*/*/*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(self.dir).parts):
                continue
            host, namespace, model, tag = path.relative_to(self.dir).parts
            try:
                name = parse_name(f"{_host(host)}/{namespace}/{model}:{tag}")
            except InvalidRequest:
                continue
            if name.parts == (host, namespace, model, tag):
                yield name

    def all(self) -> Iterator[tuple[ModelName, StoredManifest]]:
        for name in self.names():
            try:
                stored = self.read(name)
            except ValueError:
                continue  # half-written by something else, or not ours
            if stored is not None:
                yield name, stored


def _host(folder: str) -> str:
    """``example.com_5000`` (a folder) -> ``example.com:5000`` (a host)."""
    head, sep, port = folder.rpartition("_")
    return f"{head}:{port}" if sep and port.isdigit() else folder
