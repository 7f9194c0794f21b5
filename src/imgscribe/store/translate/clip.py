"""The projector's side: the vision tower inside Ollama's single-file GGUFs, written out as the
``mmproj`` file llama.cpp's ``clip.cpp`` loads, and old LLaVA projectors given their type.

Each handler mirrors a clip-side handler of Ollama's compatibility layer (``llama/compat/
llama-ollama-compat.cpp`` at ollama/ollama fb30760; line numbers of that file): the same keys copied
under ``clip.*`` or injected with the same defaults, the same tensor renames in the same order
(``rename_tensors_containing``: the first occurrence of a substring, for every tensor that has it).
Ollama also promotes ``v.patch_embd`` to F32 for Metal's IM2COL; the CPU and CUDA builds do not need it,
so the tensors are copied as published.
"""

from __future__ import annotations

from ...formats.gguf import GGUFHeader
from ...formats.gguf_write import FileSpec, TensorSpec, Value, permute_rows
from .text import is_vision_tensor

__all__ = ["CLIP_HANDLERS", "llava_projector"]

HALF = [0.5, 0.5, 0.5]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _clip_spec(header: GGUFHeader, arch: str, copies: dict[str, str]) -> FileSpec:
    """Only the vision tensors and ``general.*``; ``clip.*`` keys copied from ``<arch>.*``."""
    keep = ("general.name", "general.file_type", "general.quantization_version")
    spec = FileSpec("clip", drop=lambda k: k not in keep,
                    copy={f"clip.{new}": f"{arch}.{old}" for new, old in copies.items()})  # fmt: skip
    spec.tensors = [TensorSpec(name, name) for name in header.tensors if is_vision_tensor(name)]
    return spec


def _flags(spec: FileSpec, header: GGUFHeader, projector: str, activation: str, mean, std) -> None:
    """The keys every handler injects when missing: image statistics, encoder flag, activation, type."""
    for key, value in (("clip.vision.image_mean", Value(mean, "array", "f32")),
                       ("clip.vision.image_std", Value(std, "array", "f32")),
                       ("clip.has_vision_encoder", Value(True, "bool")),
                       (f"clip.{activation}", Value(True, "bool"))):  # fmt: skip
        if key not in header.metadata and key not in spec.copy:
            spec.set[key] = value
    spec.set["clip.projector_type"] = Value(projector, "str")


def _rename(spec: FileSpec, renames: list[tuple[str, str]], exact: dict[str, str] = {}) -> None:  # noqa: B006
    for t in spec.tensors:
        t.name = exact.get(t.name, t.name)
    for old, new in renames:
        for t in spec.tensors:
            if old in t.name:
                t.name = t.name.replace(old, new, 1)


def _done(spec: FileSpec, what: str) -> tuple[FileSpec, list[str]]:
    return spec, [f"the vision encoder inside the GGUF written out as a {what} projector (mmproj) file"]


_VISION = {"vision.block_count": "vision.block_count", "vision.embedding_length": "vision.embedding_length",
           "vision.feed_forward_length": "vision.feed_forward_length", "vision.image_size": "vision.image_size",
           "vision.patch_size": "vision.patch_size", "vision.attention.head_count": "vision.attention.head_count",
           "vision.projection_dim": "embedding_length"}  # fmt: skip


def gemma3(header: GGUFHeader) -> tuple[FileSpec, list[str]]:
    """``handle_gemma3_clip`` (l. 1872-1915)."""
    spec = _clip_spec(header, "gemma3", {**_VISION, "vision.attention.layer_norm_epsilon": "vision.attention.layer_norm_epsilon"})
    _flags(spec, header, "gemma3", "use_gelu", HALF, HALF)
    _rename(spec, [("v.patch_embedding", "v.patch_embd"), ("v.position_embedding", "v.position_embd"),
                   ("v.post_layernorm", "v.post_ln"), (".layer_norm1", ".ln1"), (".layer_norm2", ".ln2"),
                   (".attn_output", ".attn_out"), (".mlp.fc1", ".ffn_down"), (".mlp.fc2", ".ffn_up"),
                   ("mm.mm_input_projection", "mm.input_projection"), ("mm.mm_soft_emb_norm", "mm.soft_emb_norm")])  # fmt: skip
    return _done(spec, "Gemma 3")


def qwen25vl(header: GGUFHeader) -> tuple[FileSpec, list[str]]:
    """``handle_qwen25vl_clip`` (l. 2957-3022)."""
    copies = {new: old for new, old in _VISION.items() if new not in ("vision.feed_forward_length", "vision.image_size")}
    for key in ("attention.layer_norm_epsilon", "num_channels", "spatial_merge_size", "window_size"):
        copies[f"vision.{key}"] = f"vision.{key}"
    spec = _clip_spec(header, "qwen25vl", copies)
    m = header.metadata
    up = header.tensors.get("v.blk.0.ffn_up.weight")
    if "qwen25vl.vision.feed_forward_length" in m:
        spec.copy["clip.vision.feed_forward_length"] = "qwen25vl.vision.feed_forward_length"
    elif up is not None:
        spec.set["clip.vision.feed_forward_length"] = Value(int(up[0][1]), "u32")
    full = m.get("qwen25vl.vision.fullatt_block_indexes")
    spec.set["clip.vision.n_wa_pattern"] = Value(int(full[0]) + 1 if isinstance(full, list) and full else 8, "u32")
    spec.set["clip.vision.image_size"] = Value(560, "u32")  # Ollama's default (no image_size in the HF config)
    _flags(spec, header, "qwen2.5vl_merger", "use_silu", CLIP_MEAN, CLIP_STD)
    _rename(spec, [], exact={"v.merger.ln_q.weight": "v.post_ln.weight", "v.merger.mlp.0.weight": "mm.0.weight",
                             "v.merger.mlp.0.bias": "mm.0.bias", "v.merger.mlp.2.weight": "mm.2.weight",
                             "v.merger.mlp.2.bias": "mm.2.bias", "v.patch_embd_0.weight": "v.patch_embd.weight",
                             "v.patch_embd_1.weight": "v.patch_embd.weight.1"})  # fmt: skip
    return _done(spec, "Qwen2.5-VL")


def mistral3(header: GGUFHeader) -> tuple[FileSpec, list[str]]:
    """``handle_mistral3_clip`` (l. 2878-2950), with one difference: Ollama zero-fills
    ``v.token_embd.img_break`` (its model files lack it; re-reading a quantized row was "heavyweight");
    here it is the ``[IMG_BREAK]`` row of ``token_embd``, as llama.cpp's converter writes it."""
    copies = {**_VISION, "vision.num_channels": "vision.num_channels",
              "vision.spatial_merge_size": "spatial_merge_size", "rope.freq_base": "vision.rope.freq_base"}  # fmt: skip
    spec = _clip_spec(header, "mistral3", copies)
    m = header.metadata
    if "clip.vision.attention.layer_norm_epsilon" not in m:
        spec.set["clip.vision.attention.layer_norm_epsilon"] = Value(1e-5, "f32")
    _flags(spec, header, "pixtral", "use_silu", [0.48145467, 0.4578275, 0.40821072], [0.26862955, 0.26130259, 0.2757771])
    heads = m.get("mistral3.vision.attention.head_count")
    if isinstance(heads, int) and heads > 0:  # the converter left vision Q/K in Hugging Face order (l. 2835)
        for t in spec.tensors:
            if t.name.endswith((".attn_q.weight", ".attn_k.weight")) and t.name.startswith("v.blk."):
                t.transform = permute_rows(heads)
    brk = header.special_tokens.get("[IMG_BREAK]")
    if "v.token_embd.img_break" not in header.tensors and "token_embd.weight" in header.tensors:
        from .rows import TokenRow

        width = int(header.tensors["token_embd.weight"][0][0])
        spec.tensors.append(TensorSpec("v.token_embd.img_break", "token_embd.weight", (width,),
                                       transform=TokenRow(brk) if brk is not None else TokenRow(None)))  # fmt: skip
    _rename(spec, [("v.patch_conv", "v.patch_embd"), ("v.encoder_norm", "v.pre_ln"), (".attn_output", ".attn_out"),
                   (".attn_norm", ".ln1"), (".ffn_norm", ".ln2"), ("mm.linear_1", "mm.1"), ("mm.linear_2", "mm.2"),
                   ("mm.patch_merger.merging_layer", "mm.patch_merger"), ("mm.norm", "mm.input_norm")])  # fmt: skip
    spec, changes = _done(spec, "Pixtral")
    changes.append("vision attn_q/attn_k rows put in llama.cpp's RoPE order")
    if brk is None:
        changes.append("v.token_embd.img_break zero-filled (no [IMG_BREAK] token in the vocabulary), as Ollama does")
    return spec, changes


def llama4(header: GGUFHeader) -> tuple[FileSpec, list[str]]:
    """``handle_llama4_clip`` (l. 2742-2785)."""
    copies = {**_VISION, "vision.attention.layer_norm_epsilon": "vision.layer_norm_epsilon"}
    spec = _clip_spec(header, "llama4", copies)
    ratio = header.metadata.get("llama4.vision.pixel_shuffle_ratio")
    scale = round(1 / ratio) if isinstance(ratio, float) and ratio > 0 else 2
    if "clip.vision.projector.scale_factor" not in header.metadata:
        spec.set["clip.vision.projector.scale_factor"] = Value(scale or 2, "u32")
    _flags(spec, header, "llama4", "use_gelu", HALF, HALF)
    spec.set["clip.vision.projector_type"] = Value("llama4", "str")
    _rename(spec, [("v.vision_adapter.mlp.fc1", "mm.model.mlp.1"), ("v.vision_adapter.mlp.fc2", "mm.model.mlp.2"),
                   ("mm.linear_1", "mm.model.fc"), ("v.class_embedding", "v.class_embd"),
                   ("v.layernorm_post", "v.post_ln"), ("v.layernorm_pre", "v.pre_ln"),
                   ("v.patch_embedding", "v.patch_embd"), (".attn_output", ".attn_out"), (".attn_norm", ".ln1"),
                   (".ffn_norm", ".ln2"), (".mlp.fc1", ".ffn_up"), (".mlp.fc2", ".ffn_down")],
            exact={"v.positional_embedding_vlm": "v.position_embd.weight"})  # fmt: skip
    return _done(spec, "Llama 4")


def llava_projector(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``handle_missing_llava_projector_type`` (l. 3214-3231): a projector with a vision encoder and no
    type is an old LLaVA/BakLLaVA one, an ``mlp``."""
    m = header.metadata
    if not header.is_projector or m.get("clip.has_vision_encoder") is not True:
        return None
    if "clip.projector_type" in m or "clip.vision.projector_type" in m:
        return None
    spec = FileSpec("clip", tensors=[TensorSpec(name, name) for name in header.tensors])
    spec.set["clip.projector_type"] = Value("mlp", "str")
    return spec, ["clip.projector_type = mlp added (an old LLaVA projector without a type, which llama.cpp refuses)"]


#: architecture of a single-file model -> the handler that writes its projector
CLIP_HANDLERS = {"gemma3": gemma3, "qwen25vl": qwen25vl, "mistral3": mistral3, "llama4": llama4}
