"""The built-in offline sets: nothing is downloaded; each says where its data comes from.

* ``docs``: documents rendered here, deterministically, with Pillow's embedded font
  (``ImageFont.load_default(size=28)``, FreeType "Aileron"), so the text and the answers are known.
* ``easyvqa``: the easy-vqa PyPI package (MIT) ships 1,000 test images and 9,673 questions; a fixed
  subset of 200 is drawn with ``random.Random(0)``.
* ``photos``, ``photos-detail``, ``photos-pope``: ten photographs from the scikit-image wheel
  (public domain or CC0, per ``skimage.data`` docstrings), read in place, with captions, object
  lists and absent objects written for imgscribe (``data/photos.json``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
from functools import cache
from importlib import resources
from pathlib import Path

from ...errors import InvalidRequest
from .task import Sample, Task

DOCS_SEED = 2026
DOCS_COUNT = 20
EASYVQA_SEED = 0
EASYVQA_COUNT = 200


# --------------------------------------------------------------------------- documents

_COMPANIES = ["Northwind Traders", "Blue Harbor Supply", "Maple Street Bakery", "Orion Office Goods",
              "Greenfield Hardware", "Silver Lake Books", "Summit Print Shop", "Riverbend Florist"]
_PEOPLE = ["Alice Martin", "Samuel Okafor", "Priya Raman", "Jonas Weber", "Maria Lopez", "Chen Wei",
           "Fatima Haddad", "Lucas Moreau", "Emma Novak", "Kenji Sato"]
_CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Madison", "Georgetown", "Ashland"]
_ITEMS = [("Printer paper", 6.5), ("Blue pens", 3.2), ("Desk lamp", 24.0), ("Stapler", 8.75),
          ("Notebook", 4.1), ("Coffee beans", 12.9), ("Tape roll", 2.3), ("Folder set", 5.6),
          ("USB cable", 7.45), ("Sticky notes", 1.95)]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_PAYMENTS = ["Cash", "Credit card", "Debit card", "Gift card"]  # fmt: skip


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _money_answers(value: float) -> list[str]:
    return list(dict.fromkeys([_money(value), f"{value:,.2f}", f"{value:.2f}"]))


def _document(index: int) -> tuple[str, list[tuple[str, str]], list[tuple[str, list[str]]]]:
    """(title, lines as (label, value), questions as (question, answers)) for document ``index``."""
    rng = random.Random(DOCS_SEED * 1000 + index)
    kind = ("invoice", "receipt", "form")[index % 3]
    day, month, year = rng.randint(1, 28), rng.randrange(12), rng.randint(2019, 2025)
    date = f"{_MONTHS[month]} {day}, {year}"
    if kind == "form":
        name, city = rng.choice(_PEOPLE), rng.choice(_CITIES)
        phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        member = f"M-{rng.randint(10000, 99999)}"
        lines = [("Name", name), ("City", city), ("Phone", phone), ("Member ID", member), ("Date", date)]
        questions = [
            ("What is the applicant's phone number?", [phone]),
            ("What is the member ID?", [member]),
            ("Which city does the applicant live in?", [city]),
        ]
        return "Membership Application", lines, questions
    company = rng.choice(_COMPANIES)
    items = rng.sample(_ITEMS, 3)
    counts = [rng.randint(1, 9) for _ in items]
    total = round(sum(price * n for (_, price), n in zip(items, counts)), 2)
    item_lines = [(f"{n} x {label}", _money(price * n)) for (label, price), n in zip(items, counts)]
    if kind == "invoice":
        number = f"INV-{rng.randint(1000, 9999)}"
        customer = rng.choice(_PEOPLE)
        lines = [("Invoice No.", number), ("Date", date), ("Bill to", customer), *item_lines,
                 ("Total", _money(total))]  # fmt: skip
        questions = [
            ("What is the invoice number?", [number]),
            ("What is the total amount?", _money_answers(total)),
            ("Who is the invoice billed to?", [customer]),
        ]
        return f"{company} - Invoice", lines, questions
    payment = rng.choice(_PAYMENTS)
    lines = [("Store", company), ("Date", date), *item_lines, ("Total", _money(total)), ("Paid by", payment)]
    questions = [
        ("What is the name of the store?", [company]),
        ("What is the total?", _money_answers(total)),
        ("What is the date on the receipt?", [date]),
    ]
    return "Receipt", lines, questions


def render_document(index: int) -> bytes:
    """PNG bytes of document ``index``: the same bytes for the same Pillow version."""
    from PIL import Image, ImageDraw, ImageFont

    title, lines, _ = _document(index)
    body, head = ImageFont.load_default(size=28), ImageFont.load_default(size=36)
    width, line_h = 900, 44
    height = 140 + line_h * len(lines) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 36), title, font=head, fill="black")
    draw.line((40, 96, width - 40, 96), fill="black", width=2)
    y = 120
    for label, value in lines:
        draw.text((40, y), label, font=body, fill="black")
        draw.text((width - 40, y), value, font=body, fill="black", anchor="ra")
        y += line_h
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def docs() -> Task:
    samples = []
    for index in range(DOCS_COUNT):
        _, _, questions = _document(index)
        render = _cached_render(index)
        for k in range(2):  # two of the three questions, rotating, so every kind of question is asked
            q = (index // 3 + k) % len(questions)
            question, answers = questions[q]
            samples.append(Sample(f"doc{index:02d}-q{q}", render, question, answers, group=_document_kind(index)))
    return Task(
        "docs", "docvqa", samples,
        source=f"imgscribe synthetic documents: {DOCS_COUNT} invoices/receipts/forms rendered at load time "
        f"with Pillow's embedded font (Aileron, size 28), field values drawn with random.Random({DOCS_SEED}*1000+i)",
        licence="generated by imgscribe (Apache-2.0)",
    )  # fmt: skip


def _document_kind(index: int) -> str:
    return ("invoice", "receipt", "form")[index % 3]


def _cached_render(index: int):
    return lambda: _render_cache(index)


@cache
def _render_cache(index: int) -> bytes:
    return render_document(index)


# --------------------------------------------------------------------------- easy-vqa


def easyvqa() -> Task:
    try:
        from easy_vqa import get_test_image_paths, get_test_questions
    except ImportError:
        raise InvalidRequest(
            "the 'easyvqa' set needs the easy-vqa package: pip install 'imgscribe[eval]'"
        ) from None
    questions, answers, image_ids = get_test_questions()
    paths = get_test_image_paths()
    order = random.Random(EASYVQA_SEED).sample(range(len(questions)), EASYVQA_COUNT)
    samples = []
    for i in order:
        answer = answers[i]
        shape = answer in ("circle", "rectangle", "triangle")
        group = "yes/no" if answer in ("yes", "no") else "shape" if shape else "color"
        samples.append(Sample(f"q{i}", Path(paths[image_ids[i]]), questions[i], [answer], group=group))
    return Task(
        "easyvqa", "vqa", samples,
        source=f"easy-vqa 1.0 (PyPI) test split: {EASYVQA_COUNT} of {len(questions)} questions drawn with "
        f"random.Random({EASYVQA_SEED}).sample; 64x64 synthetic images of one shape",
        licence="MIT (easy-vqa)", total=EASYVQA_COUNT,
    )  # fmt: skip


# --------------------------------------------------------------------------- photos


@cache
def _photos_data() -> dict:
    path = resources.files("imgscribe.evaluate").joinpath("data").joinpath("photos.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidRequest("the photo sets need the scikit-image package: pip install 'imgscribe[eval]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _photo_source() -> str:
    return (
        "10 photographs shipped in the scikit-image wheel (skimage/data), read in place; captions, object lists "
        "and absent objects written for imgscribe (imgscribe/evaluate/data/photos.json)"
    )


def _licences() -> str:
    return "; ".join(f"{p['id']}: {p['licence']}" for p in _photos_data()["photos"])


def _photo_samples(with_captions: bool) -> list[Sample]:
    root = _skimage_data_dir()
    samples = []
    for photo in _photos_data()["photos"]:
        path = root / photo["file"]
        refs = photo["references"] if with_captions else []
        samples.append(Sample(photo["id"], path, "", refs, objects=list(photo["objects"])))
    return samples


def photos() -> Task:
    return Task("photos", "caption", _photo_samples(True), source=_photo_source(), licence=_licences(),
                metrics=["caption", "chair"])  # fmt: skip


def photos_detail() -> Task:
    return Task("photos-detail", "describe", _photo_samples(False), source=_photo_source(), licence=_licences())


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def photos_pope() -> Task:
    root = _skimage_data_dir()
    samples = []
    for photo in _photos_data()["photos"]:
        path = root / photo["file"]
        present = photo["objects"][:3]
        probes = [(o, "yes") for o in present] + [(o, "no") for o in photo["absent"][: len(present)]]
        for obj, label in probes:
            question = f"Is there {_article(obj)} {obj} in the image?"
            samples.append(Sample(f"{photo['id']}-{obj.replace(' ', '_')}", path, question, [label],
                                  objects=list(photo["objects"]), label=label, group="random"))  # fmt: skip
    return Task(
        "photos-pope", "pope", samples,
        source=_photo_source() + "; probes 'Is there a/an <object> in the image?' for up to 3 present objects "
        "per photo and as many absent ones (absent objects chosen by hand, POPE 'random'-style)",
        licence=_licences(),
    )  # fmt: skip
