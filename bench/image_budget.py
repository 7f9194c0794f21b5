"""Benchmark the image token budget: a 12 MP phone photo with the default budget against the model's
own maximum, on both engines, in one run.

    python bench/image_budget.py [--quick] [--limit 600] [--threads 2]

The model has Qwen2-VL-2B-Instruct's dimensions with random weights (``bench/engines.py`` builds and
caches it: the llamacpp engine runs its Q4_K_M GGUF with the f16 projector, the transformers engine
its checkpoint); ``--quick`` uses imgscribe's tiny Qwen2-VL instead (seconds; the ratios then say
little). Each case runs in a fresh process, so that its peak RSS is its own: the time to the first
token (``num_predict`` 1, so about the prefill), the image tokens and size the engine reports, and
the peak RSS (the process's, plus llama-server's child for llamacpp). A case over ``--limit``
seconds is stopped and reported as such.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CASES = [("llamacpp", "default"), ("llamacpp", "model max"), ("transformers", "default"), ("transformers", "model max")]
NO_BUDGET = "1000000000"  # IMGSCRIBE_IMAGE_MAX_TOKENS: more than any model takes, i.e. the model's own maximum


def photo_12mp(dest: Path) -> Path:
    from PIL import Image

    from imgscribe import testing

    img = Image.open(testing.photo_path("chelsea")).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    img.save(dest, "JPEG", quality=90)
    return dest


def models(quick: bool, root: Path) -> dict[str, dict]:
    """engine -> the ModelManifest fields of its model (files, engine)."""
    if quick:
        from imgscribe import testing
        from imgscribe.engines.llamacpp.binary import llama_cpp_dir
        from imgscribe.engines.llamacpp.convert import convert

        src = testing.build("qwen2_vl", root / "qwen2_vl")
        result = convert(src, root / "gguf", outtype="f32", llama_dir=llama_cpp_dir())
        return {"llamacpp": {"model": result.model, "projector": result.mmproj}, "transformers": {"checkpoint": src}}
    sys.path.insert(0, str(BENCH))
    from engines import CACHE, NAME, build_checkpoint, convert_gguf  # noqa: E402 - the 2B model, cached

    src = build_checkpoint(CACHE / NAME)
    q4, _, mmproj = convert_gguf(src, CACHE / "gguf")
    return {"llamacpp": {"model": q4, "projector": mmproj}, "transformers": {"checkpoint": src}}


def child(engine: str, files: dict, photo: Path, threads: int) -> dict:
    """One case, in this process: load, one request, what it cost."""
    from imgscribe.images import intake
    from imgscribe.scheduler import Scheduler
    from imgscribe.store import Store
    from imgscribe.types import ChatRequest, Message, Options

    store = Store(Path(tempfile.mkdtemp(prefix="imgscribe-bench-budget-")))
    if engine == "llamacpp":
        from imgscribe.store.import_gguf import manifest_for_gguf

        manifest = manifest_for_gguf("m", files["model"], files["projector"])
        manifest.parameters["num_thread"] = threads
        manifest.parameters["num_ctx"] = 32768  # room for the model's maximum
    else:
        import torch

        from imgscribe.store.importer import describe_hf_folder

        torch.set_num_threads(threads)
        manifest = describe_hf_folder(Path(files["checkpoint"]))
        manifest.name = manifest.info.name = "m"
    store.create("m", manifest)
    scheduler = Scheduler(store, num_parallel=1)
    start = time.perf_counter()
    scheduler.load("m")
    loaded = time.perf_counter() - start
    image = intake(photo)
    request = ChatRequest("m", [Message("user", "Describe this image.", [image])], Options(num_predict=1, temperature=0))
    start = time.perf_counter()
    first = None
    final = None
    for chunk in scheduler.chat(request):
        first = first or time.perf_counter() - start
        if chunk.done:
            final = chunk
    child_rss = 0
    runner = scheduler.runner("m")
    process = getattr(runner, "process", None)
    if process is not None and getattr(process, "pid", None):  # llama-server's own peak, before it stops
        with open(f"/proc/{process.pid}/status") as f:
            child_rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    scheduler.close()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    images = (final.images if final else None) or [{}]
    return {"load_s": loaded, "ttft_s": first, "prompt_tokens": final.metrics.prompt_eval_count if final else 0,
            "image_tokens": images[0].get("tokens"), "size": images[0].get("size"),
            "peak_rss": own + child_rss}  # fmt: skip


def run_case(engine: str, budget: str, files: dict, photo: Path, threads: int, limit: float) -> dict:
    env = dict(os.environ, IMGSCRIBE_IMAGE_MAX_TOKENS="auto" if budget == "default" else NO_BUDGET)
    spec = json.dumps({"engine": engine, "files": {k: str(v) for k, v in files.items()}, "photo": str(photo),
                       "threads": threads})  # fmt: skip
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, __file__, "--child", spec], env=env, capture_output=True, text=True,
                             timeout=limit)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"stopped": f"stopped after {limit:.0f} s"}
    if out.returncode != 0:
        return {"stopped": f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny Qwen2-VL (seconds)")
    parser.add_argument("--limit", type=float, default=600, help="seconds allowed per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["engine"], spec["files"], Path(spec["photo"]), spec["threads"])))
        return 0
    root = Path(tempfile.mkdtemp(prefix="imgscribe-bench-"))
    photo = photo_12mp(root / "photo-12mp.jpg")
    files = models(args.quick, root)
    print(f"image budget: a 4000x3000 JPEG ({photo.stat().st_size // 1000} KB), "
          f"{'tiny Qwen2-VL' if args.quick else 'Qwen2-VL-2B dimensions, random weights'}, {args.threads} threads, "
          f"num_predict 1")  # fmt: skip
    results = {}
    for engine, budget in CASES:
        r = results[(engine, budget)] = run_case(engine, budget, files[engine], photo, args.threads, args.limit)
        if "stopped" in r:
            print(f"  {engine:<12} {budget:<10} {r['stopped']}")
        else:
            print(f"  {engine:<12} {budget:<10} first token {r['ttft_s']:7.2f} s  image tokens {r['image_tokens']!s:>6}"
                  f"  size {r['size']}  prompt {r['prompt_tokens']:>6}  peak RSS {r['peak_rss'] / 2**20:8.0f} MiB")  # fmt: skip
        sys.stdout.flush()
    for engine in ("llamacpp", "transformers"):
        d, m = results[(engine, "default")], results[(engine, "model max")]
        if "stopped" in d:
            continue
        if "stopped" in m:
            print(f"  {engine}: the default budget answers in {d['ttft_s']:.2f} s; the model's maximum {m['stopped']}")
            continue
        print(f"  {engine}: default/max time to first token {d['ttft_s'] / m['ttft_s']:.2f}x, "
              f"peak RSS {d['peak_rss'] / m['peak_rss']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
