"""Runs llama.cpp's own converters in a child process, with the fixes imgscribe needs (see
``convert.py``). Not for direct use: ``python -m imgscribe.engines.llamacpp._convert_driver JOBS.json``.

One process runs every job, so torch, transformers and the converter are imported once.
Each job is ``{"kind": "hf" | "legacy_llava", "src", "outfile", "outtype", "mmproj", "fixes": {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import shutil
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

_FIX = {"hub_layout": False, "pre_fallback": "gpt-2"}  # the running job's fixes
_TEXT_ARCH = {  # text_config.model_type -> the architecture name hub configs give it
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "phi3": "Phi3ForCausalLM",
    "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM", "granite": "GraniteForCausalLM",
}  # fmt: skip
_TOWER = re.compile(r"(^|\.)vision_tower\.(?!vision_model\.)")


def _install_fixes(llama: Path) -> dict:
    """Import the converter and patch it (once). Returns the converter script's globals."""
    sys.path.insert(0, str(llama))
    sys.path.insert(1, str(llama / "gguf-py"))
    import conversion
    import conversion.base as base

    # 1. A home-made (or any unknown) BPE vocabulary: the converter identifies the pre-tokenizer by
    #    hashing the token ids of a fixed text and refuses unknown hashes. Fall back to a named one.
    original_pre = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original_pre(self, tokenizer)
        except NotImplementedError:
            print(f"imgscribe: unknown BPE pre-tokenizer; using '{_FIX['pre_fallback']}'", flush=True)
            return _FIX["pre_fallback"]

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    # 2. CLIP/SigLIP towers saved by transformers 5 (vision_tower.X) -> the hub layout the converter
    #    maps (vision_tower.vision_model.X).
    original_index = base.ModelBase.index_tensors

    def index_tensors(self, *args, **kwargs):
        tensors = original_index(self, *args, **kwargs)
        if not _FIX["hub_layout"]:
            return tensors
        return {_TOWER.sub(r"\1vision_tower.vision_model.", k): v for k, v in tensors.items()}

    base.ModelBase.index_tensors = index_tensors

    # 3. Pixtral / Mistral 3 (HF layout): MmprojModel.filter_tensors drops every language_model.*
    #    tensor before LlavaVisionModel.modify_tensors can extract the [IMG_BREAK] embedding row, and
    #    llama-server then fails with "unable to find tensor v.token_embd.img_break". Keep it.
    import conversion.llava as llava

    original_filter = llava.LlavaVisionModel.filter_tensors.__func__

    def filter_tensors(cls, item):
        return item if item[0].endswith("embed_tokens.weight") else original_filter(cls, item)

    llava.LlavaVisionModel.filter_tensors = classmethod(filter_tensors)

    # 4. The language model inside a VLM checkpoint whose top-level architecture the converter has
    #    no text class for (Idefics3, SmolVLM, LLaVA-OneVision), or a LLaVA whose language model is
    #    not a Llama (LLaVA-Phi-3): hub configs name it in text_config.architectures, which
    #    transformers 5 no longer writes. Name it from text_config.model_type, as the hub would.
    original_arch = base.get_model_architecture

    def get_model_architecture(hparams, model_type):
        arch = original_arch(hparams, model_type)
        text = hparams.get("text_config") or {}
        if model_type == base.ModelType.TEXT and not text.get("architectures"):
            wrapper = arch not in conversion.TEXT_MODEL_MAP or arch.startswith(("Llava", "LlavaNext"))
            named = _TEXT_ARCH.get(str(text.get("model_type") or ""))
            if wrapper and named in conversion.TEXT_MODEL_MAP:
                print(f"imgscribe: converting the language model of {arch} as {named}", flush=True)
                return named
        return arch

    base.get_model_architecture = get_model_architecture
    conversion.get_model_architecture = get_model_architecture

    # 5. Phi-3 reads a SentencePiece tokenizer.model; a checkpoint with only a BPE tokenizer.json
    #    (as Phi-4 has) fails with "Missing tokenizer.model". Use the BPE vocabulary then.
    import conversion.phi as phi

    original_vocab = phi.Phi3MiniModel.set_vocab

    def set_vocab(self):
        if not (self.dir_model / "tokenizer.model").is_file() and (self.dir_model / "tokenizer.json").is_file():
            return self._set_vocab_gpt2()
        return original_vocab(self)

    phi.Phi3MiniModel.set_vocab = set_vocab

    # 6. A chat template with an escape llama.cpp's Jinja lexer refuses ('<\\s>' in LLaVA-1.6-Mistral's):
    #    written so that both Jinjas render the same text, and llama-server starts.
    import gguf

    from imgscribe.engines.llamacpp.templates import for_llama_cpp

    original_template = gguf.GGUFWriter.add_chat_template

    def add_chat_template(self, value):
        if isinstance(value, str):
            value = for_llama_cpp(value)
        return original_template(self, value)

    gguf.GGUFWriter.add_chat_template = add_chat_template

    script = llama / "convert_hf_to_gguf.py"
    converter = runpy.run_path(str(script), run_name="imgscribe_convert_hf_to_gguf")
    converter["main"].__globals__["get_model_architecture"] = get_model_architecture
    return converter


def _hf_job(converter: dict, job: dict) -> None:
    _FIX.update({"hub_layout": False, "pre_fallback": "gpt-2"})
    _FIX.update(job.get("fixes") or {})
    argv = [job["src"], "--outfile", job["outfile"], "--outtype", job.get("outtype", "f16")]
    if job.get("mmproj"):
        argv.append("--mmproj")
    sys.argv = ["convert_hf_to_gguf.py", *argv]
    try:
        converter["main"]()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"the converter exited with {exc.code}") from None


# -- LLaVA 1.5 / NeXT projector: llama.cpp's legacy converter --------------------------------------


class _LegacyCLIP:
    """Stands in for transformers' ``CLIPVisionModel`` in the legacy converter, which needs only
    ``vision_model.encoder.layers`` (to drop layers) and ``state_dict()`` (transformers 5 has no
    ``.vision_model`` there). Built from the prepared folder's safetensors, no transformers."""

    @classmethod
    def from_pretrained(cls, folder):
        return cls(Path(folder))

    def __init__(self, folder: Path):
        from safetensors.torch import load_file

        self._tensors = load_file(str(folder / "model.safetensors"))
        n = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
        self.vision_model = types.SimpleNamespace(encoder=types.SimpleNamespace(layers=list(range(n))))

    def state_dict(self):
        keep = set(self.vision_model.encoder.layers)
        out = {}
        for k, v in self._tensors.items():
            m = re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)
            if m and int(m.group(1)) not in keep:
                continue
            out[k] = v
        return out


def _unavailable(*_a, **_k):
    raise RuntimeError("not available in imgscribe's legacy-converter shim")


def _legacy_llava_job(llama: Path, job: dict) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig

    src = Path(job["src"])
    config = json.loads((src / "config.json").read_text())
    vision = CLIPVisionConfig(**config["vision_config"]).to_dict()
    for key in ("vision_feature_layer", "image_grid_pinpoints"):
        if key in config:
            vision[key] = config[key]
    vision.setdefault("projection_dim", 768)
    anyres = config.get("architectures", [""])[0].startswith("LlavaNext")
    if anyres:  # what llava_surgery_v2 writes for LLaVA-1.6
        vision.update(image_aspect_ratio="anyres", mm_patch_merge_type="spatial_unpad")
    tower, projector = {}, {}
    for shard in sorted(src.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                k = re.sub(r"^(model\.)?", "", key)
                if k.startswith("vision_tower."):
                    k = k[len("vision_tower."):]
                    tower[k if k.startswith("vision_model.") else "vision_model." + k] = f.get_tensor(key)
                elif k.startswith("multi_modal_projector."):
                    projector[k] = f.get_tensor(key)
                elif k == "image_newline":
                    projector[k] = f.get_tensor(key)
    if not tower or not projector:
        raise RuntimeError(f"{src}: no vision_tower.* / multi_modal_projector.* tensors found")
    mean, std = None, None
    pre = src / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text())
        mean, std = p.get("image_mean"), p.get("image_std")
    with tempfile.TemporaryDirectory(prefix="imgscribe-llava-") as tmp:
        work = Path(tmp)
        (work / "config.json").write_text(json.dumps(vision))
        save_file({k: v.contiguous() for k, v in tower.items()}, str(work / "model.safetensors"))
        torch.save(projector, str(work / "llava.projector"))
        argv = ["-m", str(work), "--llava-projector", str(work / "llava.projector"), "--output-dir", str(work),
                "--clip-model-is-vision"]  # fmt: skip
        if job.get("outtype") == "f32":
            argv.append("--use-f32")
        if mean and std:
            argv += ["--image-mean", *map(str, mean), "--image-std", *map(str, std)]
        fake = types.ModuleType("transformers")
        fake.CLIPVisionModel = _LegacyCLIP
        fake.CLIPModel = fake.CLIPProcessor = fake.SiglipVisionModel = types.SimpleNamespace(from_pretrained=_unavailable)
        real = sys.modules.get("transformers")
        sys.modules["transformers"] = fake
        sys.argv = ["convert_image_encoder_to_gguf.py", *argv]
        try:
            runpy.run_path(str(llama / "tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py"), run_name="__main__")
        finally:
            if real is not None:
                sys.modules["transformers"] = real
            else:
                sys.modules.pop("transformers", None)
        made = next(work.glob("mmproj-*.gguf"))
        shutil.move(str(made), job["outfile"])


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    llama = Path(spec["llama_cpp_dir"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["NO_LOCAL_GGUF"] = "1"  # the driver puts gguf-py on sys.path itself
    logging.basicConfig(level=logging.INFO)
    converter = _install_fixes(llama)
    results = []
    for job in spec["jobs"]:
        start = time.time()
        print(f"imgscribe: job {job['kind']} {job['src']} -> {job['outfile']}", flush=True)
        try:
            if job["kind"] == "legacy_llava":
                _legacy_llava_job(llama, job)
            else:
                _hf_job(converter, job)
            if not Path(job["outfile"]).is_file():
                raise RuntimeError("the converter finished without writing the file")
            results.append({"outfile": job["outfile"], "ok": True, "seconds": round(time.time() - start, 2)})
        except BaseException as exc:  # noqa: BLE001 - reported per job
            traceback.print_exc()
            results.append({"outfile": job["outfile"], "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        print("imgscribe-result " + json.dumps(results[-1]), flush=True)
    Path(spec["results"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
