"""Benchmark images.intake against plain Pillow, measured in the same run.

    python bench/intake.py [--seconds 0.8] [--quick]

Generates photo-like images (gradients + noise) in a temporary folder, then prints images/s for
intake from a path, from bytes and from base64, the ratio to the baseline
``PIL.Image.open(path).convert("RGB")``, and where intake's time goes (read+sniff, decode,
orient+convert, hash). Runs in well under a minute on two cores. ``--quick``: every format at a
quarter of the side (1/16 of the pixels), a few calls each (seconds; the same table and ratios).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from imgscribe import image_codecs, images
from imgscribe.images import intake

# name, format, size, save options
CASES = [
    ("photo 12MP", "JPEG", (4000, 3000), {"quality": 90}),
    ("photo 12MP rot6", "JPEG", (4000, 3000), {"quality": 90, "orientation": 6}),
    ("screenshot 1MP", "PNG", (1000, 1000), {}),
    ("RGBA 1MP", "PNG", (1000, 1000), {"alpha": True}),
    ("web 2MP", "WEBP", (1600, 1200), {"quality": 85}),
    ("phone 2MP", "HEIF", (1600, 1200), {"quality": 80, "enc_params": {"preset": "ultrafast"}}),
    ("AVIF 1MP", "AVIF", (1200, 900), {"quality": 70, "speed": 8}),
]


def photo_like(size: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth gradients plus sensor-like noise: compresses like a photo, not like flat colour."""
    w, h = size
    x, y = np.arange(w, dtype=np.int16)[None, :], np.arange(h, dtype=np.int16)[:, None]
    img = np.empty((h, w, 3), np.int16)
    img[..., 0] = x * 200 // w
    img[..., 1] = y * 180 // h
    img[..., 2] = (x + y) * 160 // (w + h) + (40 * np.sin(x / 97)).astype(np.int16)
    img += np.random.default_rng(seed).integers(-20, 21, (h, w, 1), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def quick_cases() -> list[tuple]:
    """CASES at a quarter of the side, named by their own pixel count."""
    out = []
    for name, fmt, (w, h), opts in CASES:
        size = (w // 4, h // 4)
        mp = size[0] * size[1] / 1e6
        out.append((f"{name.split()[0]} {mp:.2g}MP{' rot6' if 'rot6' in name else ''}", fmt, size, opts))
    return out


def make(folder: Path, cases: list[tuple] = CASES) -> list[tuple[str, Path]]:
    made = []
    for i, (name, fmt, size, opts) in enumerate(cases):
        opts = dict(opts)
        im = PILImage.fromarray(photo_like(size, i))
        if opts.pop("alpha", False):
            im.putalpha(PILImage.linear_gradient("L").resize(size))
        exif = PILImage.Exif()
        if "orientation" in opts:
            exif[0x0112] = opts.pop("orientation")
        path = folder / f"{i}.{fmt.lower()}"
        try:
            im.save(path, fmt, exif=exif.tobytes(), **opts)
        except (KeyError, OSError, ValueError) as exc:  # an encoder this installation lacks
            print(f"  (skipping {name}: cannot write {fmt}: {exc})", file=sys.stderr)
            continue
        made.append((name, path))
    return made


def rates(fns: dict, seconds: float) -> dict[str, float]:
    """Images per second for each function, from the median of calls taken in turns.

    Taking turns (baseline, path, bytes, base64, baseline, ...) keeps the comparison fair on a
    machine whose load changes during the run.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    deadline = time.perf_counter() + seconds * len(fns)
    while min(map(len, times.values())) < 3 or (
        time.perf_counter() < deadline and len(times["Pillow"]) < 200
    ):
        for key, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    return {k: 1.0 / statistics.median(v) for k, v in times.items()}


def split(path: Path, reps: int = 3) -> dict[str, float]:
    """Milliseconds per stage, using intake's own steps in its order."""
    stages: dict[str, list[float]] = {
        "read+sniff": [],
        "decode": [],
        "orient+convert": [],
        "hash": [],
    }
    for _ in range(reps):
        t0 = time.perf_counter()
        data, label = images._read(str(path), 0)
        fmt = image_codecs.sniff(data, label)
        t1 = time.perf_counter()
        im = image_codecs.open_image(data, fmt, label)
        im.load()
        t2 = time.perf_counter()
        image_codecs.upright(image_codecs.to_rgb(im), image_codecs.exif_orientation(im))
        t3 = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[key].append(dt * 1000)
    return {k: statistics.median(v) for k, v in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.8, help="time per measurement")
    parser.add_argument("--quick", action="store_true", help="images at a quarter of the side, short measurements")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 0.05)
    image_codecs.register_openers()  # so that the Pillow baseline can open HEIF/AVIF too
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cases = make(Path(tmp), quick_cases() if args.quick else CASES)
        print(f"generated {len(cases)} images in {time.perf_counter() - start:.1f}s\n")
        head = f"{'image':<16} {'MB':>5} {'Pillow/s':>9} {'path/s':>8} {'ratio':>6} {'bytes/s':>8} {'b64/s':>7}"
        print(head + "   ms: read+sniff decode orient+conv hash")
        print("-" * (len(head) + 40))
        for name, path in cases:
            data = path.read_bytes()
            text = base64.b64encode(data).decode()
            r = rates(
                {
                    "Pillow": lambda p=path: PILImage.open(p).convert("RGB"),
                    "path": lambda p=path: intake(p),
                    "bytes": lambda d=data: intake(d),
                    "base64": lambda t=text: intake(t),
                },
                args.seconds,
            )
            base, by_path, by_bytes, by_b64 = r["Pillow"], r["path"], r["bytes"], r["base64"]
            ms = split(path)
            print(
                f"{name:<16} {len(data) / 1e6:>5.2f} {base:>9.1f} {by_path:>8.1f} {by_path / base:>6.2f} "
                f"{by_bytes:>8.1f} {by_b64:>7.1f}   {ms['read+sniff']:>10.1f} {ms['decode']:>6.1f} "
                f"{ms['orient+convert']:>11.1f} {ms['hash']:>4.1f}"
            )
        print(
            "\nratio = intake(path) / Pillow baseline, higher is better. The baseline neither hashes nor"
            "\napplies EXIF orientation, so the rot6 row shows the cost of the rotation itself."
            f"\ntotal {time.perf_counter() - start:.0f}s"
        )


if __name__ == "__main__":
    main()
