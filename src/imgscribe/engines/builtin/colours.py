"""Named dominant colours and simple image statistics (numpy only, no model).

Each pixel of a small thumbnail is given the nearest of ~20 colour names in CIELAB space; the
colours reported are the names that cover a good share of the picture. The same thumbnail gives
the statistics that the layout judgement needs: how much of the picture is perfectly flat (drawn
by a program rather than photographed), the background colour and how colourful the picture is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

# name -> a typical sRGB value. Chosen so that nearest-in-Lab matches everyday naming.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "dark grey": (70, 70, 70),
    "grey": (128, 128, 128),
    "light grey": (192, 192, 192),
    "white": (250, 250, 250),
    "red": (215, 25, 30),
    "dark red": (125, 20, 25),
    "pink": (250, 150, 190),
    "magenta": (210, 30, 170),
    "purple": (115, 50, 150),
    "orange": (245, 135, 20),
    "brown": (125, 80, 45),
    "beige": (215, 190, 150),
    "yellow": (245, 225, 35),
    "olive": (125, 125, 30),
    "green": (40, 165, 55),
    "dark green": (25, 85, 35),
    "teal": (0, 125, 125),
    "turquoise": (60, 205, 210),
    "light blue": (140, 190, 235),
    "blue": (20, 60, 215),
    "navy": (20, 30, 95),
}
_NAMES = list(PALETTE)
THUMB = 64  # colour histogram thumbnail (max side)
STATS = 256  # statistics thumbnail (max side)
MIN_SHARE = 0.08  # a colour is "dominant" from 8 % of the picture


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8/float sRGB -> (..., 3) CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
        dtype=np.float32,
    )
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


_PALETTE_LAB = _srgb_to_lab(np.array([PALETTE[n] for n in _NAMES], dtype=np.float32))


def name_of(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """The palette name nearest to one sRGB colour."""
    lab = _srgb_to_lab(np.asarray(rgb, dtype=np.float32).reshape(1, 3))
    return _NAMES[int(np.argmin(((lab[:, None, :] - _PALETTE_LAB[None]) ** 2).sum(-1)[0]))]


@dataclass
class ColourFacts:
    colours: list[dict]  # [{"name", "share", "rgb", "hex"}], largest share first, share >= MIN_SHARE
    stats: dict  # flat_fraction, background {...}, colourfulness, brightness, distinct_colours


def _thumbnail(pil: PILImage.Image, side: int) -> np.ndarray:
    im = pil if pil.mode == "RGB" else pil.convert("RGB")
    if max(im.size) > side:
        scale = side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, PILImage.Resampling.BOX)
    return np.asarray(im, dtype=np.uint8)


def analyse(pil: PILImage.Image) -> ColourFacts:
    small = _thumbnail(pil, THUMB).reshape(-1, 3)
    lab = _srgb_to_lab(small)
    nearest = np.argmin(((lab[:, None, :] - _PALETTE_LAB[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(_NAMES))
    total = max(1, int(counts.sum()))
    colours = []
    for idx in np.argsort(-counts):
        share = counts[idx] / total
        if share < MIN_SHARE or len(colours) >= 5:
            break
        mean = small[nearest == idx].mean(axis=0).round().astype(int)
        colours.append(
            {
                "name": _NAMES[idx],
                "share": round(float(share), 3),
                "rgb": [int(v) for v in mean],
                "hex": "#{:02x}{:02x}{:02x}".format(*(int(v) for v in mean)),
            }
        )
    return ColourFacts(colours=colours, stats=_statistics(_thumbnail(pil, STATS)))


def _statistics(a: np.ndarray) -> dict:
    """Layout statistics of an RGB thumbnail (uint8, H x W x 3)."""
    h, w = a.shape[:2]
    f = a.astype(np.int16)
    # A pixel is "flat" when it equals its right and lower neighbours exactly: programs draw large
    # flat areas, cameras (noise, texture, light falloff) almost never do. On the test photographs
    # the flat share is 0.002-0.12; on rendered documents and UI screenshots (PNG or JPEG) 0.87-0.95.
    if h > 1 and w > 1:
        dx = np.abs(f[:-1, 1:] - f[:-1, :-1]).max(-1)
        dy = np.abs(f[1:, :-1] - f[:-1, :-1]).max(-1)
        flat = (dx == 0) & (dy == 0)
        flat_fraction = float(flat.mean())
    else:
        flat, flat_fraction = np.ones((1, 1), bool), 1.0
    # Background: the most common colour after quantising to 4 bits per channel.
    q = (a >> 4).reshape(-1, 3).astype(np.int32)
    keys = (q[:, 0] << 8) | (q[:, 1] << 4) | q[:, 2]
    counts = np.bincount(keys, minlength=4096)
    order = np.argsort(-counts)
    top = int(order[0])
    bg_mask = keys == top
    bg_rgb = a.reshape(-1, 3)[bg_mask].mean(axis=0)
    sorted_counts = counts[order]
    covered = np.cumsum(sorted_counts) / keys.size
    distinct = int(np.searchsorted(covered, 0.95) + 1)
    # Colourful blocks: flat pixels that are neither background nor grey (buttons, bars, icons).
    rgb = f[:-1, :-1] if h > 1 and w > 1 else f
    chroma = rgb.max(-1) - rgb.min(-1)
    bgm = bg_mask.reshape(h, w)[:-1, :-1] if h > 1 and w > 1 else bg_mask.reshape(h, w)
    colour_blocks = float((flat & ~bgm & (chroma > 60)).mean())
    # Colourfulness (Hasler & Suesstrunk 2003).
    rg = f[..., 0] - f[..., 1]
    yb = (f[..., 0] + f[..., 1]) / 2 - f[..., 2]
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    luma = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    return {
        "flat_fraction": round(flat_fraction, 3),
        "background": {
            "name": name_of(bg_rgb),
            "share": round(float(counts[top] / keys.size), 3),
            "rgb": [int(round(v)) for v in bg_rgb],
            "brightness": round(float(0.299 * bg_rgb[0] + 0.587 * bg_rgb[1] + 0.114 * bg_rgb[2]), 1),
        },
        "colour_blocks": round(colour_blocks, 3),
        "distinct_colours": distinct,
        "colourfulness": round(colourfulness, 1),
        "brightness": round(float(luma.mean()), 1),
    }
