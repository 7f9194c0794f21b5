"""Benchmark ``describe`` (the pipelined batch runner) against a plain sequential loop, same run.

    python bench/batch.py [--images 200] [--model builtin|echo|gguf] [--rounds 2] [--size 640x480]
                          [--tokens 32] [--quick]

Makes photo-like JPEGs in a temporary folder and a temporary model store, then times, in turns
(``--rounds`` each, best kept; the machine may be shared; the builtin model's per-image cache is
emptied before each pass):

- **loop**: ``for path in paths: describe_record(chat, path, ...)`` over the model loaded with one
  slot: read, decode, ask, next;
- **describe --parallel 1**: :func:`imgscribe.batch.job.execute` as ``imgscribe describe
  --parallel 1 --out x.jsonl`` runs it: read-ahead threads, one request in flight, one slot,
  manifest with fsync;
- **describe**: the same with describe's defaults: in process it loads the model with every slot
  the engine offers that the memory allows (issue 19: llama.cpp 4, echo 4, builtin 1), the
  slots + 1 requests in flight.

Each describe row loads its model in an untimed first pass over one image (describe chooses the
slots as it loads), then every row makes one untimed pass over the images (a llama-server's first
pass is slower, and on a shared machine the rows would otherwise differ by their warm-up), so
the rows time the steady state. Prints images/s, the ratio to the loop,
and the ratio ``describe`` / ``describe --parallel 1`` (what the default slots gain).
``--model echo`` uses the echo engine with a 20 ms per-answer delay (a stand-in);
``--model gguf``: the tiny LLaVA-1.5 GGUF of the tests (``imgscribe.testing``, converted here,
about 30 s) through llama-server, ``--tokens`` tokens an answer (``ignore_eos``). ``--quick``:
8 images of 320x240, one round (seconds; the same table and ratios).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage


def photo_like(size: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth gradients plus sensor-like noise: compresses like a photo, not like flat colour."""
    w, h = size
    x, y = np.arange(w, dtype=np.int16)[None, :], np.arange(h, dtype=np.int16)[:, None]
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.int16)
    img[..., 0] = (x * 200 // w + rng.integers(0, 55)) % 256
    img[..., 1] = y * 180 // h
    img[..., 2] = (x + y) * 160 // (w + h) + (40 * np.sin(x / (50 + seed % 50))).astype(np.int16)
    img += rng.integers(-20, 21, (h, w, 1), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:04}.jpg"
        PILImage.fromarray(photo_like(size, i)).save(path, quality=88)
        paths.append(path)
    return paths


def forget() -> None:
    """Empty the builtin model's per-image evidence cache, so that every pass does the work."""
    try:
        from imgscribe.engines.builtin.evidence import clear_cache
    except ImportError:
        return
    clear_cache()


def tiny_gguf(root: Path) -> tuple[Path, Path]:
    """The tiny LLaVA-1.5 of the tests as an f32 GGUF and its mmproj."""
    from imgscribe import testing
    from imgscribe.engines.llamacpp.convert import convert

    print("building and converting the tiny LLaVA-1.5 checkpoint ...", file=sys.stderr)
    testing.build("llava15", root / "hf")
    result = convert(root / "hf", root / "gguf", outtype="f32")
    return result.model, result.mmproj


def make_model(kind: str, tmp: Path, tokens: int) -> tuple[str, dict]:
    """The model's name in the temporary store, and the options each request sends."""
    from imgscribe.store import Store
    from imgscribe.types import ModelInfo, ModelManifest

    if kind == "echo":
        Store().create("echo-bench", ModelManifest(name="echo-bench", engine="echo", engine_settings={"delay": 0.02, "tokens": 1},
                                                   info=ModelInfo(name="echo-bench", engine="echo", capabilities=["completion", "vision"])))  # fmt: skip
        return "echo-bench", {}
    if kind == "gguf":
        from imgscribe.store.import_gguf import manifest_for_gguf

        manifest = manifest_for_gguf("tiny-llava", *tiny_gguf(tmp / "tiny-llava"))
        manifest.parameters.update(num_ctx=2048)
        # random weights: answers of --tokens tokens; no prompt cache (the loop's and the --parallel 1
        # row's one-slot llama-server is shared: the second would find every image's prompt cached)
        manifest.engine_settings.update(ignore_eos=True, cache_prompt=False)
        Store().create("tiny-llava", manifest)
        return "tiny-llava", {"num_predict": tokens, "temperature": 0.8, "seed": 0}
    return kind, {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="builtin", help="builtin, echo (a stand-in with a fixed delay) or gguf (tiny LLaVA)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="640x480", help="WxH of the generated JPEGs")
    parser.add_argument("--tokens", type=int, default=32, help="tokens an answer (--model gguf)")
    parser.add_argument("--quick", action="store_true", help="8 images of 320x240, one round (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.size = 8, 1, "320x240"
    size = tuple(int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="imgscribe-bench-batch-", suffix=f"-{os.getpid()}"))
    os.environ["IMGSCRIBE_MODELS"] = str(tmp / "models")
    os.environ["IMGSCRIBE_KEEP_ALIVE"] = "-1"
    os.environ.pop("IMGSCRIBE_NUM_PARALLEL", None)  # the default is what is measured

    from imgscribe.api import DEFAULT_PROMPT
    from imgscribe.batch.job import Job, execute
    from imgscribe.batch.prompts import Prompt
    from imgscribe.batch.records import describe_record
    from imgscribe.client import LocalClient
    from imgscribe.scheduler import Scheduler
    from imgscribe.store import Store
    from imgscribe.types import Options

    model, asked = make_model(args.model, tmp, args.tokens)
    options = Options(**asked)
    paths = make_images(tmp / "photos", args.images, size)
    make_images(tmp / "first", 1, size)
    print(f"{len(paths)} JPEGs of {size[0]}x{size[1]} in {tmp / 'photos'}; model {model}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)  # fmt: skip

    looped = Scheduler(Store(), num_parallel=1)
    t = time.perf_counter()
    looped.load(model)
    print(f"loaded in {time.perf_counter() - t:.1f}s for the loop; slots: {[r.slots for r in looped.ps()]}", file=sys.stderr)
    described = {"describe --parallel 1": (Scheduler(Store()), 1), "describe": (Scheduler(Store()), None)}
    results: dict[str, list[float]] = {"loop": [], **{name: [] for name in described}}
    failures = 0

    def loop() -> None:
        nonlocal failures
        for path in paths:
            failures += bool(describe_record(looped.chat, path, model, DEFAULT_PROMPT, options=options)["error"])

    def pipelined(name: str, folder: Path, run: str) -> None:
        nonlocal failures
        scheduler, parallel = described[name]
        job = Job(sources=[str(folder)], model=model, prompts=[Prompt("response", DEFAULT_PROMPT)],
                  options=options, parallel=parallel, outputs=[str(tmp / f"out-{run}-{id(scheduler)}.jsonl")])  # fmt: skip
        notes = lambda line: print(f"  {name}: {line}", file=sys.stderr)  # noqa: E731
        stats, _ = execute(job, [LocalClient(scheduler)], on_note=notes)
        failures += stats.failed
        print(f"  {name}: {stats.summary()}", file=sys.stderr)

    for name, (scheduler, _) in described.items():  # describe loads the model (and picks its slots)
        t = time.perf_counter()
        pipelined(name, tmp / "first", "first")
        pipelined(name, tmp / "photos", "warm")  # a llama-server's first pass over images is slower
        print(f"  {name}: first pass {time.perf_counter() - t:.1f}s; slots: {[r.slots for r in scheduler.ps()]}",
              file=sys.stderr)  # fmt: skip
    loop()  # warm caches (the loop's llama-server: its first pass is slower)
    for run in range(args.rounds):
        passes = [("loop", loop)] + [(name, lambda name=name: pipelined(name, tmp / "photos", str(run)))
                                     for name in described]  # fmt: skip
        for name, fn in passes:
            forget()
            t = time.perf_counter()
            fn()
            results[name].append(len(paths) / (time.perf_counter() - t))
            print(f"  round {run + 1}: {name:<22} {results[name][-1]:7.2f} images/s", file=sys.stderr)
    looped.close()
    for scheduler, _ in described.values():
        scheduler.close()

    base = max(results["loop"])
    print(f"\n{'':<24}{'images/s':>10}{'vs loop':>10}")
    for name, rates in results.items():
        print(f"{name:<24}{max(rates):>10.2f}{max(rates) / base:>9.2f}x")
    gain = max(results["describe"]) / max(results["describe --parallel 1"])
    rounds = sorted(d / p for d, p in zip(results["describe"], results["describe --parallel 1"]))
    print(f"\ndescribe default vs --parallel 1: {gain:.2f}x ({model}, same run; best of each; "
          f"per round {', '.join(f'{r:.2f}x' for r in rounds)})")  # fmt: skip
    if failures:
        print(f"\n{failures} image(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for folder in Path(tempfile.gettempdir()).glob(f"imgscribe-bench-batch-*-{os.getpid()}"):
            shutil.rmtree(folder, ignore_errors=True)
