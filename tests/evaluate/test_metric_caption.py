"""BLEU / ROUGE-L / CIDEr-D / METEOR against pycocoevalcap run as the reference (its own PTBTokenizer
and scorers on the same captions; values recorded from that run), and the no-Java fallback."""

from __future__ import annotations

import os

import pytest

from imgscribe.errors import InvalidRequest
from imgscribe.evaluate.metrics import caption
from imgscribe.evaluate.metrics.caption import CaptionMetrics, ptb_tokenize, simple_tokenize

REFS = [
    ["A cat sitting on a wooden table.", "A tabby cat lies on the table.", "A cat resting on a table next to a cup."],
    ["A man riding a red bicycle down the street.", "A person on a bike in a city street.",
     "A cyclist rides along a busy road."],
    ["Two dogs playing in the snow.", "A pair of dogs run through snow.", "Dogs play together in a snowy field."],
    ["A cup of coffee on a saucer with a spoon.", "An espresso in a red cup on a wooden table.",
     "A small coffee cup and a spoon on a saucer."],
]  # fmt: skip
HYPS = ["A cat sitting on a wooden table.", "A man riding a bike down the street.", "Two dogs playing in the snow!",
        "A red cup of coffee with a spoon on a saucer."]  # fmt: skip
# pycocoevalcap 1.2: PTBTokenizer + Bleu(4) + Rouge + Cider + Meteor on REFS/HYPS (Java 17)
GOLDEN = {
    "bleu1": 0.9999999999687501, "bleu2": 0.9636241116271674, "bleu3": 0.8863913854905451,
    "bleu4": 0.7681776124733646, "rouge_l": 0.871831610266274, "cider_d": 3.404520836218165,
}  # fmt: skip
GOLDEN_CIDER_PER = [4.133951449169236, 2.238428954742179, 3.877053380092481, 3.3686495608687665]
GOLDEN_METEOR = 0.536994279455229

# Without Java these are skipped on a developer's machine, never in CI (CI=true): there they fail.
needs_java = pytest.mark.skipif(
    not caption.java_available() and not os.environ.get("CI"),
    reason="Java runtime missing: apt-get install default-jre-headless",
)


@pytest.fixture
def no_java(monkeypatch):
    monkeypatch.setattr(caption, "java_available", lambda: False)


@needs_java
def test_ptb_matches_pycocoevalcap():
    score = CaptionMetrics(tokenizer="ptb", meteor=False).score(HYPS, REFS)
    assert score.values == pytest.approx(GOLDEN, rel=1e-9)
    assert [s["cider_d"] for s in score.per_sample] == pytest.approx(GOLDEN_CIDER_PER, rel=1e-9)
    assert any("PTB" in n for n in score.notes) and any("SPICE" in n for n in score.notes)


def test_pure_python_tokenizer_gives_the_same_scores_on_plain_captions(no_java):
    score = CaptionMetrics(meteor=None).score(HYPS, REFS)
    assert score.values == pytest.approx(GOLDEN, rel=1e-9)
    assert "meteor" not in score.values
    assert caption.METEOR_UNAVAILABLE in score.notes
    assert any("PTB tokenizer unavailable" in n for n in score.notes)


def test_meteor_required_without_java_is_a_clear_error(no_java):
    with pytest.raises(InvalidRequest, match="apt-get install default-jre-headless"):
        CaptionMetrics(meteor=True).score(HYPS, REFS)


TRICKY = ["A man's dog (brown) [big] ran.", "", "Don't they're can't won't I'm we've you'll he'd",
          "red-and-white 1,000 3.5 e-mail a/b \"quoted\" it's 'single' end...", "Hello!!! What? semi; colon: dash - x",
          "A woman\u2019s bike leaning against a wall.", "The players' shirts are red; it's 5 o'clock."]  # fmt: skip


@needs_java
def test_pure_python_tokenizer_agrees_with_ptb():
    assert [simple_tokenize(t) for t in TRICKY] == ptb_tokenize(TRICKY)


def test_pure_python_tokenizer():
    assert simple_tokenize("A man's dog (brown) ran.") == "a man 's dog -lrb- brown -rrb- ran"
    assert simple_tokenize("Don't stop!") == "do n't stop"


def test_empty_prediction_and_validation(no_java):
    score = CaptionMetrics(meteor=False).score(["", HYPS[1]], REFS[:2])
    assert score.per_sample[0]["cider_d"] == 0.0 and score.per_sample[0]["rouge_l"] == 0.0
    with pytest.raises(ValueError, match="reference"):
        CaptionMetrics(meteor=False).score(["x"], [[]])


@pytest.mark.slow
@needs_java
def test_meteor_matches_pycocoevalcap():
    """METEOR 1.5 starts a JVM and loads its paraphrase table: ~25 s."""
    score = CaptionMetrics(tokenizer="ptb", meteor=True).score(HYPS, REFS)
    assert score.values["meteor"] == pytest.approx(GOLDEN_METEOR, rel=1e-9)
    assert len([s["meteor"] for s in score.per_sample]) == 4
