"""Benchmark the llamacpp engine against the transformers engine on a model of real size, in one run.

    python bench/engines.py [--threads 2] [--tokens 32] [--skip-transformers] [--quick]

The model has the exact dimensions of Qwen2-VL-2B-Instruct (a 1.5 B Qwen2 language model, a 675 M
ViT with 14 px patches and 2x2 merge, vocabulary 151,936) with random weights, built offline and
cached in ``~/.cache/imgscribe/bench/``; llama.cpp's converter makes an f16 GGUF + f16 mmproj from
it, and llama-quantize turns the language model into Q4_K_M (the projector stays f16, as Ollama
ships them). Random weights run at the same speed as trained ones.

Measured on this machine, on the same photo, in this run:

- the memory bandwidth (numpy reads of a 1 GiB array, on every thread);
- for each engine: image-encode time (the vision tower), prompt tokens/s (the language model over
  text + image tokens, encode excluded), decode tokens/s;
- decode tokens/s as a fraction of the bandwidth limit: each token reads every language-model
  weight once, so tokens/s <= bandwidth / weight bytes.

llamacpp runs ``llama-server`` (``scripts/build-llama-server.sh``) with ``-t THREADS``; transformers
runs float32 (the engine's CPU default: on this AMD EPYC, avx512_bf16, torch 2.14's bf16
matrix-vector products ran slower than f32's) with ``torch.set_num_threads(THREADS)``.

``--quick`` builds the same way a tiny model (Qwen2-VL's layout, 2 layers of 256, a 4-block ViT) in a
temporary folder, with a 256 MiB bandwidth probe and 8 tokens: seconds, not minutes, every step of
the full run (build, convert, quantize, both engines, the table and its ratios); its figures say
little.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

NAME = "qwen2-vl-2b-random"
PHOTO = "chelsea"  # 451x300: 176 image tokens after Qwen2-VL's 14 px patches and 2x2 merge
PROMPT = "Describe this image."
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgscribe" / "bench" / NAME

# Qwen2-VL-2B-Instruct's config.json (text and vision), as published.
TEXT = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
            num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
            hidden_act="silu", sliding_window=32768, use_sliding_window=False,
            rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6})  # fmt: skip
VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, in_chans=3, patch_size=14,
              spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")  # fmt: skip
# --quick: the same layout, tiny (head_dim 64, so M-RoPE's sections sum to 32; rows of 256 for Q4_K).
QUICK_NAME = "qwen2-vl-tiny-random"
QUICK_TEXT = dict(TEXT, vocab_size=4096, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2,
                  rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1e6})  # fmt: skip
# (a ViT of at least 3 blocks: the converter maps the merger's mlp.2 as block 2)
QUICK_VISION = dict(VISION, depth=4, embed_dim=128, hidden_size=256, num_heads=4)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- memory bandwidth -------------------------------------------------------------------------------


def bandwidth(threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes/s read from memory: numpy sums of a 1 GiB float32 array (far above the caches), split
    over ``threads`` threads (numpy releases the GIL in reductions). The best of ``repeats``."""
    a = np.ones(int(gib * (1 << 30)) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, a.nbytes / (time.perf_counter() - start))
    return best


# -- the model ---------------------------------------------------------------------------------------


def video_processor() -> dict:
    """Where torchvision is installed, ``processor_class("qwen2_vl")`` is the stock Qwen2VLProcessor,
    which wants a video processor (without torchvision, compat's image-only one takes none); as
    ``imgscribe.testing.builders`` makes them."""
    from imgscribe.engines.transformers.compat import has_torchvision

    if not has_torchvision():
        return {}
    from transformers import Qwen2VLVideoProcessor

    return {"video_processor": Qwen2VLVideoProcessor()}


def build_checkpoint(dest: Path, text_dims: dict = TEXT, vision_dims: dict = VISION) -> Path:
    if (dest / "config.json").is_file():
        return dest
    import torch
    import transformers
    from transformers import Qwen2VLImageProcessor

    from imgscribe.engines.transformers.compat import processor_class
    from imgscribe.testing import templates
    from imgscribe.testing.tokenizer import make_tokenizer

    log(f"building {dest.name} (random parameters, bf16) in {dest} ...")
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = make_tokenizer(specials, bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None)
    ip = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)  # the published preprocessor_config
    ids = dict(image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
               video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
               vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
               vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))  # fmt: skip
    text = dict(text_dims, bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = transformers.Qwen2VLConfig(text_config=text, vision_config=vision_dims, tie_word_embeddings=True, **ids)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        torch.manual_seed(0)
        model = transformers.Qwen2VLForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(old)
    tmp = dest.with_name(dest.name + ".tmp")
    model.save_pretrained(tmp)
    processor = processor_class("qwen2_vl")(image_processor=ip, tokenizer=tok, chat_template=templates.QWEN2_VL,
                                            **video_processor())  # fmt: skip
    processor.save_pretrained(tmp)
    del model
    tmp.rename(dest)
    return dest


def convert_gguf(src: Path, out: Path) -> tuple[Path, Path, Path]:
    """(Q4_K_M model, f16 model, f16 projector), made once and cached."""
    from imgscribe.engines.llamacpp.convert import convert, quantize

    f16, mmproj = out / f"{src.name}-f16.gguf", out / f"mmproj-{src.name}-f16.gguf"
    if not (f16.is_file() and mmproj.is_file()):
        log("converting with llama.cpp's convert_hf_to_gguf.py (f16) ...")
        convert(src, out, outtype="f16")
    q4 = out / f"{src.name}-Q4_K_M.gguf"
    if not q4.is_file():
        log("quantizing with llama-quantize (Q4_K_M) ...")
        quantize(f16, q4, "Q4_K_M")
    return q4, f16, mmproj


# -- llamacpp -----------------------------------------------------------------------------------------


def bench_llamacpp(model: Path, mmproj: Path, threads: int, tokens: int, photo_path: Path) -> dict:
    """Through the llamacpp engine's own runner. llama-server reports no image-encode time (its
    prompt time includes it), so it is derived: the image request's prompt time minus its tokens at
    the prefill rate of a text-only prompt of about the same length (measured just before)."""
    from imgscribe.engines.llamacpp import LlamaCppRunner
    from imgscribe.images import intake
    from imgscribe.store.import_gguf import manifest_for_gguf
    from imgscribe.types import ChatRequest, Message, Options

    manifest = manifest_for_gguf(model.stem, model, mmproj)
    manifest.parameters.update(num_ctx=4096, num_thread=threads)
    manifest.engine_settings.update(num_parallel=1, ignore_eos=True, cache_prompt=False)
    start = time.perf_counter()
    runner = LlamaCppRunner(manifest)
    load_s = time.perf_counter() - start
    image = intake(photo_path)

    def ask(text: str, images: list, n: int):
        request = ChatRequest(manifest.name, [Message("user", text, images)], options=Options(num_predict=n, temperature=0))
        return list(runner.chat(request))[-1].metrics

    try:
        ask("hi", [], 4)  # warm-up: pages the weights in
        with_image = ask(PROMPT, [image], 1)
        filler = " ".join(["the cat sat on the red sofa"] * max(1, with_image.prompt_eval_count // 8))
        text = ask(filler, [], 1)
        rate = text.prompt_eval_count / (text.prompt_eval_duration / 1e9)  # LM prefill, tokens/s
        best: dict | None = None
        for _ in range(2):
            m = ask(PROMPT, [image], tokens)
            encode_s = max(m.prompt_eval_duration / 1e9 - m.prompt_eval_count / rate, 0.0)
            row = {
                "prompt_tokens": m.prompt_eval_count,
                "encode_s": encode_s,
                "prompt_tps": rate,
                "decode_tps": m.eval_count / (m.eval_duration / 1e9),
                "decoded": m.eval_count,
            }
            if best is None or row["decode_tps"] > best["decode_tps"]:
                best = row
        best["load_s"] = load_s
        best["rss"] = runner.process.memory()
        best["text_prompt_tokens"] = text.prompt_eval_count
        return best
    finally:
        runner.close()


# -- transformers -------------------------------------------------------------------------------------


def bench_transformers(src: Path, threads: int, tokens: int, photo_path: Path) -> dict:
    import torch
    from PIL import Image
    from transformers import Qwen2VLForConditionalGeneration

    from imgscribe.engines.transformers import compat
    from imgscribe.engines.transformers.families import detect, read_config
    from imgscribe.engines.transformers.loading import load_processor

    compat.install()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = Qwen2VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32).eval()
    processor = load_processor(src, detect(read_config(src)))
    load_s = time.perf_counter() - start
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[Image.open(photo_path).convert("RGB")], text=[text], return_tensors="pt")
    n_prompt = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        model.generate(**processor(text=["hi"], return_tensors="pt"), max_new_tokens=2, do_sample=False)  # warm-up
        start = time.perf_counter()
        model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        encode_s = time.perf_counter() - start

        stamps = timed_generate(model, inputs, 1 + tokens)  # [start, first token, ..., last token]
    prefill_s = stamps[1] - stamps[0]  # encode + prompt + the first token
    params = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n)
    return {
        "prompt_tokens": n_prompt,
        "encode_s": encode_s,
        "prompt_tps": n_prompt / max(prefill_s - encode_s, 1e-9),
        "decode_tps": (len(stamps) - 2) / (stamps[-1] - stamps[1]),
        "decoded": len(stamps) - 1,
        "load_s": load_s,
        "text_bytes": params * 4,
    }


def timed_generate(model, inputs, n: int) -> list[float]:
    """Greedy ``generate`` of exactly ``n`` tokens; the clock at the start and at each new token."""
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []

        def put(self, value):  # first call: the prompt; then one call per new token
            self.times.append(time.perf_counter())

        def end(self):
            pass

    streamer = Stamps()
    start = time.perf_counter()
    model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=streamer)
    return [start, *streamer.times[1:]]


# -- report -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tokens", type=int, default=32, help="tokens to decode (llamacpp; transformers decodes a quarter)")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="a tiny model in a temporary folder (seconds)")
    args = ap.parse_args()
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="imgscribe-bench-engines-") as tmp:
            return run(args, Path(tmp), QUICK_NAME, QUICK_TEXT, QUICK_VISION)
    return run(args, CACHE, NAME, TEXT, VISION)


def run(args, cache: Path, name: str, text_dims: dict, vision_dims: dict) -> int:
    from imgscribe import testing

    if args.quick:
        args.tokens = min(args.tokens, 8)
    photo_path = testing.photo_path(PHOTO)
    bw = bandwidth(args.threads, gib=0.25 if args.quick else 1.0, repeats=3 if args.quick else 5)
    log(f"memory bandwidth (read, {args.threads} threads): {bw / 1e9:.1f} GB/s")
    src = build_checkpoint(cache / name, text_dims, vision_dims)
    q4, f16, mmproj = convert_gguf(src, cache / "gguf")

    rows: dict[str, dict] = {}
    for label, model in (("llamacpp Q4_K_M", q4), ("llamacpp f16", f16)):
        log(f"{label} ...")
        rows[label] = bench_llamacpp(model, mmproj, args.threads, args.tokens, photo_path)
        rows[label]["text_bytes"] = model.stat().st_size
    if not args.skip_transformers:
        log("transformers float32 ...")
        rows["transformers f32"] = bench_transformers(src, args.threads, max(4, args.tokens // 4), photo_path)

    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    dims = "tiny (--quick)" if args.quick else "Qwen2-VL-2B dimensions"
    print(f"\n{name}: {dims}, random weights; photo {PHOTO} ({photo_path.name}); "
          f"{args.threads} threads; memory bandwidth {bw / 1e9:.1f} GB/s (read); load average {load}\n")  # fmt: skip
    header = ("engine", "LM weights", "prompt tok", "image encode", "prompt tok/s", "decode tok/s", "decode bound", "of bound")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in rows.items():
        bound = bw / r["text_bytes"]
        r["decode_bound_tps"] = bound
        r["fraction_of_bound"] = r["decode_tps"] / bound
        print(f"| {name} | {r['text_bytes'] / 1e9:.2f} GB | {r['prompt_tokens']} | {r['encode_s']:.2f} s | "
              f"{r['prompt_tps']:.1f} | {r['decode_tps']:.2f} | {bound:.2f} | {r['fraction_of_bound']:.0%} |")  # fmt: skip
    if "transformers f32" in rows:
        a, b = rows["llamacpp Q4_K_M"], rows["transformers f32"]
        print(f"\nllamacpp / transformers: image encode {b['encode_s'] / a['encode_s']:.1f}x faster, "
              f"prompt {a['prompt_tps'] / b['prompt_tps']:.1f}x, decode {a['decode_tps'] / b['decode_tps']:.1f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"bandwidth": bw, "threads": args.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
