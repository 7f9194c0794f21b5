"""Which models exist and where their files are. The store never loads a model.

Layout under ``IMGSCRIBE_MODELS`` (default ``~/.imgscribe/models``), like Ollama's::

    manifests/<host>/<namespace>/<model>/<tag>   one JSON file per model name (manifests.py)
    blobs/sha256-<hex>                           content-addressed files (blobs.py)
    blobs/sha256-<hex>-partial[.json]            a download in progress, resumable (pull/download.py)
    snapshots/<key>/ + <key>.json                folder models: file names linked to blobs

- A model appears in :meth:`Store.list` only once its manifest is written, and that happens last,
  atomically, after every blob it names is complete and verified.
- Blobs shared between models are stored once; :meth:`Store.delete` frees the blobs and snapshot
  folders that no other model uses (gc.py).
- ``create(name, manifest)`` with files outside the store (a user's Hugging Face folder or GGUF, as
  ``imgscribe create --from`` registers them) keeps referencing them **in place**: nothing is
  copied, and ``rm`` never deletes them. Moving or deleting those files breaks the model; copy
  them in with :meth:`Store.add_file` first to let the store own them. Files inside the store (a
  blob, a snapshot) are recorded as layers, so ``create`` from a pulled model keeps its blobs alive.
- Names are validated (names.py) and every manifest path is checked to stay inside the store.
- A manifest is checked before it is written: its ``parameters`` are options only, its
  ``engine_settings`` those its engine declares. Manifests of an older layout are migrated when
  read (manifests.py); ones of today's layout that break these rules are refused when read.

``builtin`` is always present and needs no files.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import settings
from ..errors import ImgscribeError, InvalidRequest, ModelNotFound
from ..types import ModelInfo, ModelManifest
from . import gc
from .blobs import BlobStore
from .manifests import Layer, ManifestFiles, StoredManifest, validation_message
from .names import ModelName, parse_name

__all__ = ["DamagedModel", "ModelName", "Store", "parse_name"]

BUILTIN = "builtin:latest"
_NOT_FOUND_HINT = "try pulling it first (imgscribe pull NAME) or use 'builtin'"


class DamagedModel(ImgscribeError):
    """A model's manifest names a store file that is missing or unreadable."""

    status = 500


def _builtin() -> ModelManifest:
    from ..engines.builtin import MANIFEST  # cheap: no torch at import time

    if MANIFEST.name == BUILTIN and MANIFEST.info.name == BUILTIN:
        return MANIFEST
    manifest = MANIFEST.model_copy(deep=True)
    manifest.name = manifest.info.name = BUILTIN  # listed like every model: name:tag
    return manifest


def _builtin_info() -> ModelInfo:
    return _builtin().info


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else settings().models_dir
        self.blobs = BlobStore(self.root)
        self.manifest_files = ManifestFiles(self.root)
        self.manifests = self.manifest_files.dir

    # -- reading ----------------------------------------------------------------------------------

    def resolve(self, name: str) -> ModelManifest:
        """The manifest an engine loads: store files as absolute paths, checked to be there."""
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            return _builtin()
        stored = self._read(parsed, name)
        manifest = self._materialize(parsed, stored)
        damage = self._damage(parsed, stored, manifest)
        if damage:
            raise DamagedModel(damage)
        return manifest

    def _damage(self, parsed: ModelName, stored: StoredManifest, manifest: ModelManifest) -> str | None:
        """Why an engine could not load the model, or None: a store file missing, or a blob not of the
        size its layer records (one ``stat`` each; a whole sha256 would take minutes for a large
        model): a truncated one is caught here, before any engine reads it."""
        for role, value in stored.model.files.items():
            inside = not _is_url(value) and not Path(value).is_absolute()
            if inside and not Path(manifest.files[role]).exists():
                return (f"model '{parsed.short}' is incomplete: its {role} file {manifest.files[role]} is missing "
                        f"from the store; pull or create it again (imgscribe rm {parsed.short} first)")  # fmt: skip
        recorded = {layer.digest: layer.size for layer in stored.layers if layer.size > 0}
        for role, value in manifest.files.items():
            digest = None if _is_url(value) else self.blobs.digest_of(Path(value))
            if digest not in recorded:
                continue
            size = _size(Path(value))
            if size != recorded[digest]:
                return (f"model '{parsed.short}' is damaged: its {role} file {value} is {size:,} bytes where its "
                        f"manifest records {recorded[digest]:,} (truncated or overwritten); pull or create it "
                        f"again (imgscribe rm {parsed.short} first)")  # fmt: skip
        return None

    def exists(self, name: str) -> bool:
        try:
            parsed = parse_name(name)
        except InvalidRequest:
            return False
        if parsed.short == BUILTIN:
            return True
        return self.manifest_files.path(parsed).is_file()

    def list(self) -> list[ModelInfo]:
        infos = [_builtin_info()]
        for name, stored in self.manifest_files.all():
            manifest = self._materialize(name, stored)
            damage = self._damage(name, stored, manifest)
            infos.append(manifest.info.model_copy(update={"damaged": damage}) if damage else manifest.info)
        return infos

    def stored(self, name: str) -> StoredManifest:
        """The manifest as written: layers (the blobs it uses), source, store-relative files."""
        parsed = parse_name(name)
        return self._read(parsed, name)

    # -- writing ----------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        manifest: ModelManifest,
        *,
        layers: list[Layer] | None = None,
        source: dict[str, Any] | None = None,
    ) -> ModelInfo:
        """Register a model under ``name`` (replacing one of that name).

        ``manifest.files`` may point outside the store (used in place) or at store blobs and
        snapshots (recorded as layers, kept alive). ``layers``: further blobs this model uses (a
        pull's template, params, config). Returns the model's info as ``list`` shows it.
        """
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            raise InvalidRequest("'builtin' is reserved for the embedded model")
        model = manifest.model_copy(deep=True)
        _check(parsed.short, model)
        files, found = self._internalize(model.files)
        model.files = files
        all_layers = _unique([*found, *(layers or [])])
        model.name = model.info.name = parsed.short
        model.info.modified_at = _now()
        if not model.info.size:
            sizes = {layer.digest: layer.size for layer in all_layers}
            model.info.size = sum(sizes.values()) + _external_size(files)
        model.info.digest = (source or {}).get("digest") or _digest(model, all_layers)
        stored = StoredManifest(layers=all_layers, source=source or {}, model=model)
        previous = self._read_quietly(parsed)
        self.manifest_files.write(parsed, stored)
        self.blobs.sweep_temporaries()  # what a create or upload killed earlier left behind
        if previous is not None:  # a new version under an old name: free what only the old one used
            self._collect(previous)
        return self._materialize(parsed, stored).info

    def copy(self, source: str, destination: str) -> None:
        src, dst = parse_name(source), parse_name(destination)
        if dst.short == BUILTIN:
            raise InvalidRequest("'builtin' is reserved for the embedded model")
        if src.short == BUILTIN:  # a copy keeps the digest, as Ollama's (llm-ollama groups aliases by it)
            self.create(destination, _builtin(), source={"digest": _builtin_info().digest})
            return
        stored = self._read(src, source).model_copy(deep=True)
        stored.model.name = stored.model.info.name = dst.short
        stored.model.info.modified_at = _now()
        previous = self._read_quietly(dst)
        self.manifest_files.write(dst, stored)
        if previous is not None:
            self._collect(previous)

    def delete(self, name: str) -> int:
        """Remove a model; frees the blobs and snapshots nothing else uses. Returns bytes freed."""
        parsed = parse_name(name)
        if parsed.short == BUILTIN:
            raise InvalidRequest("'builtin' is embedded and cannot be deleted")
        if not self.manifest_files.path(parsed).is_file():
            raise ModelNotFound(name)
        stored = self._read_quietly(parsed)
        self.manifest_files.remove(parsed)
        return self._collect(stored) if stored is not None else 0

    def pull(
        self, name: str, insecure: bool = False, cancel: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]:
        """Download a model (Ollama's registry, or ``hf.co/ORG/REPO[:QUANT]`` from Hugging Face),
        yielding Ollama's progress objects; see :mod:`imgscribe.store.pull`. Setting ``cancel`` (or
        closing the iterator) stops the transfers; what arrived is kept for the next pull."""
        from .pull import pull

        return pull(self, name, insecure=insecure, cancel=cancel)

    def add_file(self, path: str | Path) -> Path:
        """Copy a file into the store's blobs (for importers that want the store to own it); the
        returned path can go in ``ModelManifest.files`` and is recorded as a layer by ``create``."""
        return self.blobs.path(self.blobs.put_file(path))

    def prune(self) -> int:
        """Delete every blob and snapshot no manifest uses (and no pull in this process holds).
        Partial downloads are kept so that pulls can resume; temporary files writers left behind
        (killed mid-upload or mid-copy) are deleted. Returns the bytes freed."""
        return self.blobs.sweep_temporaries() + gc.collect(self.blobs, self.manifest_files, self.blobs.all(), self.blobs.snapshot_keys())

    # -- plumbing ---------------------------------------------------------------------------------

    def _read(self, parsed: ModelName, asked: str) -> StoredManifest:
        path = self.manifest_files.path(parsed)
        try:
            stored = self.manifest_files.read(parsed)
        except ValueError as exc:
            raise DamagedModel(
                f"the manifest of '{parsed.short}' ({path}) is not valid: {str(exc).splitlines()[0]}; "
                f"remove it with 'imgscribe rm {parsed.short}' and pull or create it again"
            ) from None
        if stored is None:
            raise ModelNotFound(asked, _NOT_FOUND_HINT)
        return stored

    def _read_quietly(self, parsed: ModelName) -> StoredManifest | None:
        try:
            return self.manifest_files.read(parsed)
        except ValueError:
            return None

    def _collect(self, stored: StoredManifest) -> int:
        return gc.collect(self.blobs, self.manifest_files, stored.digests, gc.snapshot_refs(self.blobs, stored))

    def _materialize(self, parsed: ModelName, stored: StoredManifest) -> ModelManifest:
        model = stored.model.model_copy(deep=True)
        model.name = model.info.name = parsed.short
        model.files = {
            role: value if _is_url(value) or Path(value).is_absolute() else str(self.root / value)
            for role, value in model.files.items()
        }
        return model

    def _internalize(self, files: dict[str, str]) -> tuple[dict[str, str], list[Layer]]:
        """Store files become store-relative paths plus layers; other files become absolute."""
        root = self.root.resolve()
        out: dict[str, str] = {}
        layers: list[Layer] = []
        for role, value in files.items():
            if _is_url(value):
                out[role] = value
                continue
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = self.root / path if (self.root / path).exists() else path
            path = path.resolve()
            if not path.is_relative_to(root):
                out[role] = str(path)
                continue
            digest = self.blobs.digest_of(path)
            key = self.blobs.snapshot_of(path)
            if digest is not None:
                if not path.is_file():
                    raise InvalidRequest(f"{role} file {path} is not in the store")
                layers.append(Layer(digest=digest, size=path.stat().st_size, role=role))
            elif key is not None:
                index = self.blobs.snapshot_files(key)
                if not index:
                    raise InvalidRequest(f"{role} folder {path} is not a complete snapshot of the store")
                layers += [Layer(digest=d, size=_size(self.blobs.path(d)), path=p) for p, d in index.items()]
            else:
                out[role] = str(path)  # inside the store folder but not store-managed: used in place
                continue
            out[role] = path.relative_to(root).as_posix()
        return out, layers


def _check(name: str, model: ModelManifest) -> None:
    """A manifest as the store may write it: options only in ``parameters`` (checked again here:
    the dict may have changed since the manifest was built), its engine's own settings, typed."""
    from ..engines import settings_of

    try:
        ModelManifest.model_validate(model.model_dump())
    except ValidationError as exc:
        raise InvalidRequest(f"model '{name}': {validation_message(exc)}") from None
    settings_model = settings_of(model.engine)
    if settings_model is not None:
        try:
            settings_model.model_validate(model.engine_settings)
        except ValidationError as exc:
            raise InvalidRequest(f"model '{name}': {settings_model.problem(exc)}") from None


def _is_url(value: str) -> bool:
    return "://" in value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _external_size(files: dict[str, str]) -> int:
    total = 0
    for value in files.values():
        if _is_url(value) or not Path(value).is_absolute():
            continue
        path = Path(value)
        if path.is_file():
            total += _size(path)
        elif path.is_dir():
            total += sum(_size(p) for p in path.rglob("*") if p.is_file())
    return total


def _unique(layers: list[Layer]) -> list[Layer]:
    seen: dict[tuple[str, str, str], Layer] = {}
    for layer in layers:
        seen.setdefault((layer.digest, layer.role, layer.path), layer)
    return list(seen.values())


def _digest(model: ModelManifest, layers: list[Layer]) -> str:
    """A stable id for a model that has no registry digest: what it is made of."""
    body = {
        "engine": model.engine,
        "files": model.files,
        "layers": sorted(layer.digest for layer in layers),
        "parameters": model.parameters,
        "engine_settings": model.engine_settings,
        "system": model.system,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
