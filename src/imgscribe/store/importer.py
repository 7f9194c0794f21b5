"""Registering local model files under a name: ``imgscribe create NAME --from PATH`` and ``/api/create``.

- A Hugging Face checkpoint folder (config.json naming a supported architecture) becomes a
  ``transformers`` model. The folder is used in place (not copied): moving or deleting it breaks the
  model, as the manifest records its absolute path.
- A GGUF file, or a folder of GGUF files (with ``mmproj``, its vision projector), is for the
  llama.cpp engine: :func:`create_from_gguf` hands it to :mod:`.import_gguf`.

Nothing here imports torch or transformers: the facts come from config.json and safetensors headers.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidRequest
from ..formats import checkpoints as fam
from ..types import ModelInfo, ModelManifest

__all__ = ["create_from_gguf", "create_from_path", "describe_hf_folder"]


def create_from_path(
    store, name: str, path: str | os.PathLike, *, mmproj: str | os.PathLike | None = None
) -> ModelInfo:
    """Register the model at ``path`` as ``name`` in ``store``; its ModelInfo. InvalidRequest when the
    path is not a model imgscribe can run."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidRequest(f"no such file or folder: {p}")
    p = p.resolve()
    if _is_gguf(p):
        return create_from_gguf(store, name, p, mmproj=mmproj)
    if p.is_dir() and (p / "config.json").is_file():
        if mmproj is not None:
            raise InvalidRequest("--mmproj is for GGUF models; a Hugging Face folder carries its own vision tower")
        manifest = describe_hf_folder(p)
        # the content digest (the store would otherwise derive one from the path)
        source = {"kind": "local", "path": str(p), "digest": manifest.info.digest}
        return store.create(name, manifest, source=source)
    if p.is_dir() and any(p.glob("*.gguf")):
        return create_from_gguf(store, name, p, mmproj=mmproj)
    raise InvalidRequest(
        f"{p} is not a model imgscribe can import: expected a Hugging Face checkpoint folder (with config.json "
        "and safetensors weights) or a .gguf file"
    )


def create_from_gguf(store, name: str, path: Path, *, mmproj: str | os.PathLike | None = None) -> ModelInfo:
    """The llama.cpp engine's import: a GGUF model (a file, or a folder with one) plus its mmproj projector."""
    try:
        from .import_gguf import manifest_for_gguf
    except ImportError:
        raise InvalidRequest(
            f"GGUF models need the llamacpp engine, which is not available here: {path.name} cannot be registered; "
            "a Hugging Face checkpoint folder of the same model runs with the transformers engine"
        ) from None
    return store.create(name, manifest_for_gguf(name, path, mmproj))


def _is_gguf(p: Path) -> bool:
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


def describe_hf_folder(path: Path) -> ModelManifest:
    """The manifest of a Hugging Face checkpoint folder, for the transformers engine."""
    path = Path(path).resolve()
    config = fam.read_config(path)
    family = fam.detect(config, str(path))
    if not fam.weight_files(path):
        raise InvalidRequest(f"{path} has no weights (*.safetensors or pytorch_model*.bin)")
    params, dtype = fam.weights_facts(path)
    ctx = fam.context_length(config)
    families = fam.families_of(family, config)
    notes = [
        f"{family.title} vision-language model, run by Hugging Face transformers from {path}.",
        "The folder is used in place: moving or deleting it breaks this model.",
    ]
    if family.needs_torchvision:
        notes.append("Its image processor needs torchvision (installed with torch).")
    info = ModelInfo(
        name="",
        engine="transformers",
        family=family.ollama,
        families=families,
        parameter_size=fam.format_parameters(params),
        quantization_level=dtype,
        format="safetensors" if dtype else "pytorch",
        capabilities=["completion", "vision"],
        is_vlm=True,
        summary=f"{family.title} ({', '.join(config.get('architectures') or [])})",
        description=" ".join(notes),
        context_length=ctx,
        size=fam.folder_size(path),
        digest=fam.digest(path),
        model_info={
            "general.architecture": family.ollama,
            "general.architectures": list(config.get("architectures") or []),
            "general.parameter_count": params,
            f"{family.ollama}.context_length": ctx,
            "transformers.family": family.key,
            "transformers.model_type": config.get("model_type", ""),
            "transformers.text_model_type": fam.text_config(config).get("model_type", ""),
            "transformers.vision_model_type": (config.get("vision_config") or {}).get("model_type", ""),
        },
    )
    return ModelManifest(name="", engine="transformers", files={"model": str(path)}, info=info)
