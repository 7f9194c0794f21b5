"""What both pull sources share: describing a GGUF pair, the catalog's words, writing the result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...errors import InvalidRequest
from ...types import ModelInfo, ModelManifest
from .. import gc
from ..manifests import Layer
from ..names import ModelName

__all__ = ["finish", "forget", "info_from_catalog", "manifest_for_gguf_blobs"]


def manifest_for_gguf_blobs(name: str, model: str, projector: str | None) -> ModelManifest:
    """A llamacpp manifest for a model GGUF and its projector, described from their headers."""
    from ..import_gguf import manifest_for_gguf

    try:
        return manifest_for_gguf(name, model, projector)
    except InvalidRequest as exc:
        raise InvalidRequest(f"the downloaded model is not one llama.cpp can run: {exc}") from None


def info_from_catalog(info: ModelInfo, name: str) -> None:
    """Add what the catalog knows (what the model is, its limits, licence) to a pulled model's info."""
    from ..catalog import lookup

    try:
        match = lookup(name)
    except Exception:  # noqa: BLE001 - the catalog is informative: never fail a pull over it
        match = None
    if match is None:
        return
    v, m = match.variant, match.variant.family
    found = info.summary
    info.summary = f"{v.name} ({m.org}): {m.summary}"
    notes = [*m.limits, *v.notes]
    parts = [info.description, found and f"Files: {found}.", *(f"- {n}" for n in notes)]
    info.description = "\n".join(p for p in parts if p)
    info.license = info.license or v.license
    info.context_length = info.context_length or v.context_length
    if not info.parameter_size:
        info.parameter_size = v.parameter_size
    info.model_info.setdefault("catalog_id", v.id)


def finish(
    store, name: ModelName, model: ModelManifest, layers: list[Layer], source: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Write the manifest (last, atomically) and free what an older version of the name used alone."""
    try:
        previous = store.manifest_files.read(name)
    except ValueError:
        previous = None
    model.info.size = 0  # the store adds up every layer, as Ollama counts a model's size
    store.create(name.short, model, layers=layers, source=source)
    if previous is not None and previous.digests - {layer.digest for layer in layers}:
        yield {"status": "removing unused layers"}
    yield {"status": "success"}


def forget(store, digests: list[str], snapshots: list[str] = ()) -> None:
    """After a pull failed past its downloads: drop the blobs no model uses (they are useless)."""
    gc.collect(store.blobs, store.manifest_files, digests, snapshots)
