"""Hugging Face checkpoint folders: which families the transformers engine runs, and what a folder
(its config.json and safetensors headers) says about itself.

Pure Python (JSON and safetensors headers only): the store's importer and pull read it, the
transformers engine loads by it, and neither imports torch or transformers for it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest

IMAGE_TEXT_TO_TEXT = "image-text-to-text"
CAUSAL_LM = "causal-lm"


@dataclass(frozen=True)
class Family:
    key: str  # imgscribe's name for the family (also the testing builder's)
    ollama: str  # the family as ``show``/``list`` name it, Ollama's spelling where Ollama has one
    title: str
    architectures: tuple[str, ...]
    auto: str = IMAGE_TEXT_TO_TEXT  # which Auto* class loads it
    generate_kwargs: dict[str, Any] = field(default_factory=dict)  # extra generate() arguments
    needs_torchvision: bool = False  # its image processor exists only with torchvision
    system_text: bool = False  # its chat template reads a system message's content as a string


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("llava", "llava", "LLaVA-1.5", ("LlavaForConditionalGeneration",)),
        Family("llava_next", "llava", "LLaVA-1.6 (NeXT)", ("LlavaNextForConditionalGeneration",)),
        Family("llava_onevision", "llava", "LLaVA-OneVision", ("LlavaOnevisionForConditionalGeneration",)),
        Family("pixtral", "pixtral", "Pixtral", ()),  # a Llava architecture with a Pixtral vision tower
        Family("qwen2_vl", "qwen2vl", "Qwen2-VL", ("Qwen2VLForConditionalGeneration",)),
        Family("qwen2_5_vl", "qwen25vl", "Qwen2.5-VL", ("Qwen2_5_VLForConditionalGeneration",)),
        Family("gemma3", "gemma3", "Gemma 3", ("Gemma3ForConditionalGeneration",)),
        Family("mistral3", "mistral3", "Mistral 3", ("Mistral3ForConditionalGeneration",)),
        Family("llama4", "llama4", "Llama 4", ("Llama4ForConditionalGeneration",), needs_torchvision=True),
        Family("phi4mm", "phi4mm", "Phi-4-multimodal", ("Phi4MultimodalForCausalLM",), auto=CAUSAL_LM,
               needs_torchvision=True),
        Family("janus", "janus", "Janus Pro", ("JanusForConditionalGeneration",),
               generate_kwargs={"generation_mode": "text"}),  # fmt: skip
        Family("idefics3", "idefics3", "Idefics3", ("Idefics3ForConditionalGeneration",)),
        Family("smolvlm", "smolvlm", "SmolVLM", ("SmolVLMForConditionalGeneration",)),
        Family("mllama", "mllama", "Llama 3.2 Vision", ("MllamaForConditionalGeneration",), system_text=True),
    )
}
_BY_ARCHITECTURE = {a: f for f in FAMILIES.values() for a in f.architectures}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def supported_architectures() -> list[str]:
    return sorted(_BY_ARCHITECTURE)


def read_config(path: Path) -> dict[str, Any]:
    config = Path(path) / "config.json"
    try:
        return json.loads(config.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"{path} is not a Hugging Face checkpoint folder: it has no config.json") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {config}: {exc}") from None


def detect(config: dict[str, Any], where: str = "this checkpoint") -> Family:
    """The family of a checkpoint, from its config.json; InvalidRequest when it is not supported."""
    architectures = config.get("architectures") or []
    for arch in architectures:
        family = _BY_ARCHITECTURE.get(arch)
        if family is None:
            continue
        if family.key == "llava" and (config.get("vision_config") or {}).get("model_type") == "pixtral":
            return FAMILIES["pixtral"]
        return family
    names = ", ".join(architectures) or f"model_type {config.get('model_type')!r}"
    raise InvalidRequest(
        f"{where} is a {names} model, which the transformers engine does not run; supported architectures: "
        + ", ".join(supported_architectures())
    )


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("text_config") or config


def context_length(config: dict[str, Any]) -> int:
    for cfg in (text_config(config), config):
        for key in ("max_position_embeddings", "max_sequence_length", "seq_length"):
            if isinstance(cfg.get(key), int):
                return cfg[key]
    return 0


def families_of(family: Family, config: dict[str, Any]) -> list[str]:
    """The family first, then the variant, the language model and the vision tower, as Ollama lists them."""
    out = [family.ollama, family.key]
    text_type = text_config(config).get("model_type")
    vision_type = (config.get("vision_config") or {}).get("model_type")
    if family.key in ("llava", "llava_next") and not vision_type:
        vision_type = "clip_vision_model"
    for name in (text_type, vision_type):
        if name:
            out.append(str(name).removesuffix("_vision_model").removesuffix("_text_model").removesuffix("_text"))
    return list(dict.fromkeys(out))


# -- weights -------------------------------------------------------------------------------------------


def weight_files(path: Path) -> list[Path]:
    path = Path(path)
    st = sorted(path.glob("*.safetensors"))
    return st or sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth") and p.is_file())


def safetensors_header(file: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a .safetensors file and where its data starts."""
    with open(file, "rb") as f:
        size = f.read(8)
        if len(size) < 8:
            raise InvalidRequest(f"{file.name} is not a safetensors file ({len(size)} bytes long)")
        (n,) = struct.unpack("<Q", size)
        if n > 100_000_000:
            raise InvalidRequest(f"{file.name} is not a safetensors file (header of {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
        if not isinstance(header, dict):
            raise InvalidRequest(f"{file.name} is not a safetensors file (its header is not a JSON object)")
        return header, 8 + n


def weights_facts(path: Path) -> tuple[int, str]:
    """(parameter count, dominant dtype such as "F32" or "BF16") from the safetensors headers; (0, "")
    when the weights are not safetensors."""
    count, by_dtype = 0, {}
    for file in weight_files(path):
        if file.suffix != ".safetensors":
            return 0, ""
        header, _ = safetensors_header(file)
        for name, t in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for d in t["shape"]:
                n *= d
            count += n
            by_dtype[t["dtype"]] = by_dtype.get(t["dtype"], 0) + n
    return count, max(by_dtype, key=by_dtype.get) if by_dtype else ""


def format_parameters(n: int) -> str:
    """Ollama's way: "7.2B", "494.03M", "262.85K"."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.2f}K"
    return str(n) if n else ""


_SAMPLE = 1 << 20


def digest(path: Path) -> str:
    """sha256 of config.json, the weights index, and each weight file's name, size, header and first and
    last MiB of data: it changes when the checkpoint does, without reading gigabytes."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / name).is_file():
            h.update(name.encode() + b"\0" + (path / name).read_bytes())
    for file in weight_files(path):
        size = file.stat().st_size
        h.update(f"{file.name}\0{size}\0".encode())
        with open(file, "rb") as f:
            h.update(f.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                f.seek(size - _SAMPLE)
                h.update(f.read(_SAMPLE))
    return h.hexdigest()


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
