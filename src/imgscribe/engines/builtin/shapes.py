"""One simple shape on a plain background (a flat graphic): circle, rectangle or triangle, and its
colour. Geometry only, no model: the shape is what differs from the background colour, and its
kind follows from how much of its bounding box it fills (rectangle ~1, circle/ellipse ~pi/4,
triangle ~1/2). Anything else (several shapes, text, photos) gives None."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from .colours import _srgb_to_lab, name_of

SIDE = 128  # analysed at most this big (nearest-neighbour: flat colours stay flat)
MIN_SHARE, MAX_SHARE = 0.01, 0.85  # of the picture the shape may cover
MIN_SOLIDITY = 0.88  # pixel area / convex hull area (the hull runs through pixel centres: small shapes > 1)
MAX_PARTS = 12  # separate parts looked at before giving up
DIFFERENT = 25.0  # CIELAB distance from the background that makes a pixel part of the shape


def find(pil: PILImage.Image, background_rgb: list[int]) -> dict | None:
    im = pil if pil.mode == "RGB" else pil.convert("RGB")
    if max(im.size) > SIDE:
        s = SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), PILImage.Resampling.NEAREST)
    a = np.asarray(im, dtype=np.uint8)
    lab = _srgb_to_lab(a)
    bg = _srgb_to_lab(np.asarray(background_rgb, dtype=np.float32).reshape(1, 3))[0]
    mask = np.sqrt(((lab - bg) ** 2).sum(-1)) > DIFFERENT
    share = float(mask.mean())
    if not MIN_SHARE <= share <= MAX_SHARE:
        return None
    mask = _largest_part(mask)
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if min(h, w) < 4 or mask.sum() < 0.8 * share * mask.size:  # several separate things: not one shape
        return None
    if _solidity(mask) < MIN_SOLIDITY:  # a silhouette with dents (a horse, a hand): not a simple shape
        return None
    fill = float(mask.sum() / (h * w))
    # Small shapes fill their box a little more than the ideal (anti-aliased edges): the bounds
    # were set on the easy-vqa test images (64x64, shapes from 8 to 40 pixels).
    if fill >= 0.91:
        shape = "square" if 0.9 <= w / h <= 1.1 else "rectangle"
    elif 0.67 <= fill < 0.91:
        shape = "circle" if 0.85 <= w / h <= 1.18 else "ellipse"
    elif 0.35 <= fill < 0.67:
        shape = "triangle"
    else:
        return None
    core = a[mask].reshape(-1, 3)
    colour = name_of(np.median(core, axis=0))
    return {"shape": shape, "colour": colour, "fill": round(fill, 3), "box_share": round(float(h * w / mask.size), 3)}


def _solidity(mask: np.ndarray) -> float:
    """Area over the area of its convex hull: 1 for circles, rectangles and triangles."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
    return float(mask.sum() / max(hull, 1.0)) if hull > 0 else 0.0


def _largest_part(mask: np.ndarray) -> np.ndarray:
    """The 4-connected part of ``mask`` holding most pixels (iterative flood fill, numpy only)."""
    remaining = mask.copy()
    best = np.zeros_like(mask)
    for _ in range(MAX_PARTS):
        if not remaining.any() or remaining.sum() <= best.sum():
            break
        y, x = np.argwhere(remaining)[0]
        part = np.zeros_like(mask)
        part[y, x] = True
        while True:
            grown = part.copy()
            grown[1:] |= part[:-1]
            grown[:-1] |= part[1:]
            grown[:, 1:] |= part[:, :-1]
            grown[:, :-1] |= part[:, 1:]
            grown &= remaining
            if grown.sum() == part.sum():
                break
            part = grown
        remaining &= ~part
        if part.sum() > best.sum():
            best = part
    return best
