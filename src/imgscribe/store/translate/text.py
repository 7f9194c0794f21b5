"""The text model's side of Ollama's published GGUFs, as the pinned llama.cpp loads them.

Each handler mirrors one text-side handler of Ollama's in-memory compatibility layer
(``llama/compat/llama-ollama-compat.cpp`` at ollama/ollama fb30760; the line numbers below are of that
file), written to disk once instead of at every load: the same keys copied, injected or renamed, and
the embedded vision tensors (``v.*``, ``mm.*``) left out of the text model (they go to the projector,
``clip.py``).
"""

from __future__ import annotations

from ...formats.gguf import GGUFHeader
from ...formats.gguf_write import FileSpec, TensorSpec, Value

__all__ = ["TEXT_HANDLERS", "is_vision_tensor"]

#: Gemma 3's chat template, as Ollama injects it into blobs that lack one (``kGemma3ChatTemplate``, l. 216).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


def is_vision_tensor(name: str) -> bool:
    return name.startswith(("v.", "mm."))


def _text_spec(header: GGUFHeader, arch: str, source_arch: str | None = None) -> FileSpec:
    """The text model: every tensor but the vision tower's, every key but ``<arch>.vision.*``/``.mm.*``."""
    src = source_arch or arch
    tensors = [TensorSpec(name, name) for name in header.tensors if not is_vision_tensor(name)]
    return FileSpec(arch, drop=lambda k: k.startswith((f"{src}.vision.", f"{src}.mm.")), tensors=tensors)


def _missing(header: GGUFHeader, key: str) -> bool:
    return key not in header.metadata


def _inject(spec: FileSpec, header: GGUFHeader, key: str, value: Value, changes: list[str]) -> None:
    if _missing(header, key) and key not in spec.copy:
        spec.set[key] = value
        changes.append(f"added {key} = {value.value if value.kind != 'str' or len(value.value) < 40 else '…'}")


def _copy(spec: FileSpec, header: GGUFHeader, new: str, old: str, changes: list[str], drop_old: bool = False) -> None:
    if old in header.metadata and _missing(header, new):
        spec.copy[new] = old
        changes.append(f"{old} copied to {new}")
    if drop_old and old in header.metadata:
        previous = spec.drop
        spec.drop = lambda k, previous=previous: k == old or previous(k)


def _pre_missing(header: GGUFHeader) -> bool:
    """``string_kv_missing_or_default`` (l. 203)."""
    value = header.metadata.get("tokenizer.ggml.pre")
    return value is None or value in ("", "default")


def gemma3(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``detect_ollama_gemma3`` / ``handle_gemma3`` (l. 222-283)."""
    m, changes = header.metadata, []
    quirks = ("gemma3.mm.tokens_per_image" in m or "gemma3.rope.global.freq_base" in m
              or "gemma3.rope.local.freq_base" in m or "tokenizer.ggml.add_padding_token" in m
              or "tokenizer.ggml.add_unknown_token" in m or "gemma3.attention.layer_norm_rms_epsilon" not in m
              or any(is_vision_tensor(t) for t in header.tensors))  # fmt: skip
    if header.architecture != "gemma3" or not quirks:
        return None
    spec = _text_spec(header, "gemma3")
    _copy(spec, header, "gemma3.rope.freq_base", "gemma3.rope.global.freq_base", changes, drop_old=True)
    _copy(spec, header, "gemma3.rope.freq_base_swa", "gemma3.rope.local.freq_base", changes, drop_old=True)
    _inject(spec, header, "gemma3.attention.layer_norm_rms_epsilon", Value(1e-6, "f32"), changes)
    _inject(spec, header, "gemma3.rope.freq_base", Value(1000000.0, "f32"), changes)
    _inject(spec, header, "gemma3.rope.freq_base_swa", Value(10000.0, "f32"), changes)
    _inject(spec, header, "tokenizer.chat_template", Value(GEMMA3_TEMPLATE, "str"), changes)
    context = m.get("gemma3.context_length")
    if isinstance(context, int) and context >= 131072:
        _inject(spec, header, "gemma3.rope.scaling.type", Value("linear", "str"), changes)
        _inject(spec, header, "gemma3.rope.scaling.factor", Value(8.0, "f32"), changes)
    embd = header.tensors.get("token_embd.weight")
    if embd is not None:  # Ollama leaves multimodal tokens (<image_soft_token>) past the embedding rows
        rows = int(embd[0][1])
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            if header.length(key) > rows:
                spec.truncate[key] = rows
                changes.append(f"{key} cut from {header.length(key)} to the {rows} rows of token_embd")
    return spec, changes


def qwen25vl(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``handle_qwen25vl`` (l. 1770-1803): architecture ``qwen25vl`` -> ``qwen2vl``, its keys renamed,
    ``rope.mrope_section`` (3 numbers) -> ``rope.dimension_sections`` (4, the last 0)."""
    if header.architecture != "qwen25vl":
        return None
    spec = _text_spec(header, "qwen2vl", source_arch="qwen25vl")
    changes = ["architecture qwen25vl renamed qwen2vl, and its keys with it"]
    for key in header.metadata:
        if key.startswith("qwen25vl.") and not spec.drop(key) and key != "qwen25vl.rope.mrope_section":
            spec.copy["qwen2vl." + key.removeprefix("qwen25vl.")] = key
    spec.drop = lambda k: k.startswith("qwen25vl.")
    section = header.metadata.get("qwen25vl.rope.mrope_section")
    if isinstance(section, list) and len(section) >= 3:
        spec.set["qwen2vl.rope.dimension_sections"] = Value([*map(int, section[:3]), 0], "array", "i32")
        changes.append("rope.mrope_section written as rope.dimension_sections")
    return spec, changes


def mistral3(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``detect_ollama_mistral3`` / ``handle_mistral3`` (l. 1630-1667): YaRN keys renamed, the
    attention temperature moved, the ``tekken`` pre-tokenizer when none is named."""
    m = header.metadata
    quirks = ("mistral3.rope.scaling.beta_fast" in m or "mistral3.rope.scaling.mscale_all_dim" in m
              or "mistral3.rope.scaling_beta" in m or any(is_vision_tensor(t) for t in header.tensors))  # fmt: skip
    if header.architecture != "mistral3" or not quirks:
        return None
    spec, changes = _text_spec(header, "mistral3"), []
    for old, new in (("rope.scaling.beta_fast", "rope.scaling.yarn_beta_fast"),
                     ("rope.scaling.beta_slow", "rope.scaling.yarn_beta_slow"),
                     ("rope.scaling.mscale_all_dim", "rope.scaling.yarn_log_multiplier"),
                     ("rope.scaling_beta", "attention.temperature_scale")):  # fmt: skip
        _copy(spec, header, f"mistral3.{new}", f"mistral3.{old}", changes, drop_old=True)
    if _pre_missing(header):
        spec.set["tokenizer.ggml.pre"] = Value("tekken", "str")
        changes.append("tokenizer.ggml.pre set to tekken")
    return spec, changes


def llama4(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``handle_llama4`` (l. 1366-1383): the text side matches llama.cpp once the vision tensors are out."""
    if header.architecture != "llama4" or not any(is_vision_tensor(t) for t in header.tensors):
        return None
    return _text_spec(header, "llama4"), []


def llama3_stop(header: GGUFHeader) -> tuple[FileSpec, list[str]] | None:
    """``detect_ollama_llama3_metadata_gap`` / ``handle_llama3_metadata`` (l. 1316-1355): a Llama 3
    instruct model whose EOS is ``<|end_of_text|>`` never stops at the end of its turn (``<|eot_id|>``).
    Ollama checks the ids 128009/128001 of Llama 3's vocabulary; the same tokens are found here by name."""
    m, special = header.metadata, header.special_tokens
    eot, end_of_text = special.get("<|eot_id|>"), special.get("<|end_of_text|>")
    template = str(m.get("tokenizer.chat_template") or "")
    markers = "<|start_header_id|>" in special or "<|start_header_id|>" in template or "<|eot_id|>" in template
    eos = m.get("tokenizer.ggml.eos_token_id")
    if header.architecture != "llama" or eot is None or not markers:
        return None
    if not (_pre_missing(header) or (end_of_text is not None and eos == end_of_text)):
        return None
    spec = FileSpec("llama", tensors=[TensorSpec(name, name) for name in header.tensors])
    changes = []
    if _pre_missing(header):
        spec.set["tokenizer.ggml.pre"] = Value("llama-bpe", "str")
        changes.append("tokenizer.ggml.pre set to llama-bpe")
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        if m.get(key) is None or m.get(key) == end_of_text:
            spec.set[key] = Value(eot, "u32")
            changes.append(f"{key} set to {eot} (<|eot_id|>), the end of a turn, so that answers stop")
    spec.set["tokenizer.ggml.eos_token_ids"] = Value([eot], "array", "i32")
    return spec, changes


#: architecture -> text-side handler (the monolithic ones also have a clip side, ``clip.py``)
TEXT_HANDLERS = {"gemma3": gemma3, "qwen25vl": qwen25vl, "mistral3": mistral3, "llama4": llama4, "llama": llama3_stop}
