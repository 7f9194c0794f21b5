"""Evidence about one image: labels, text, colours and layout, with the time each stage took.

Evidence is a plain JSON-ready dict (it travels in the last chunk's ``data``), cached per image
SHA-256 in a small LRU, so a follow-up question about the same image costs nothing.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

from ...types import Image
from . import classify, colours, ocr, shapes

CACHE_SIZE = 32
PIPELINE = "builtin-1"  # part of the cache key: bump when the evidence changes shape or models
SCREEN_LABELS = {916, 782, 664, 851}  # website, screen, monitor, television


class Stopped(Exception):
    """The request was cancelled between two stages."""


def load_models() -> None:
    """Load every model now (once per process)."""
    classify.load()
    ocr.load()


def gather(image: Image, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Evidence for one image, from the cache when this image was seen recently."""
    key = (image.sha256 or hashlib.sha256(image.pil.tobytes()).hexdigest(), image.pil.size, PIPELINE)
    hit = _cache.get(key)
    if hit is not None:
        hit = copy.deepcopy(hit)
        hit["cached"] = True
        hit["image"]["source"] = image.source
        return hit
    ev = compute(image, cancel)
    _cache.put(key, ev)
    return copy.deepcopy(ev)


def compute(image: Image, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run every stage on ``image`` (no cache)."""
    pil = image.pil if image.pil.mode == "RGB" else image.pil.convert("RGB")
    timings: dict[str, float] = {}

    def stage(name: str, fn):
        if cancel is not None and cancel.is_set():
            raise Stopped
        t = time.perf_counter()
        out = fn(pil)
        timings[name] = round((time.perf_counter() - t) * 1000, 2)
        return out

    facts = stage("colours", colours.analyse)
    labels = stage("classify", classify.classify)
    lines = stage("ocr", ocr.read)
    w, h = pil.size
    rows = ocr.rows_text(lines)
    coverage = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (ln["box"] for ln in lines)) / max(1, w * h)
    layout = dict(facts.stats)
    layout["text_coverage"] = round(min(1.0, coverage), 3)
    layout["text_rows"] = len(rows)
    kind, reason = judge_kind(layout, labels)
    if kind == "graphic":
        layout["shape"] = shapes.find(pil, layout["background"]["rgb"])
    return {
        "image": {
            "width": w,
            "height": h,
            "format": image.format,
            "sha256": image.sha256,
            "source": image.source,
        },
        "kind": kind,
        "kind_reason": reason,
        "labels": labels,
        "text": "\n".join(rows),
        "text_lines": lines,
        "colours": facts.colours,
        "layout": layout,
        "timings_ms": timings,
        "cached": False,
    }


def judge_kind(layout: dict[str, Any], labels: list[dict]) -> tuple[str, str]:
    """photo, document, screenshot or graphic, with the reason in a few words.

    "Synthetic" means most of the picture is perfectly flat (drawn by a program): photographs
    measure 0.002-0.12 flat, rendered pages and screenshots 0.87-0.95 (see colours.py).
    """
    flat = layout["flat_fraction"]
    bg = layout["background"]
    rows = layout["text_rows"]
    coverage = layout["text_coverage"]
    synthetic = flat >= 0.5
    screen_label = next((x for x in labels[:1] if x["index"] in SCREEN_LABELS and x["score"] >= 0.3), None)
    has_text = rows >= 1 and coverage >= 0.005
    if has_text and synthetic:
        light_page = bg["brightness"] >= 200 and bg["share"] >= 0.5
        if light_page and layout["colour_blocks"] < 0.03 and screen_label is None:
            return "document", "text on a plain light background"
        if screen_label is not None:
            return "screenshot", f"drawn by a program, with text; the classifier says {screen_label['label']}"
        return "screenshot", "drawn by a program, with text and coloured or dark areas"
    if has_text and coverage >= 0.15 and rows >= 3 and bg["brightness"] >= 150:
        return "document", "a photographed or scanned page: many lines of text on a light background"
    if synthetic:
        return "graphic", "drawn by a program (large flat areas), no text"
    return "photo", "natural texture and light, no large flat areas"


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _LRU(CACHE_SIZE)


def clear_cache() -> None:
    _cache.clear()
