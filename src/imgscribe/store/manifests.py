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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidRequest
from ..types import ModelManifest
from .blobs import write_atomic
from .names import ModelName, parse_name

__all__ = ["MEDIA_TYPE", "Layer", "ManifestFiles", "StoredManifest"]

MEDIA_TYPE = "application/vnd.imgscribe.manifest.v1+json"


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

    @property
    def digests(self) -> set[str]:
        return {layer.digest for layer in self.layers}

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    @classmethod
    def parse(cls, text: str | bytes) -> StoredManifest:
        """Either format; raises ``ValueError`` for anything else (a half-written or foreign file)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a manifest")  # noqa: TRY004 - callers catch ValueError, as for bad JSON
        if "model" in data and "layers" in data:
            return cls.model_validate(data)
        return cls(model=ModelManifest.model_validate(data))  # the first format: a bare ModelManifest

    @staticmethod
    def content_digest(text: str | bytes) -> str:
        return "sha256:" + hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


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
        return StoredManifest.parse(text)

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
