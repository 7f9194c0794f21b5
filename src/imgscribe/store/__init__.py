"""Which models exist and where their files are. The store never loads a model.

Today a model is a JSON manifest (:class:`~imgscribe.types.ModelManifest`) under
``IMGSCRIBE_MODELS/manifests/<host>/<namespace>/<model>/<tag>``; ``builtin`` is always present
and needs no files.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ..config import settings
from ..errors import InvalidRequest, ModelNotFound
from ..types import ModelInfo, ModelManifest
from .names import ModelName, parse_name

__all__ = ["Store", "ModelName", "parse_name"]

BUILTIN = "builtin:latest"


def _builtin() -> ModelManifest:
    from ..engines.builtin import MANIFEST  # cheap: no torch at import time

    return MANIFEST


class Store:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else settings().models_dir
        self.manifests = self.root / "manifests"

    def _path(self, name: ModelName) -> Path:
        path = self.manifests.joinpath(*name.parts)
        if not path.resolve().is_relative_to(self.manifests.resolve()):
            raise InvalidRequest(f"invalid model name {name.short!r}")
        return path

    def resolve(self, name: str) -> ModelManifest:
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            return _builtin()
        path = self._path(parsed)
        if not path.is_file():
            raise ModelNotFound(name, "try pulling it first (imgscribe pull NAME) or use 'builtin'")
        manifest = ModelManifest.model_validate_json(path.read_text())
        manifest.name = parsed.short
        manifest.info.name = parsed.short
        return manifest

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name)
        except ModelNotFound:
            return False
        return True

    def list(self) -> list[ModelInfo]:
        infos = [_builtin().info]
        if self.manifests.is_dir():
            for path in sorted(p for p in self.manifests.rglob("*") if p.is_file()):
                host, namespace, model, tag = path.relative_to(self.manifests).parts
                name = ModelName(host.replace("_", ":"), namespace, model, tag)
                try:
                    infos.append(self.resolve(name.short).info)
                except (ValueError, ModelNotFound):
                    continue  # a half-written or foreign file is not a model
        return infos

    def create(self, name: str, manifest: ModelManifest) -> ModelInfo:
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            raise InvalidRequest("'builtin' is reserved for the embedded model")
        manifest = manifest.model_copy(deep=True)
        manifest.name = manifest.info.name = parsed.short
        manifest.info.modified_at = datetime.now(timezone.utc).isoformat()
        self._write(self._path(parsed), manifest.model_dump_json(indent=2))
        return manifest.info

    def copy(self, source: str, destination: str) -> None:
        self.create(destination, self.resolve(source))

    def delete(self, name: str) -> None:
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            raise InvalidRequest("'builtin' is embedded and cannot be deleted")
        path = self._path(parsed)
        if not path.is_file():
            raise ModelNotFound(name)
        path.unlink()

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Atomic: a reader never sees half a manifest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
