"""VQA accuracy and the official answer normalisation, against the official evaluation's outputs.

Golden values were produced by running GT-Vision-Lab/VQA ``vqaEval.py`` itself (the current file,
a013f00, and the 2015 file, 07aecec, the one ``shared/notes/eval.md`` section 2.2 describes) on
these answers, with the prediction normalised before submission as published pipelines do.
"""

from __future__ import annotations

import pytest

from imgscribe.evaluate.metrics import get_metric
from imgscribe.evaluate.metrics.vqa import normalize_answer, process_punctuation, vqa_accuracy

# shared/notes/eval.md 2.2: prediction -> (2015 official file, MMF/EvalAI processor).
# The current official file (the default here) gives exactly the MMF column.
NORMALISATION = [
    ("Yes!", "yes!", "yes"),
    ("yes: it is", "yes it is", "yes: it is"),
    ("don't know", "don t know", "don't know"),
    ("red-and-white", "red-and-white", "red and white"),
    ("a dog's toy", "dog s toy", "dog's toy"),
    ("Two dogs.", "2 dogs", "2 dogs"),
    ("1,000", "1000", "1000"),
    ("the table.", "table", "table"),
    ("none", "0", "0"),
]


@pytest.mark.parametrize(("text", "v2015", "current"), NORMALISATION)
def test_normalisation_table_of_eval_md(text, v2015, current):
    assert normalize_answer(text, "2015") == v2015
    assert normalize_answer(text) == current


def test_contractions_and_quotes():
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("dont know", "2015") == "don\u2019t know"  # the 2015 file's right quote
    assert normalize_answer("Whats up") == "what's up"
    assert normalize_answer("I dont know", "2015") == "i don\u2019t know"


def test_punctuation_rules():
    assert process_punctuation("3.5") == "3.5"  # a period before a digit stays
    assert process_punctuation("a,b") == "a b"  # no space around: replaced by a space
    assert process_punctuation("a, b") == "a b"  # touching a space: deleted
    assert process_punctuation("1,000 (approx)") == "1000 approx"  # digit,digit anywhere: all deleted
    assert normalize_answer("\tTwo\n") == "2"
    # the official call passes re.UNICODE (32) as the count: at most 32 periods go
    assert normalize_answer("." * 40) == "." * 8


# (prediction, the 10 human answers) -> accuracy x100 from the official code
GOLDEN = [
    ("Two", ["2"] * 3 + ["3"] * 7, 90.0, 90.0),
    ("two dogs", ["2 dogs"] * 2 + ["2"] * 8, 60.0, 60.0),
    ("Yes!", ["yes"] * 9 + ["Yes"], 100.0, 0.0),
    ("yes", ["yes"] * 10, 100.0, 100.0),
    ("The table.", ["table"] * 4 + ["desk"] * 6, 100.0, 100.0),
    ("red-and-white", ["red and white"] * 5 + ["red"] * 5, 100.0, 0.0),
    ("don't know", ["don't know"] * 2 + ["no"] * 8, 60.0, 60.0),
    ("1,000", ["1000"] * 3 + ["1,000"] * 7, 100.0, 100.0),
    ("none", ["0"] * 6 + ["none"] * 4, 100.0, 100.0),
    ("3.5", ["3.5"] + ["3"] * 9, 30.0, 30.0),
]


@pytest.mark.parametrize(("pred", "answers", "current", "v2015"), GOLDEN)
def test_accuracy_matches_the_official_code(pred, answers, current, v2015):
    assert round(100 * vqa_accuracy(pred, answers), 2) == current
    assert round(100 * vqa_accuracy(pred, answers, "2015"), 2) == v2015


def test_leave_one_out_counts_identical_answers_as_separate_annotators():
    # 3 of 10 said "cat": leaving out a "cat" leaves 2 matches (2/3), else 3 (1): (3*2/3 + 7)/10
    assert vqa_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("bird", ["cat"] * 10) == 0.0


def test_single_reference_is_normalised_exact_match():
    assert vqa_accuracy("Circle.", ["circle"]) == 1.0
    assert vqa_accuracy("square", ["circle"]) == 0.0
    assert vqa_accuracy("anything", []) == 0.0


def test_metric_interface():
    score = get_metric("vqa").score(["Two", "cat"], [["2"] * 10, ["dog"] * 10])
    assert score.values == {"vqa_accuracy": pytest.approx(0.5)}
    assert [s["vqa_accuracy"] for s in score.per_sample] == [1.0, 0.0]
