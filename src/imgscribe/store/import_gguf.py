"""A GGUF model and its mmproj projector as a model manifest for the llamacpp engine.

:func:`manifest_for_gguf` reads both files' GGUF headers (metadata and tensor list; no weights),
checks that the model is a language model and the projector a vision projector, and fills
``ModelInfo`` from them: family (``general.architecture``), parameter count, quantization
(``general.file_type``), context length, and the ``vision`` capability when there is a projector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from ..formats.gguf import FILE_TYPES, GGUFHeader, read_gguf
from ..types import ModelInfo, ModelManifest

#: the header reader lives in :mod:`imgscribe.formats.gguf`; its names are kept here for callers
__all__ = ["FILE_TYPES", "GGUFHeader", "find_gguf_pair", "manifest_for_gguf", "read_gguf"]


def find_gguf_pair(folder: str | Path) -> tuple[Path, Path | None]:
    """The model GGUF and the projector GGUF in a folder (as llama.cpp's converter writes them)."""
    folder = Path(folder)
    models, projectors = [], []
    for p in sorted(folder.glob("*.gguf")):
        (projectors if read_gguf(p).is_projector else models).append(p)
    if len(models) != 1:
        found = ", ".join(p.name for p in models) or "none"
        raise InvalidRequest(f"{folder}: expected one model GGUF, found {found}; name the file instead")
    if len(projectors) > 1:
        raise InvalidRequest(f"{folder}: several projectors ({', '.join(p.name for p in projectors)}): use --mmproj")
    return models[0], (projectors[0] if projectors else None)


def _size_label(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}".replace(".0" + unit, unit)
    return str(n)


def manifest_for_gguf(name: str, path: str | Path, mmproj: str | Path | None = None) -> ModelManifest:
    """A manifest for the llamacpp engine. ``path``: a GGUF file, or a folder holding one model
    GGUF and at most one projector (``mmproj-*.gguf``). Paths are stored absolute."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidRequest(f"{path}: no such file or folder")
    if path.is_dir():
        path, found = find_gguf_pair(path)
        mmproj = mmproj or found
    model = read_gguf(path)
    if model.is_projector:
        raise InvalidRequest(f"{path} is a projector (mmproj), not a model: pass it with --mmproj")
    if not model.architecture:
        raise InvalidRequest(f"{path} has no general.architecture: not a llama.cpp model")
    files = {"model": str(path.resolve())}
    size = path.stat().st_size
    model_info: dict[str, Any] = {
        "general.architecture": model.architecture,
        "general.parameter_count": model.parameters,
        **{k: v for k, v in model.metadata.items() if isinstance(v, (int, float, str)) and not k.startswith("tokenizer.")},
    }
    projector_type = ""
    if mmproj:
        mmproj = Path(mmproj).expanduser()
        proj = read_gguf(mmproj)
        if not proj.is_projector:
            raise InvalidRequest(f"{mmproj} is not a projector: its architecture is {proj.architecture!r}, not 'clip'")
        if proj.metadata.get("clip.has_vision_encoder") is False:
            raise InvalidRequest(f"{mmproj} has no vision encoder (an audio-only projector)")
        files["projector"] = str(mmproj.resolve())
        size += mmproj.stat().st_size
        projector_type = str(proj.metadata.get("clip.vision.projector_type") or proj.metadata.get("clip.projector_type") or "")
    info = ModelInfo(
        name=name,
        engine="llamacpp",
        family=model.architecture,
        families=[model.architecture] + (["clip"] if mmproj else []),
        parameter_size=_size_label(model.parameters),
        quantization_level=model.quantization,
        format="gguf",
        capabilities=["completion", "vision"] if mmproj else ["completion"],
        is_vlm=bool(mmproj),
        summary=f"{model.metadata.get('general.name') or path.stem} (GGUF, {model.architecture}"
        + (f", projector {projector_type})" if mmproj else ", text only: no projector)"),
        description=(
            "Served by llama.cpp's llama-server. "
            + ("Images go through the mmproj projector." if mmproj else "Without a projector it cannot see images.")
        ),
        context_length=model.context_length,
        size=size,
        model_info=model_info,
    )
    return ModelManifest(name=name, engine="llamacpp", files=files, info=info)
