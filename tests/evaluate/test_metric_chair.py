"""CHAIR-i / CHAIR-s / object recall, hand-computed goldens, and the vocabulary's behaviour."""

from __future__ import annotations

import pytest

from imgscribe.evaluate.metrics import get_metric
from imgscribe.evaluate.metrics.chair import Vocabulary, extract_objects, vocabulary


@pytest.mark.parametrize(("text", "objects"), [
    ("A man eating a hot dog next to two dogs.", ["person", "hot dog", "dog"]),
    ("Teddy bears on the beds", ["teddy bear", "bed"]),
    ("Two women and three children with skis", ["person", "person", "skis"]),
    ("A cup of coffee on a saucer with a spoon", ["cup", "saucer", "spoon"]),
    ("Cats, buses, knives, benches, galaxies", ["cat", "bus", "knife", "bench", "galaxy"]),
    ("An astronaut in an orange spacesuit", ["person", "spacesuit"]),
    ("An orange and brown striped cat", ["cat"]),
    ("An orange and a banana", ["orange", "banana"]),
    ("This is his bus", ["bus"]),  # "this", "is", "his" are never singularised into objects
    ("", []),
])  # fmt: skip
def test_extract_objects(text, objects):
    assert extract_objects(text) == objects


def test_chair_golden():
    preds = [
        "A cat and a dog on a couch.",  # dog hallucinated: 1 of 3
        "A cup on a table.",  # none hallucinated; 2 of 3 objects named
        "A man with a kite and a kite.",  # 2 kites hallucinated, duplicates count: 2 of 3
        "Nothing to see.",  # no mention
    ]
    refs = [["cat", "couch"], ["mug", "dining table", "spoon"], ["person"], ["clock"]]
    score = get_metric("chair").score(preds, refs)
    assert score.values["chair_i"] == pytest.approx(3 / 8)
    assert score.values["chair_s"] == pytest.approx(2 / 4)
    assert score.values["object_recall"] == pytest.approx((2 + 2 + 1 + 0) / (2 + 3 + 1 + 1))
    assert score.values["mentions_per_caption"] == pytest.approx(8 / 4)
    assert [s["chair_s"] for s in score.per_sample] == [1.0, 0.0, 1.0, 0.0]


def test_custom_vocabulary():
    vocab = Vocabulary.from_table({"widget": ["gizmo", "gadget thing"]})
    assert extract_objects("two gizmos and a gadget thing", vocab) == ["widget", "widget"]
    assert vocab.canonical("Gizmos") == "widget"
    assert vocabulary().canonical("mug") == "cup"
