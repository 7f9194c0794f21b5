"""ANLS (golden values from PyPI ``anls`` 0.0.2, run once), exact match, and POPE (LLaVA's parser)."""

from __future__ import annotations

import pytest

from imgscribe.evaluate.metrics import anls as anls_module
from imgscribe.evaluate.metrics import get_metric
from imgscribe.evaluate.metrics.anls import anls_score
from imgscribe.evaluate.metrics.exact import exact_match
from imgscribe.evaluate.metrics.pope import parse_yes_no

# (prediction, answers, anls 0.0.2's anls_score)
ANLS_GOLDEN = [
    ("Region-based segmentation", ["region based segmentation"], 0.96),
    ("Segmentation.", ["Segmentation"], 1 - 1 / 13),
    ("segmentation", ["SEGMENTATION"], 1.0),
    ("  Hello   World ", ["hello world"], 1.0),
    ("", ["abc"], 0.0),
    ("abc", [""], 0.0),
    ("", [""], 1.0),
    ("kitten", ["sitting"], 0.5714285714285714),
    ("abcd", ["abzz"], 0.0),  # NL exactly 0.5 scores 0 (lmms-eval would give 0.5)
    ("abcde", ["abzzz"], 0.0),
    ("1,234.50", ["$1,234.50", "1234.50"], 0.8888888888888888),
    ("straße", ["STRASSE"], 0.7142857142857143),
    ("ß", ["ss"], 0.0),
    ("INV-4345", ["INV-4354"], 0.75),
    ("totally wrong", ["INV-4345"], 0.0),
]


@pytest.mark.parametrize(("pred", "answers", "expected"), ANLS_GOLDEN)
def test_anls_golden(pred, answers, expected):
    assert anls_score(pred, answers) == pytest.approx(expected)


def test_anls_length_of_normalised_strings_not_upper():
    # anls 0.0.2 divides by len("AẞS".upper())-style lengths: 'aß' vs 'a' gives 1 - 1/3 there;
    # the definition (and this implementation) uses the strings' own lengths: NL = 1/2 -> 0.
    assert anls_score("aß", ["a"]) == 0.0


def test_anls_pure_python_fallback_agrees(monkeypatch):
    pairs = [("kitten", "sitting"), ("", "abc"), ("flaw", "lawn"), ("straße", "strasse"), ("INV-4345", "INV-4354")]
    fast = [anls_module.levenshtein(a, b) for a, b in pairs]
    monkeypatch.setattr(anls_module, "_RF", None)
    assert [anls_module.levenshtein(a, b) for a, b in pairs] == fast == [3, 3, 2, 2, 2]


def test_anls_metric_mean():
    score = get_metric("anls").score(["Region-based segmentation", "no"], [["region based segmentation"], ["yes"]])
    assert score.values["anls"] == pytest.approx(0.48)


def test_exact_match_normalises_both_sides():
    assert exact_match("The Table.", ["table"]) == 1.0
    assert exact_match("two", ["2"]) == 1.0
    assert exact_match("INV-4345", ["inv 4345"]) == 1.0  # "-" is punctuation in the official list
    assert exact_match("tables", ["table"]) == 0.0
    assert get_metric("exact").score(["a", "b"], [["a"], ["c"]]).values == {"exact_match": 0.5}


# LLaVA llava/eval/eval_pope.py: first sentence, commas removed, "No"/"not"/"no" as words -> no
@pytest.mark.parametrize(("text", "parsed"), [
    ("Yes", "yes"), ("Yes.", "yes"), ("No", "no"), ("No.", "no"), ("no", "no"), ("NO", "yes"),
    ("No, there is not.", "no"), ("There is no cat in the image.", "no"), ("I do not see one", "no"),
    ("Yes. No cats though.", "yes"), ("Nope", "yes"), ("There's nothing", "yes"), ("", "yes"),
    ("no,", "no"), ("Not really", "yes"),
])  # fmt: skip
def test_pope_parser(text, parsed):
    assert parse_yes_no(text) == parsed


def test_pope_metrics():
    preds = ["Yes", "yes", "No", "No.", "yes", "no"]
    labels = ["yes", "yes", "yes", "no", "no", "no"]
    values = get_metric("pope").score(preds, labels).values
    # TP=2 FN=1 FP=1 TN=2
    assert values["accuracy"] == pytest.approx(4 / 6)
    assert values["precision"] == pytest.approx(2 / 3)
    assert values["recall"] == pytest.approx(2 / 3)
    assert values["f1"] == pytest.approx(2 / 3)
    assert values["yes_ratio"] == pytest.approx(3 / 6)  # share of *predicted* yes


def test_pope_rejects_bad_labels():
    with pytest.raises(ValueError, match="yes"):
        get_metric("pope").score(["yes"], ["maybe"])
