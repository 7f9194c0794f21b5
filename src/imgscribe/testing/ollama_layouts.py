"""Test fixtures: GGUFs laid out as Ollama's library publishes them, made offline from llama.cpp's own
conversion of a tiny checkpoint (a model GGUF and its mmproj).

Each builder undoes what Ollama's compatibility layer does (``llama/compat/llama-ollama-compat.cpp``
at ollama/ollama fb30760) and writes the keys Ollama's converter writes (``convert/convert_*.go``), so
that translating the fixture back must give llama.cpp's files — which the tests check tensor by tensor
and through llama-server. Line numbers are of those files. The tensor data is llama.cpp's (Ollama's
converter writes the same weights under other names; where it writes them differently, as the vision
Q/K rows of mistral3, the builder does the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYOUTS", "llama3_end_of_text", "monolithic", "untyped_projector"]


def _fields(reader) -> dict[str, tuple[Any, Any, Any]]:
    import gguf

    out = {}
    for name, f in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        item = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        out[name] = (f.contents(), f.types[0], item)
    return out


def _write(dest: Path, arch: str, keys: dict[str, tuple[Any, Any, Any]], tensors: list[tuple[str, np.ndarray, Any]]) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(dest), arch)
    for name, (value, kind, item) in keys.items():
        if name != "general.architecture":
            writer.add_key_value(name, value, kind, sub_type=item)
    for name, data, raw in tensors:
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, raw if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data, _ in tensors:
        writer.write_tensor_data(np.ascontiguousarray(data))
    writer.close()
    return dest


def _rename(name: str, renames: list[tuple[str, str]], exact: dict[str, str] = {}) -> str:  # noqa: B006
    """The inverse of the compat layer's renames: undone last first."""
    for new, old in reversed(renames):
        if old in name:
            name = name.replace(old, new, 1)
    return {v: k for k, v in exact.items()}.get(name, name)


def _unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    total = rows.shape[0]
    order = np.arange(total).reshape(n_head, 2, total // n_head // 2).swapaxes(1, 2).reshape(total)
    out = np.empty_like(rows)
    out[order] = rows
    return out


U32, F32, I32, STR = "u32", "f32", "i32", "str"


def _kv(value: Any, kind: str, item: str | None = None):
    import gguf

    t = {"u32": gguf.GGUFValueType.UINT32, "f32": gguf.GGUFValueType.FLOAT32, "i32": gguf.GGUFValueType.INT32,
         "str": gguf.GGUFValueType.STRING, "array": gguf.GGUFValueType.ARRAY}  # fmt: skip
    return (value, t[kind], t[item] if item else None)


# family -> (arch Ollama writes, text key prefix llama.cpp writes, vision renames (Ollama name, llama.cpp
# name) in the compat layer's order, exact renames, clip key -> Ollama key)
LAYOUTS: dict[str, dict[str, Any]] = {
    "gemma3": {  # convert_gemma3.go l. 136-149 (vision keys), compat l. 1872-1885 (names)
        "arch": "gemma3", "text": "gemma3",
        "renames": [("v.patch_embedding", "v.patch_embd"), ("v.position_embedding", "v.position_embd"),
                    ("v.post_layernorm", "v.post_ln"), (".layer_norm1", ".ln1"), (".layer_norm2", ".ln2"),
                    (".attn_output", ".attn_out"), (".mlp.fc1", ".ffn_down"), (".mlp.fc2", ".ffn_up"),
                    ("mm.mm_input_projection", "mm.input_projection"), ("mm.mm_soft_emb_norm", "mm.soft_emb_norm")],
        "exact": {},
        "keys": ["block_count", "embedding_length", "feed_forward_length", "image_size", "patch_size",
                 "attention.head_count", "attention.layer_norm_epsilon"],
    },
    "qwen2_5_vl": {  # convert_qwen25vl.go (qwen25vl.vision.* keys), compat l. 2957-3022
        "arch": "qwen25vl", "text": "qwen2vl", "renames": [],
        "exact": {"v.merger.ln_q.weight": "v.post_ln.weight", "v.merger.mlp.0.weight": "mm.0.weight",
                  "v.merger.mlp.0.bias": "mm.0.bias", "v.merger.mlp.2.weight": "mm.2.weight",
                  "v.merger.mlp.2.bias": "mm.2.bias", "v.patch_embd_0.weight": "v.patch_embd.weight",
                  "v.patch_embd_1.weight": "v.patch_embd.weight.1"},
        "keys": ["block_count", "embedding_length", "patch_size", "attention.head_count", "attention.layer_norm_epsilon"],
    },
    "mistral3": {  # convert_mistral.go (mistral3.vision.* keys), compat l. 2809-2876
        "arch": "mistral3", "text": "mistral3",
        "renames": [("v.patch_conv", "v.patch_embd"), ("v.encoder_norm", "v.pre_ln"), (".attn_output", ".attn_out"),
                    (".attn_norm", ".ln1"), (".ffn_norm", ".ln2"), ("mm.linear_1", "mm.1"), ("mm.linear_2", "mm.2"),
                    ("mm.patch_merger.merging_layer", "mm.patch_merger"), ("mm.norm", "mm.input_norm")],
        "exact": {},
        "keys": ["block_count", "embedding_length", "feed_forward_length", "image_size", "patch_size",
                 "attention.head_count"],
    },
    "llama4": {  # convert_llama4.go, compat l. 2712-2785
        "arch": "llama4", "text": "llama4",
        "renames": [("v.vision_adapter.mlp.fc1", "mm.model.mlp.1"), ("v.vision_adapter.mlp.fc2", "mm.model.mlp.2"),
                    ("mm.linear_1", "mm.model.fc"), ("v.class_embedding", "v.class_embd"),
                    ("v.layernorm_post", "v.post_ln"), ("v.layernorm_pre", "v.pre_ln"),
                    ("v.patch_embedding", "v.patch_embd"), (".attn_output", ".attn_out"), (".attn_norm", ".ln1"),
                    (".ffn_norm", ".ln2"), (".mlp.fc1", ".ffn_up"), (".mlp.fc2", ".ffn_down")],
        "exact": {"v.positional_embedding_vlm": "v.position_embd.weight"},
        "keys": ["block_count", "embedding_length", "feed_forward_length", "image_size", "patch_size",
                 "attention.head_count"],
    },
}


def monolithic(family: str, model: Path, mmproj: Path, dest: Path, tokenizer_quirks: bool = True) -> Path:
    """One GGUF holding the text model and the vision tower, as Ollama publishes ``family``.
    ``tokenizer_quirks=False`` keeps llama.cpp's chat template and pre-tokenizer (the translation
    restores Gemma 3's and Mistral's real ones, which the tiny tokenizers are not), so that prompts
    tokenize alike and answers can be compared token for token."""
    import gguf

    layout = LAYOUTS[family]
    arch, text = layout["arch"], layout["text"]
    m, p = gguf.GGUFReader(model), gguf.GGUFReader(mmproj)
    keys = _fields(m)
    clip = _fields(p)
    if arch != text:  # Ollama's own architecture name, its keys with it (qwen25vl: compat l. 1776-1803)
        keys = {k.replace(f"{text}.", f"{arch}.", 1): v for k, v in keys.items()}
    tensors = [(t.name, t.data, t.tensor_type) for t in m.tensors]
    for short in layout["keys"]:
        if f"clip.vision.{short}" in clip:
            keys[f"{arch}.vision.{short}"] = clip[f"clip.vision.{short}"]
    heads = int(clip["clip.vision.attention.head_count"][0])
    for t in p.tensors:
        if family == "mistral3" and t.name == "v.token_embd.img_break":
            continue  # not in Ollama's files (compat l. 2797-2806)
        data = t.data
        if family == "mistral3" and t.name.startswith("v.blk.") and t.name.endswith((".attn_q.weight", ".attn_k.weight")):
            data = _unpermute(np.asarray(data), heads)  # convert_mistral.go repacks only the text Q/K (compat l. 2835)
        tensors.append((_rename(t.name, layout["renames"], layout["exact"]), data, t.tensor_type))
    if family == "gemma3":  # every published gemma3 lacks the RMS epsilon; the rope keys are nested (compat l. 219-233)
        keys.pop("gemma3.attention.layer_norm_rms_epsilon", None)
        if tokenizer_quirks:
            keys.pop("tokenizer.chat_template", None)
        if "gemma3.rope.freq_base_swa" in keys:
            keys["gemma3.rope.local.freq_base"] = keys.pop("gemma3.rope.freq_base_swa")
        keys["gemma3.mm.tokens_per_image"] = _kv(16, U32)  # convert_gemma3.go l. 149
        tokens = keys["tokenizer.ggml.tokens"]  # an extra multimodal token past token_embd (compat l. 264-276)
        keys["tokenizer.ggml.tokens"] = ([*tokens[0], "<image_soft_token_extra>"], tokens[1], tokens[2])
        for key, extra in (("tokenizer.ggml.scores", 0.0), ("tokenizer.ggml.token_type", 4)):
            if key in keys:
                keys[key] = ([*keys[key][0], extra], keys[key][1], keys[key][2])
    if family == "qwen2_5_vl":
        sections = keys.pop("qwen25vl.rope.dimension_sections")
        keys["qwen25vl.rope.mrope_section"] = _kv([int(x) for x in sections[0][:3]], "array", I32)
        pattern = int(clip["clip.vision.n_wa_pattern"][0])
        depth = int(clip["clip.vision.block_count"][0])
        keys["qwen25vl.vision.fullatt_block_indexes"] = _kv(list(range(pattern - 1, depth, pattern)), "array", I32)
        keys["qwen25vl.vision.num_channels"] = _kv(3, U32)
        keys["qwen25vl.vision.spatial_merge_size"] = _kv(2, U32)
        keys["qwen25vl.vision.window_size"] = _kv(112, U32)
    if family == "mistral3":
        if tokenizer_quirks:
            keys.pop("tokenizer.ggml.pre", None)  # "no pre-tokenizer" (compat l. 1656)
        keys["mistral3.vision.num_channels"] = _kv(3, U32)
        keys["mistral3.spatial_merge_size"] = clip["clip.vision.spatial_merge_size"]
    if family == "llama4":
        keys["llama4.vision.layer_norm_epsilon"] = clip["clip.vision.attention.layer_norm_epsilon"]
        keys["llama4.vision.pixel_shuffle_ratio"] = _kv(0.5, F32)
    return _write(dest, arch, keys, tensors)


def untyped_projector(mmproj: Path, dest: Path) -> Path:
    """An old LLaVA/BakLLaVA projector: no ``clip.projector_type`` (compat l. 3214-3224)."""
    import gguf

    p = gguf.GGUFReader(mmproj)
    keys = {k: v for k, v in _fields(p).items() if k not in ("clip.projector_type", "clip.vision.projector_type")}
    return _write(dest, "clip", keys, [(t.name, t.data, t.tensor_type) for t in p.tensors])


def llama3_end_of_text(model: Path, dest: Path) -> Path:
    """A Llama 3 instruct model whose EOS is ``<|end_of_text|>`` (compat l. 1309-1330). The tiny
    vocabulary has no such token, so its padding token is renamed to it and made the EOS."""
    import gguf

    m = gguf.GGUFReader(model)
    keys = _fields(m)
    tokens = list(keys["tokenizer.ggml.tokens"][0])
    pad = tokens.index("<|finetune_right_pad_id|>")
    tokens[pad] = "<|end_of_text|>"
    keys["tokenizer.ggml.tokens"] = (tokens, *keys["tokenizer.ggml.tokens"][1:])
    keys["tokenizer.ggml.eos_token_id"] = _kv(pad, U32)
    return _write(dest, "llama", keys, [(t.name, t.data, t.tensor_type) for t in m.tensors])
