"""One builder per family: a tiny random-weight model of the real architecture, its real processor
classes and chat template, saved with ``save_pretrained`` as a Hugging Face checkpoint folder.

Every size is shrunk (hidden 32-64, 2-4 layers, small tiles) so a model builds in about a second and
answers in a fraction of one on a CPU; everything else (classes, token layout, tiling, templates)
is the family's own. Output text is random: shapes, token counts and templates are what is real.
"""

from __future__ import annotations

from pathlib import Path

from . import templates
from .tokenizer import make_tokenizer

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _small_text(**kw) -> dict:
    """The language model's shape, shared by every family (about 0.2 M parameters)."""
    base = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2)  # fmt: skip
    base.update(kw)
    return base


def _ids(tok, **named: str | None) -> dict:
    out = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out.update({k: (tok.convert_tokens_to_ids(v) if v else None) for k, v in named.items()})
    return out


def _save(dest: Path, model, processor) -> None:
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    tok = getattr(processor, "tokenizer", None)
    # Some processors (Phi-4-multimodal) drop their chat template from processor_config on save;
    # keep it with the tokenizer as the hub checkpoints do.
    if tok is not None and getattr(processor, "chat_template", None) and not getattr(tok, "chat_template", None):
        tok.chat_template = processor.chat_template
        tok.save_pretrained(dest)


# -- LLaVA 1.5 and its Llama 3 / Phi-3 variants, Pixtral (Llava + Pixtral tower) ---------------------


def _clip_vision(image_size: int = 336):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=14, projection_dim=32,
    )  # fmt: skip


def _llava(dest: Path, tok, text_config, template: str) -> None:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    ip = CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    proc = LlavaProcessor(
        image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=template,
    )  # fmt: skip
    cfg = LlavaConfig(
        vision_config=_clip_vision(), text_config=text_config, image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )  # fmt: skip
    _save(dest, LlavaForConditionalGeneration(cfg).eval(), proc)


def llava15(dest: Path) -> None:
    """LLaVA-1.5 (llava-hf layout): CLIP ViT-L/14-336 shape, Llama 2 language model, 576 image tokens."""
    from transformers import LlamaConfig

    tok = make_tokenizer(["<image>"], extra_special_tokens={"image_token": "<image>"}, add_bos=True)
    tc = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, **_small_text(), **_ids(tok))
    _llava(dest, tok, tc, templates.LLAVA_15)


def llava_llama3(dest: Path) -> None:
    """llava-llama3 (xtuner/llava-llama-3-8b-v1_1-transformers): LLaVA-1.5 with a Llama 3 language model."""
    from transformers import LlamaConfig

    specials = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"]
    tok = make_tokenizer(
        specials, extra_special_tokens={"image_token": "<image>"}, bos="<|begin_of_text|>", eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>", unk=None,
    )  # fmt: skip
    tc = LlamaConfig(
        vocab_size=len(tok), max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        **_small_text(), **_ids(tok),
    )  # fmt: skip
    _llava(dest, tok, tc, templates.LLAVA_LLAMA3)


def llava_phi3(dest: Path) -> None:
    """llava-phi3 (xtuner/llava-phi-3-mini-hf): LLaVA-1.5 with a Phi-3-mini language model."""
    from transformers import Phi3Config

    # "</s>": Phi-3's vocabulary has it, and llama.cpp looks it up when it loads a Phi-3 model
    specials = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<image>", "</s>"]
    tok = make_tokenizer(specials, extra_special_tokens={"image_token": "<image>"}, bos="<s>", eos="<|end|>",
                         pad="<|endoftext|>")  # fmt: skip
    tc = Phi3Config(vocab_size=len(tok), max_position_embeddings=4096, original_max_position_embeddings=4096,
                    **_small_text(), **_ids(tok))  # fmt: skip
    _llava(dest, tok, tc, templates.LLAVA_PHI3)


def llava_next(dest: Path) -> None:
    """LLaVA-1.6 / NeXT (llava-v1.6-mistral-7b-hf): anyres tiling over 336 tiles, Mistral language model."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor, MistralConfig
    from transformers import LlavaNextImageProcessor

    tok = make_tokenizer(["<image>"], extra_special_tokens={"image_token": "<image>"}, add_bos=True)
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6's own
    ip = LlavaNextImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )  # fmt: skip
    proc = LlavaNextProcessor(
        image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=templates.LLAVA_NEXT_MISTRAL,
    )  # fmt: skip
    tc = MistralConfig(vocab_size=len(tok), max_position_embeddings=8192, head_dim=16, **_small_text(), **_ids(tok))
    cfg = LlavaNextConfig(
        vision_config=_clip_vision(), text_config=tc, image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )  # fmt: skip
    _save(dest, LlavaNextForConditionalGeneration(cfg).eval(), proc)


def llava_onevision(dest: Path) -> None:
    """LLaVA-OneVision (llava-onevision-qwen2-*-ov-hf): SigLIP tower, anyres_max_9 tiling, Qwen 2 LM."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, Qwen2Config, SiglipVisionConfig)  # fmt: skip

    from ..engines.transformers.compat import processor_class

    specials = ["<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = make_tokenizer(specials, extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
                         bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None)  # fmt: skip
    TILE, PATCH = 56, 14  # real: 384 / 14 -> 729 tokens a tile
    pinpoints = [[TILE * i, TILE * j] for i in range(1, 4) for j in range(1, 4)]
    ip = LlavaOnevisionImageProcessor(size={"height": TILE, "width": TILE}, image_grid_pinpoints=pinpoints,
                                      image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip
    proc = processor_class("llava_onevision")(
        image_processor=ip, tokenizer=tok, num_image_tokens=(TILE // PATCH) ** 2,
        vision_feature_select_strategy="full", chat_template=templates.LLAVA_ONEVISION,
        **_video_processor("llava_onevision", size={"height": TILE, "width": TILE}, image_mean=[0.5] * 3,
                           image_std=[0.5] * 3),  # a clip's frames at the tower's size, as the real one's
    )  # fmt: skip
    vc = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=TILE, patch_size=PATCH, vision_use_head=False)  # fmt: skip
    tc = Qwen2Config(vocab_size=len(tok), max_position_embeddings=8192, **_small_text(), **_ids(tok))
    cfg = LlavaOnevisionConfig(
        vision_config=vc, text_config=tc, image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
    )  # fmt: skip
    _save(dest, LlavaOnevisionForConditionalGeneration(cfg).eval(), proc)


def _video_processor(family: str, **settings) -> dict:
    """The stock processor needs a video processor where torchvision is there (the image-only one
    from :mod:`.compat` is used without it); ``settings``: the tiny model's sizes."""
    from ..engines.transformers.compat import has_torchvision

    if not has_torchvision():
        return {}
    import transformers

    cls = {
        "qwen2_vl": "Qwen2VLVideoProcessor",
        "qwen2_5_vl": "Qwen2VLVideoProcessor",
        "smolvlm": "SmolVLMVideoProcessor",
        "llava_onevision": "LlavaOnevisionVideoProcessor",
    }[family]
    return {"video_processor": getattr(transformers, cls)(**settings)}


# -- Pixtral and Mistral 3 ---------------------------------------------------------------------------


def _pixtral_parts(merge: int):
    from transformers import MistralConfig, PixtralImageProcessor, PixtralVisionConfig

    from ..engines.transformers.compat import processor_class

    specials = ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    tok = make_tokenizer(specials, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
    ip = PixtralImageProcessor(size={"longest_edge": 512}, patch_size={"height": 16, "width": 16})  # real: 1540 / 1024
    proc = processor_class("pixtral")(
        image_processor=ip, tokenizer=tok, patch_size=16, spatial_merge_size=merge,
        chat_template=templates.MISTRAL_SMALL_3_2,
    )  # fmt: skip
    vc = PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                             head_dim=16, image_size=512, patch_size=16, hidden_act="silu")  # fmt: skip (silu: real Pixtral's)
    tc = MistralConfig(vocab_size=len(tok), max_position_embeddings=8192, head_dim=16, **_small_text(), **_ids(tok))
    return tok, proc, vc, tc


def pixtral(dest: Path) -> None:
    """Pixtral-12B (mistral-community/pixtral-12b layout): LlavaForConditionalGeneration + Pixtral tower."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tok, proc, vc, tc = _pixtral_parts(merge=1)
    cfg = LlavaConfig(
        vision_config=vc, text_config=tc, image_token_id=tok.convert_tokens_to_ids("[IMG]"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
    )  # fmt: skip
    _save(dest, LlavaForConditionalGeneration(cfg).eval(), proc)


def mistral3(dest: Path) -> None:
    """Mistral Small 3.1 / 3.2 (Mistral3ForConditionalGeneration): Pixtral tower with 2x2 patch merging."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    tok, proc, vc, tc = _pixtral_parts(merge=2)
    cfg = Mistral3Config(vision_config=vc, text_config=tc, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                         spatial_merge_size=2, vision_feature_layer=-1)  # fmt: skip
    _save(dest, Mistral3ForConditionalGeneration(cfg).eval(), proc)


# -- Qwen2-VL and Qwen2.5-VL -------------------------------------------------------------------------


def _qwen(dest: Path, family: str) -> None:
    import transformers
    from transformers import Qwen2VLImageProcessor

    from ..engines.transformers.compat import processor_class

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = make_tokenizer(specials, bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None)
    # real: min_pixels 56*56, max_pixels 28*28*1280; a smaller cap keeps tiny tests fast
    ip = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 256)
    text = dict(
        vocab_size=len(tok), max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
        **_small_text(), **_ids(tok),
    )  # fmt: skip
    text["bos_token_id"] = None
    ids = dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    if family == "qwen2_vl":
        vision = dict(depth=3, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
        cfg = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        model = transformers.Qwen2VLForConditionalGeneration(cfg)
    else:
        vision = dict(depth=4, hidden_size=32, out_hidden_size=64, intermediate_size=64, num_heads=2,
                      fullatt_block_indexes=[1, 3], window_size=112)  # fmt: skip
        cfg = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
    proc = processor_class(family)(image_processor=ip, tokenizer=tok, chat_template=templates.QWEN2_VL,
                                   **_video_processor(family))  # fmt: skip
    _save(dest, model.eval(), proc)


def qwen2_vl(dest: Path) -> None:
    """Qwen2-VL-Instruct: native-resolution ViT (14 px patches, 2x2 merge), M-RoPE, Qwen 2 LM."""
    _qwen(dest, "qwen2_vl")


def qwen2_5_vl(dest: Path) -> None:
    """Qwen2.5-VL-Instruct: windowed-attention ViT with full-attention blocks, M-RoPE."""
    _qwen(dest, "qwen2_5_vl")


# -- Gemma 3 -----------------------------------------------------------------------------------------


def gemma3(dest: Path) -> None:
    """Gemma 3 (-it): SigLIP tower, pooled to a fixed number of soft tokens per image."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)  # fmt: skip

    extra = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tok = make_tokenizer(["<start_of_turn>", "<end_of_turn>"], extra_special_tokens=extra, bos="<bos>", eos="<eos>",
                         pad="<pad>", unk="<unk>", add_bos=True)  # fmt: skip
    IMG, PATCH, MM = 224, 14, 16  # real: 896 / 14 / 256
    ip = Gemma3ImageProcessor(size={"height": IMG, "width": IMG}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=templates.GEMMA3, image_seq_length=MM)
    vc = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=IMG, patch_size=PATCH, vision_use_head=False)  # fmt: skip
    ids = _ids(tok)
    ids["eos_token_id"] = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    tc = Gemma3TextConfig(vocab_size=len(tok), head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                          max_position_embeddings=8192, **_small_text(), **ids)  # fmt: skip
    cfg = Gemma3Config(
        text_config=tc, vision_config=vc, mm_tokens_per_image=MM,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )  # fmt: skip
    model = Gemma3ForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["eos_token_id"]
    _save(dest, model, proc)


# -- Llama 4 -----------------------------------------------------------------------------------------


def llama4(dest: Path) -> None:
    """Llama 4 Scout layout: tiled ViT with pixel shuffle, MoE language model (needs torchvision)."""
    from transformers import (Llama4Config, Llama4ForConditionalGeneration, Llama4ImageProcessor, Llama4Processor,
                              Llama4TextConfig, Llama4VisionConfig)  # fmt: skip

    specials = ["<|header_start|>", "<|header_end|>", "<|eot|>", "<|image|>", "<|image_start|>", "<|image_end|>",
                "<|patch|>", "<|tile_x_separator|>", "<|tile_y_separator|>", "<|python_start|>",
                "<|python_end|>"]  # fmt: skip
    tok = make_tokenizer(specials, bos="<|begin_of_text|>", eos="<|eot|>", pad="<|finetune_right_pad|>", unk=None)
    TILE, PATCH = 112, 14  # real: 336 / 14, max_patches 16
    ip = Llama4ImageProcessor(size={"height": TILE, "width": TILE}, max_patches=4)
    proc = Llama4Processor(image_processor=ip, tokenizer=tok, patch_size=PATCH, pixel_shuffle_ratio=0.5,
                           chat_template=templates.llama4())  # fmt: skip
    vc = Llama4VisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
                            image_size=TILE, patch_size=PATCH, vision_output_dim=64, projector_input_dim=64,
                            projector_output_dim=64, pixel_shuffle_ratio=0.5)  # fmt: skip
    tc = Llama4TextConfig(
        vocab_size=len(tok), intermediate_size_mlp=128, head_dim=16, num_local_experts=2, num_experts_per_tok=1,
        interleave_moe_layer_step=1, attention_chunk_size=8192, max_position_embeddings=8192,
        # 4 layers: Llama 4's pattern of 3 chunked-attention layers then 1 full (no-RoPE) one; with
        # fewer there is no full layer and llama-server aborts ("tensor buffer not set").
        **_small_text(num_hidden_layers=4), **_ids(tok),
    )  # fmt: skip
    cfg = Llama4Config(
        vision_config=vc, text_config=tc, boi_token_index=tok.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tok.convert_tokens_to_ids("<|image_end|>"),
        image_token_index=tok.convert_tokens_to_ids("<|patch|>"),
    )  # fmt: skip
    _save(dest, Llama4ForConditionalGeneration(cfg).eval(), proc)


# -- Phi-4-multimodal --------------------------------------------------------------------------------


def phi4mm(dest: Path) -> None:
    """Phi-4-multimodal-instruct: SigLIP tower with dynamic HD crops, audio tower, Phi-4-mini LM
    (``Phi4MultimodalForCausalLM``; needs torchvision)."""
    from transformers import (Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM,
                              Phi4MultimodalImageProcessor, Phi4MultimodalProcessor)  # fmt: skip

    extra = {"image_token": "<|image|>", "audio_token": "<|audio|>"}
    tok = make_tokenizer(["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], extra_special_tokens=extra,
                         bos="<|endoftext|>", eos="<|end|>", pad="<|endoftext|>", unk=None,
                         chat_template=templates.PHI4_MM)  # fmt: skip
    CROP = 448
    ip = Phi4MultimodalImageProcessor(dynamic_hd=4)  # real: dynamic_hd 36
    proc = Phi4MultimodalProcessor(image_processor=ip, audio_processor=Phi4MultimodalFeatureExtractor(), tokenizer=tok,
                                   chat_template=templates.PHI4_MM)  # fmt: skip
    vc = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=CROP,
              crop_size=CROP, patch_size=14, image_token_id=tok.convert_tokens_to_ids("<|image|>"))  # fmt: skip
    ac = dict(hidden_size=32, intermediate_size=64, num_blocks=1, num_attention_heads=2, ext_pw_out_channel=32,
              depthwise_separable_out_channel=32, nemo_conv_channels=32,
              audio_token_id=tok.convert_tokens_to_ids("<|audio|>"))  # fmt: skip
    cfg = Phi4MultimodalConfig(vocab_size=len(tok), max_position_embeddings=8192, original_max_position_embeddings=8192,
                               vision_config=vc, audio_config=ac, **_small_text(), **_ids(tok))  # fmt: skip
    _save(dest, Phi4MultimodalForCausalLM(cfg).eval(), proc)


# -- Janus Pro ---------------------------------------------------------------------------------------


def janus(dest: Path) -> None:
    """DeepSeek Janus-Pro: SigLIP understanding tower + VQ-VAE generation head, Llama LM."""
    from transformers import (JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor,
                              JanusVisionConfig, JanusVQVAEConfig, LlamaConfig)  # fmt: skip

    extra = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
    tok = make_tokenizer(["<|User|>", "<|Assistant|>"], extra_special_tokens=extra, bos="<｜begin▁of▁sentence｜>",
                         eos="<｜end▁of▁sentence｜>", pad="<｜▁pad▁｜>", unk=None,
                         add_bos=True)  # fmt: skip
    IMG, PATCH = 64, 16  # real: 384 / 16 -> 576 tokens
    n = (IMG // PATCH) ** 2
    ip = JanusImageProcessor(size={"height": IMG, "width": IMG})
    proc = JanusProcessor(image_processor=ip, tokenizer=tok, chat_template=templates.JANUS, num_image_tokens=n)
    vc = JanusVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=IMG, patch_size=PATCH,
                           projection_dim=64, depth=2, num_image_tokens=n)  # fmt: skip
    vq = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                          channel_multiplier=[1, 1],
                          num_res_blocks=1, num_patches=4, projection_dim=64, image_token_embed_dim=64,
                          num_hidden_layers=1)  # fmt: skip
    tc = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, **_small_text(), **_ids(tok))
    cfg = JanusConfig(text_config=tc, vision_config=vc, vq_config=vq,
                      image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"))  # fmt: skip
    _save(dest, JanusForConditionalGeneration(cfg).eval(), proc)


# -- Idefics3 and SmolVLM ----------------------------------------------------------------------------


def _idefics(dest: Path, family: str) -> None:
    import transformers
    from transformers import Idefics3ImageProcessor, LlamaConfig

    from ..engines.transformers.compat import processor_class

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = ["<|im_start|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *grid]
    tok = make_tokenizer(specials, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>", unk=None)
    TILE, PATCH, SCALE = 128, 16, 4  # SmolVLM-256M: 512 / 16 / 4 -> 64 tokens a tile
    seq = (TILE // PATCH) ** 2 // SCALE**2
    ip = Idefics3ImageProcessor(size={"longest_edge": 4 * TILE}, max_image_size={"longest_edge": TILE})
    if family == "idefics3":
        proc = transformers.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq,
                                              chat_template=templates.IDEFICS3)  # fmt: skip
    else:
        proc = processor_class(family)(image_processor=ip, tokenizer=tok, image_seq_len=seq,
                                       chat_template=templates.IDEFICS3,
                                       **_video_processor(family, size={"longest_edge": 4 * TILE},
                                                          max_image_size={"longest_edge": TILE}))  # fmt: skip
    vc = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=TILE,
              patch_size=PATCH)  # fmt: skip
    tc = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, **_small_text(), **_ids(tok))
    cfg_cls, model_cls = {
        "idefics3": (transformers.Idefics3Config, transformers.Idefics3ForConditionalGeneration),
        "smolvlm": (transformers.SmolVLMConfig, transformers.SmolVLMForConditionalGeneration),
    }[family]
    cfg = cfg_cls(vision_config=vc, text_config=tc, scale_factor=SCALE,
                  image_token_id=tok.convert_tokens_to_ids("<image>"))  # fmt: skip
    _save(dest, model_cls(cfg).eval(), proc)


def idefics3(dest: Path) -> None:
    """Idefics3-8B-Llama3 layout: SigLIP tiles with pixel shuffle, row/column tokens, Llama LM."""
    _idefics(dest, "idefics3")


def smolvlm(dest: Path) -> None:
    """SmolVLM (-256M/-500M/-2.2B Instruct): the Idefics3 architecture, SmolLM 2 LM."""
    _idefics(dest, "smolvlm")


# -- Llama 3.2 Vision (mllama) -----------------------------------------------------------------------


def mllama(dest: Path) -> None:
    """Llama-3.2-11B-Vision-Instruct layout: a tiled ViT (local and gated global layers) whose features the
    Llama 3 language model reads through gated cross-attention layers; one ``<|image|>`` token an image."""
    from transformers import (MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor,
                              MllamaTextConfig, MllamaVisionConfig)  # fmt: skip

    # "<|image|>" last, outside the language model's vocabulary, as 128256 is in the real one
    specials = ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                "<|python_tag|>", "<|image|>"]  # fmt: skip
    tok = make_tokenizer(specials, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                         unk=None, add_bos=True)  # fmt: skip (Llama 3's tokenizer adds <|begin_of_text|>)
    TILE, PATCH, TILES = 112, 14, 2  # real: 560 / 14, 4 tiles
    ip = MllamaImageProcessor(size={"height": TILE, "width": TILE}, max_image_tiles=TILES, image_mean=CLIP_MEAN,
                              image_std=CLIP_STD)  # fmt: skip
    proc = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=templates.LLAMA_3_2_VISION)
    layers = [0, 1, 2]  # real: 32 local layers (features from 3, 7, 15, 23, 30) and 8 global ones
    vc = MllamaVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_global_layers=1, attention_heads=2,
        image_size=TILE, patch_size=PATCH, max_num_tiles=TILES, intermediate_layers_indices=layers,
        vision_output_dim=32 * (len(layers) + 1), supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )  # fmt: skip
    ids = _ids(tok)
    end = [tok.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    tc = MllamaTextConfig(
        vocab_size=len(tok) - 1, max_position_embeddings=131072, cross_attention_layers=[1],
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        **_small_text(hidden_size=32, intermediate_size=64), **{**ids, "eos_token_id": end},
    )  # fmt: skip
    cfg = MllamaConfig(vision_config=vc, text_config=tc, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    model = MllamaForConditionalGeneration(cfg).eval()
    for name, param in model.named_parameters():  # the gates start at 0, which would leave the image unseen
        if "gate" in name:
            param.data.normal_(0.0, 1.0)
    model.generation_config.eos_token_id = end
    _save(dest, model, proc)
