"""Benchmark ``describe`` (the pipelined batch runner) against a plain sequential loop, same run.

    python bench/batch.py [--images 200] [--model builtin] [--rounds 2] [--size 640x480] [--quick]

Makes photo-like JPEGs in a temporary folder and a temporary model store, loads the model once,
then times, in turns (``--rounds`` each, best kept; the machine may be shared; the builtin
model's per-image cache is emptied before each pass):

- **loop**: ``for path in paths: describe_record(chat, path, ...)``: read, decode, ask, next;
- **describe**: :func:`imgscribe.batch.job.execute`, what ``imgscribe describe --out x.jsonl``
  runs: read-ahead threads, N requests in flight, manifest with fsync, default settings;
- **describe, all slots**: the same with ``IMGSCRIBE_NUM_PARALLEL=0`` (every slot the engine
  offers; the default serves one request at a time, as Ollama does).

Prints images/s and the ratio to the loop. ``--model echo`` uses the echo engine with a 20 ms
per-answer delay (a stand-in, for when the builtin model is not available). ``--quick``: 8 images
of 320x240, one round (seconds; the same table and ratios).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="builtin", help="builtin, or echo (a stand-in with a fixed delay)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="640x480", help="WxH of the generated JPEGs")
    parser.add_argument("--quick", action="store_true", help="8 images of 320x240, one round (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.size = 8, 1, "320x240"
    size = tuple(int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="imgscribe-bench-batch-", suffix=f"-{os.getpid()}"))
    os.environ["IMGSCRIBE_MODELS"] = str(tmp / "models")
    os.environ["IMGSCRIBE_KEEP_ALIVE"] = "-1"

    from imgscribe.api import DEFAULT_PROMPT
    from imgscribe.batch.job import Job, execute
    from imgscribe.batch.prompts import Prompt
    from imgscribe.batch.records import describe_record
    from imgscribe.client import LocalClient
    from imgscribe.scheduler import Scheduler
    from imgscribe.store import Store
    from imgscribe.types import ModelInfo, ModelManifest

    model = args.model
    if model == "echo":
        model = "echo-bench"
        Store().create(model, ModelManifest(name=model, engine="echo", engine_settings={"delay": 0.02, "tokens": 1},
                                            info=ModelInfo(name=model, engine="echo", capabilities=["completion", "vision"])))  # fmt: skip

    paths = make_images(tmp / "photos", args.images, size)
    print(f"{len(paths)} JPEGs of {size[0]}x{size[1]} in {tmp / 'photos'}; model {model}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)  # fmt: skip

    schedulers = {"default": Scheduler(Store()), "all slots": Scheduler(Store(), num_parallel=0)}
    for s in schedulers.values():
        t = time.perf_counter()
        s.load(model)
        print(f"loaded in {time.perf_counter() - t:.1f}s; slots: {[r.slots for r in s.ps()]}", file=sys.stderr)
    results: dict[str, list[float]] = {"loop": [], "describe": [], "describe, all slots": []}
    failures = 0

    def loop() -> None:
        nonlocal failures
        chat = schedulers["default"].chat
        for path in paths:
            failures += bool(describe_record(chat, path, model, DEFAULT_PROMPT)["error"])

    def pipelined(scheduler: Scheduler, run: int) -> None:
        nonlocal failures
        job = Job(sources=[str(tmp / "photos")], model=model, prompts=[Prompt("response", DEFAULT_PROMPT)],
                  outputs=[str(tmp / f"out-{run}-{id(scheduler)}.jsonl")])  # fmt: skip
        stats, _ = execute(job, [LocalClient(scheduler)])
        failures += stats.failed

    describe_record(schedulers["default"].chat, paths[0], model, DEFAULT_PROMPT)  # warm caches
    for run in range(args.rounds):
        for name, fn in (("loop", loop), ("describe", lambda: pipelined(schedulers["default"], run)),
                         ("describe, all slots", lambda: pipelined(schedulers["all slots"], run))):  # fmt: skip
            forget()
            t = time.perf_counter()
            fn()
            results[name].append(len(paths) / (time.perf_counter() - t))
            print(f"  round {run + 1}: {name:<20} {results[name][-1]:7.2f} images/s", file=sys.stderr)
    for s in schedulers.values():
        s.close()

    base = max(results["loop"])
    print(f"\n{'':<22}{'images/s':>10}{'vs loop':>10}")
    for name, rates in results.items():
        print(f"{name:<22}{max(rates):>10.2f}{max(rates) / base:>9.2f}x")
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
