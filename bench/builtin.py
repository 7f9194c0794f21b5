"""Benchmark the built-in model's description against classification alone, in the same run.

    python bench/builtin.py [--rounds 3] [--budget 60] [--quick]

Describes the images in examples/ plus two generated ones (a photo-like picture and a rendered
document) ``--rounds`` times after one warm-up round, with the evidence cache off, and prints:
images/s for a full description (decode included), the mean time of each stage (decode, colours,
classify, OCR, compose, the rest) and its share, and the ratio to the baseline measured in the same
run: EfficientNet-Lite0 classification alone on the same decoded images. Stops adding rounds once
``--budget`` seconds have passed (the model load is not counted), so it ends in under ~90 s.
``--quick``: one measured round of the two generated images only (seconds; same table and ratio).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgscribe.engines.builtin import ENGINE, MANIFEST
from imgscribe.engines.builtin import classify, threads
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Message

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("decode", "colours", "classify", "ocr", "compose")


def photo_like(size=(800, 600), seed=0) -> bytes:
    """Smooth shapes, gradients and sensor-like noise, as JPEG: no large flat areas, no text."""
    w, h = size
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    img = np.stack([90 + 120 * x, 70 + 90 * y, 60 + 80 * np.sin(3 * x + 2 * y) ** 2], axis=-1)
    for _ in range(6):  # soft blobs
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        mask = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r)))[..., None]
        img = img * (1 - mask) + rng.uniform(0, 255, 3) * mask
    img += rng.normal(0, 6, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def document(lines: int = 8) -> bytes:
    path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font = ImageFont.truetype(str(path), 24) if path.is_file() else ImageFont.load_default(size=24)
    text = [
        "QUARTERLY REPORT - Northwind Traders",
        "Revenue rose 12% to $4.2 million in the third quarter.",
        "Orders shipped: 18,240 (up from 16,935 a year ago).",
        "Returns fell to 1.8% after the new packaging was introduced.",
        "The Springfield warehouse opens on Monday, 4 October 2027.",
        "Contact: finance@northwind.example or call 555-0142.",
        "Next review: 15 January 2028, Room 204, 10:30 am.",
        "Prepared by Alice Martin, Finance Department.",
    ][:lines]
    im = Image.new("RGB", (1000, 60 + 42 * len(text)), "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(text):
        draw.text((30, 30 + 42 * i), line, font=font, fill=(25, 25, 25))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def inputs() -> list[tuple[str, bytes]]:
    found = sorted(p for p in (ROOT / "examples").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    cases = [(p.name, p.read_bytes()) for p in found]
    cases.append(("generated photo-like 800x600", photo_like()))
    cases.append(("generated document 1000x396", document()))
    return cases


def describe_once(runner, name: str, raw: bytes) -> dict[str, float]:
    t0 = time.perf_counter()
    image = intake(raw)
    decode_ms = (time.perf_counter() - t0) * 1000
    request = ChatRequest(model="builtin", messages=[Message(role="user", content="", images=[image])])
    chunks = list(runner.chat(request))
    total_ms = (time.perf_counter() - t0) * 1000
    last = chunks[-1]
    assert last.done and last.data["cached_images"] == 0, "the evidence cache must be off"
    row = {"decode": decode_ms, **last.data["timings_ms"], "total": total_ms}
    row["other"] = total_ms - sum(row[s] for s in STAGES)
    row["kind"] = last.data["images"][0]["kind"]
    row["text"] = "".join(c.text for c in chunks)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds after the warm-up (default 3)")
    ap.add_argument("--budget", type=float, default=60.0, help="stop adding rounds after this many seconds")
    ap.add_argument("--quick", action="store_true", help="one round of the two generated images (seconds)")
    args = ap.parse_args()

    cases = inputs()
    if args.quick:
        cases, args.rounds = cases[-2:], 1
    t = time.perf_counter()
    manifest = MANIFEST.model_copy(update={"engine_settings": {"cache_size": 0}})
    runner = ENGINE.load(manifest)
    load_s = time.perf_counter() - t
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"builtin bench: {len(cases)} images, model load {load_s:.1f} s, {threads.cpu_count()} CPUs, "
          f"load average {load:.1f}, {threads.cpu_threads()} model threads")  # fmt: skip

    # Warm-up: every image once (first-call allocations, ONNX Runtime shape caches).
    decoded = {}
    for name, raw in cases:
        describe_once(runner, name, raw)
        decoded[name] = intake(raw).pil
    start = time.perf_counter()
    rows: dict[str, list[dict]] = {name: [] for name, _ in cases}
    base: dict[str, list[float]] = {name: [] for name, _ in cases}
    rounds = 0
    while rounds < args.rounds and (rounds == 0 or time.perf_counter() - start < args.budget):
        for name, raw in cases:
            rows[name].append(describe_once(runner, name, raw))
            t = time.perf_counter()
            classify.classify(decoded[name])  # the baseline: classification alone
            base[name].append((time.perf_counter() - t) * 1000)
        rounds += 1
    runner.close()

    print(f"{rounds} measured round(s) after 1 warm-up; mean ms per image\n")
    cols = (*STAGES, "other", "total")
    print(f"{'image':30} {'kind':10} " + " ".join(f"{c:>8}" for c in cols) + f" {'baseline':>9}")
    for name, _ in cases:
        r = rows[name]
        means = {c: statistics.fmean(x[c] for x in r) for c in cols}
        print(f"{name[:30]:30} {r[0]['kind']:10} " + " ".join(f"{means[c]:8.1f}" for c in cols)
              + f" {statistics.fmean(base[name]):9.1f}")  # fmt: skip

    every = [x for r in rows.values() for x in r]
    total = statistics.fmean(x["total"] for x in every)
    baseline = statistics.fmean(v for b in base.values() for v in b)
    print("\nstage split (mean over all images and rounds)")
    for c in (*STAGES, "other"):
        mean = statistics.fmean(x[c] for x in every)
        print(f"  {c:9} {mean:8.1f} ms  {100 * mean / total:5.1f} %")
    print(f"  {'total':9} {total:8.1f} ms  100.0 %")
    print(f"\nbuiltin description : {1000 / total:6.2f} images/s (decode + colours + classify + OCR + compose)")
    print(f"baseline            : {1000 / baseline:6.2f} images/s (EfficientNet-Lite0 classification alone)")
    print(f"ratio               : a description takes {total / baseline:.1f}x the time of classification alone")
    print("\nexample output:")
    for name, _ in cases[:2]:
        print(f"  {name}: {rows[name][0]['text'][:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
