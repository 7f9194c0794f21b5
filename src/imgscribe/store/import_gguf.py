"""A GGUF model and its mmproj projector as a model manifest for the llamacpp engine.

:func:`manifest_for_gguf` reads both files' GGUF headers (metadata and tensor list; no weights),
checks that the model is a language model and the projector a vision projector, and fills
``ModelInfo`` from them: family (``general.architecture``), parameter count, quantization
(``general.file_type``), context length, and the ``vision`` capability when there is a projector.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidRequest
from ..types import ModelInfo, ModelManifest

__all__ = ["GGUFHeader", "find_gguf_pair", "manifest_for_gguf", "read_gguf"]

#: llama.cpp's ``llama_ftype`` (include/llama.h): ``general.file_type`` -> Ollama's quantization names.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}  # fmt: skip

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY = 64  # longer arrays (vocabularies) are skipped, only their length kept


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[tuple[int, ...], int]] = field(default_factory=dict)  # name -> (shape, type)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def parameters(self) -> int:
        total = 0
        for shape, _ in self.tensors.values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    @property
    def quantization(self) -> str:
        ft = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ft, f"type {ft}") if isinstance(ft, int) else ""

    @property
    def context_length(self) -> int:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else 0

    @property
    def is_projector(self) -> bool:
        return self.architecture == "clip"


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("the file ends inside its header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > 1 << 24:
        raise ValueError("implausible string length")
    return _read(f, n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALARS and n > _KEEP_ARRAY:
            f.seek(n * struct.calcsize(_SCALARS[item]), 1)
            return f"<array of {n}>"
        values = [_value(f, item) for _ in range(n)]
        return values if n <= _KEEP_ARRAY else f"<array of {n}>"
    raise ValueError(f"unknown metadata type {kind}")


def read_gguf(path: str | Path) -> GGUFHeader:
    """The metadata and tensor list of a GGUF file (the weights are not read)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise InvalidRequest(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            version, n_tensors, n_kv = struct.unpack("<IQQ", _read(f, 20))
            if version < 2:
                raise InvalidRequest(f"{path}: GGUF version {version} is too old (llama.cpp reads 2 and 3)")
            header = GGUFHeader(version)
            for _ in range(n_kv):
                key = _string(f)
                (kind,) = struct.unpack("<I", _read(f, 4))
                header.metadata[key] = _value(f, kind)
            for _ in range(n_tensors):
                name = _string(f)
                (n_dims,) = struct.unpack("<I", _read(f, 4))
                shape = struct.unpack(f"<{n_dims}Q", _read(f, 8 * n_dims))
                kind, _offset = struct.unpack("<IQ", _read(f, 12))
                header.tensors[name] = (shape, kind)
            return header
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a valid GGUF file: {exc}") from None


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
