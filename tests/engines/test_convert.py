"""GGUF + mmproj conversion with llama.cpp's own converter (imgscribe convert), its fixes, the
GGUF reader behind `imgscribe create --from FILE.gguf --mmproj FILE`, and llama-quantize."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import LLAMA_FAMILIES, SERVES, converted, gguf_pair, llama_cpp_source  # noqa: E402

from imgscribe.engines.llamacpp.convert import plan  # noqa: E402
from imgscribe.errors import InvalidRequest, Unsupported  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import find_gguf_pair, manifest_for_gguf, read_gguf  # noqa: E402

# family -> (model architecture, projector type) as llama.cpp names them
EXPECTED = {
    "llava15": ("llama", "mlp"),
    "llava_llama3": ("llama", "mlp"),
    "llava_phi3": ("phi3", "mlp"),
    "llava_next": ("llama", "mlp"),
    "qwen2_vl": ("qwen2vl", "qwen2vl_merger"),
    "qwen2_5_vl": ("qwen2vl", "qwen2.5vl_merger"),
    "gemma3": ("gemma3", "gemma3"),
    "pixtral": ("llama", "pixtral"),
    "mistral3": ("mistral3", "pixtral"),
    "llama4": ("llama4", "llama4"),
    "janus": ("llama", "janus_pro"),
    "idefics3": ("llama", "idefics3"),
    "smolvlm": ("llama", "idefics3"),
}


def _config(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_plan_picks_converter_and_fixes(tmp_path):
    p = plan(_config(tmp_path, {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                                "vision_config": {"model_type": "siglip_vision_model"}}))  # fmt: skip
    assert p.projector.kind == "hf" and p.projector.fixes["hub_layout"] is True
    p = plan(_config(tmp_path, {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
                                "vision_config": {"model_type": "qwen2_vl"}}))  # fmt: skip
    assert p.text.fixes["pre_fallback"] == "qwen2" and not p.projector.fixes["hub_layout"]
    p = plan(_config(tmp_path, {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
                                "vision_config": {"model_type": "clip_vision_model"}}))  # fmt: skip
    assert p.projector.kind == "legacy_llava"
    p = plan(_config(tmp_path, {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    assert p.projector is None
    with pytest.raises(Unsupported, match="Phi4ForCausalLMV"):
        plan(_config(tmp_path, {"architectures": ["Phi4MultimodalForCausalLM"], "model_type": "phi4_multimodal"}))
    with pytest.raises(InvalidRequest, match="config.json"):
        plan(tmp_path / "nothing")


@pytest.mark.slow
@pytest.mark.parametrize("family", SERVES)
def test_family_converts(family):
    llama_cpp_source()
    model, mmproj = gguf_pair(family)
    arch, projector = EXPECTED[family]
    head = read_gguf(model)
    assert head.architecture == arch
    assert head.metadata.get("tokenizer.chat_template"), "the chat template travels in the GGUF"
    assert head.quantization == "F32"
    proj = read_gguf(mmproj)
    assert proj.is_projector
    assert (proj.metadata.get("clip.projector_type") or proj.metadata.get("clip.vision.projector_type")) == projector
    info = manifest_for_gguf(family, model, mmproj).info
    assert info.engine == "llamacpp" and "vision" in info.capabilities and info.format == "gguf"


@pytest.mark.parametrize("family", [f for f, what in LLAMA_FAMILIES.items() if what in ("unsupported", "convert fails")])
def test_unconvertible_family_says_why(family):
    llama_cpp_source()
    result = converted(family)
    assert isinstance(result, BaseException)
    assert "not supported" in str(result) or "llama.cpp" in str(result)


def test_gguf_reader_errors(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(InvalidRequest, match="not a GGUF"):
        read_gguf(junk)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 5))
    with pytest.raises(InvalidRequest, match="not a valid GGUF"):
        read_gguf(cut)
    with pytest.raises(InvalidRequest, match="no such file"):
        manifest_for_gguf("x", tmp_path / "missing.gguf")


@pytest.mark.slow
def test_model_and_projector_swapped_are_refused(tmp_path):
    llama_cpp_source()
    model, mmproj = gguf_pair("gemma3")
    with pytest.raises(InvalidRequest, match="is a projector"):
        manifest_for_gguf("x", mmproj)
    with pytest.raises(InvalidRequest, match="not a projector"):
        manifest_for_gguf("x", model, model)
    assert find_gguf_pair(model.parent) == (model, mmproj)
    store = Store(tmp_path / "models")
    store.create("g3", manifest_for_gguf("g3", model.parent))  # a folder: the pair inside it
    again = store.resolve("g3")
    assert again.files == {"model": str(model.resolve()), "projector": str(mmproj.resolve())}
    assert again.info.quantization_level == "F32" and again.info.family == "gemma3"


@pytest.mark.slow
def test_quantize_q4_k_m(tmp_path):
    from imgscribe.engines.llamacpp.binary import tool_binary
    from imgscribe.engines.llamacpp.convert import quantize
    from imgscribe.errors import EngineFailed

    try:
        tool_binary("llama-quantize")
    except EngineFailed as exc:
        from _llamacpp_support import _missing

        _missing(str(exc))
    model, _ = gguf_pair("qwen2_vl")
    out = quantize(model, tmp_path / "q.gguf", "Q4_K_M")
    head = read_gguf(out)
    assert head.quantization == "Q4_K_M"
    assert out.stat().st_size < model.stat().st_size


@pytest.mark.slow
def test_cli_convert_and_create(tmp_path, monkeypatch):
    """`imgscribe convert CKPT --out DIR --create NAME` (one family, through the CLI)."""
    from _llamacpp_support import checkpoint

    from imgscribe.cli import main

    llama_cpp_source()
    src = checkpoint("gemma3")
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "models"))
    rc = main(["convert", str(src), "--out", str(tmp_path / "out"), "--outtype", "f16", "--create", "g3cli"])
    assert rc == 0
    manifest = Store(tmp_path / "models").resolve("g3cli")
    assert manifest.engine == "llamacpp"
    assert Path(manifest.files["model"]).name == "gemma3-f16.gguf"
    assert Path(manifest.files["projector"]).name == "mmproj-gemma3-f16.gguf"
    assert read_gguf(manifest.files["model"]).quantization == "F16"
