"""Regenerate the example images in this folder (see PROVENANCE.md).

    python examples/make_examples.py

Needs scikit-image (the test extra: ``pip install -e '.[test]'``) for the photographs and a DejaVu
Sans font (Debian/Ubuntu: ``fonts-dejavu-core``) for the rendered invoice.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
JPEG_QUALITY = 90
PHOTOS = {  # file name -> skimage.data function
    "coffee.jpg": "coffee",
    "chelsea.jpg": "chelsea",
    "rocket.jpg": "rocket",
}
INVOICE = [
    "INVOICE",
    "Invoice No. 4821 - Date: 3 March 2027",
    "Bill to: Maple Street Bakery, 14 Elm St, Springfield",
    "Total due: $1,250.00",
    "Please pay by Friday, 12 March 2027.",
]
FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts",
             "/Library/Fonts", "C:/Windows/Fonts"]  # fmt: skip


def find_font(name: str = "DejaVuSans.ttf") -> Path:
    for d in FONT_DIRS:
        p = Path(d) / name
        if p.is_file():
            return p
    try:  # matplotlib ships DejaVu Sans, when it is installed
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        if p.is_file():
            return p
    except ImportError:
        pass
    raise SystemExit(f"{name} not found: install the fonts-dejavu-core package (or matplotlib)")


def render_document(lines: list[str], size: int = 28, width: int = 900) -> Image.Image:
    """Dark text on white, one line every 1.7 x the font size, left margin = font size."""
    font = ImageFont.truetype(str(find_font()), size)
    bold = ImageFont.truetype(str(find_font("DejaVuSans-Bold.ttf")), size + 8)
    height = 2 * size + int(size * 1.7) * len(lines) + size // 2
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    y = size
    for i, line in enumerate(lines):
        draw.text((size, y), line, font=bold if i == 0 else font, fill=(25, 25, 25))
        y += int(size * 1.7) + (size // 2 if i == 0 else 0)
    return im


def main() -> int:
    import skimage.data

    for name, func in PHOTOS.items():
        Image.fromarray(getattr(skimage.data, func)()).save(HERE / name, quality=JPEG_QUALITY, optimize=True)
    render_document(INVOICE).save(HERE / "invoice.png", optimize=True)
    for p in sorted(HERE.glob("*.*")):
        if p.suffix in (".jpg", ".png"):
            print(f"{p.name}: {p.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
