"""VQA accuracy (VQAv2, TextVQA) with the official answer normalisation.

Accuracy of one answer against the human answers (10 in VQAv2/TextVQA): for each of the
leave-one-annotator-out subsets, ``min(1, matches / 3)``; the mean of those. Reported as a
fraction (x100 in the leaderboards).

Normalisation follows the official evaluation, GT-Vision-Lab/VQA
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``. Two versions of it exist and differ:

``"official"`` (default) — the current file (a013f00, 2021; the lists unchanged since the v2.0
    release of 2017, and the ones MMF/EvalAI, LAVIS and lmms-eval use). Punctuation
    ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` (no ``:`` and no ``'``), ASCII contractions.
``"2015"`` — the Beta v0.9 file (07aecec) that ``shared/notes/eval.md`` section 2.2 describes:
    punctuation ``; : / ' [ ] " ( ) = + \\ _ > < @ ` , ?``, contractions with U+2019 quotes.

Steps (both): newlines and tabs to spaces, strip; punctuation: each mark is deleted when it
touches a space or when the text has a digit-comma-digit anywhere, otherwise replaced by a space;
periods not followed by a digit are deleted (the official look-behind is mistyped, so only the next
character counts, and the call passes ``re.UNICODE`` as the count, so at most 32 go); lowercase,
split, number words ``none, zero ... ten`` to digits, articles ``a an the`` dropped, contractions
typed without an apostrophe restored.

Which side is normalised:

* the prediction: always. The 2015 file did so; the current file does it only when the annotators
  disagree, but every published pipeline normalises predictions before submitting them to the
  EvalAI server (LLaVA, lmms-eval: the EvalAI answer processor), so "always" reproduces the
  published numbers;
* the human answers: only when they are not all identical (they were normalised when collected),
  with the whole normalisation (current) or the punctuation step only (2015).

The official per-answer-type breakdown of 2015 averaged the wrong value (the last leave-one-out
accuracy); groups here are means of the per-question accuracy, as in the current file.
With a single reference answer (a user's own data set), leave-one-out has nothing left: the accuracy
is then 1 for a match and 0 otherwise, i.e. normalised exact match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal

from .base import Score, mean

__all__ = ["VQAAccuracy", "normalize_answer", "process_punctuation", "vqa_accuracy"]

Variant = Literal["official", "2015"]

_PUNCT: dict[str, tuple[str, ...]] = {
    "official": (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                 ">", "<", "@", "`", ",", "?", "!"),
    "2015": (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_",
             ">", "<", "@", "`", ",", "?"),
}  # fmt: skip
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# As written in the official file: "(?!<=\d)" is a look-ahead for the text "<=" + digit, which can
# never match right before a period, so only "(?!\d)" decides.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_LIMIT = re.UNICODE  # the official call passes re.UNICODE (32) where the count goes
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})


@cache
def _contractions(variant: Variant) -> dict[str, str]:
    name = "vqa_contractions.txt" if variant == "official" else "vqa_contractions_2015.txt"
    text = resources.files("imgscribe.evaluate").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    table: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(" ")
            table[key] = value
    return table


def process_punctuation(text: str, variant: Variant = "official") -> str:
    """The official punctuation step (see the module docstring)."""
    drop_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCT[variant]:
        # The test looks at the original text, the replacement works on the running result.
        if drop_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_LIMIT)


def process_digit_article(text: str, variant: Variant = "official") -> str:
    """Lowercase, number words to digits, articles dropped, contractions restored."""
    contractions = _contractions(variant)
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [contractions.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str, variant: Variant = "official") -> str:
    """An answer as the official evaluation compares it: ``"Two dogs."`` -> ``"2 dogs"``."""
    return process_digit_article(process_punctuation(_clean(text), variant), variant)


def vqa_accuracy(prediction: str, answers: Sequence[str], variant: Variant = "official") -> float:
    """Accuracy of one prediction against the human answers, in [0, 1]."""
    answers = [_clean(a) for a in answers]
    if not answers:
        return 0.0
    pred = normalize_answer(prediction, variant)
    if len(set(answers)) > 1:
        if variant == "official":
            answers = [normalize_answer(a, variant) for a in answers]
        else:
            answers = [process_punctuation(a, variant) for a in answers]
    if len(answers) == 1:
        return 1.0 if answers[0] == pred else 0.0
    # Leave each annotator out in turn (by position: identical answers are separate annotators).
    matches = answers.count(pred)
    accs = [min(1.0, (matches - (a == pred)) / 3) for a in answers]
    return sum(accs) / len(accs)


class VQAAccuracy:
    name = "vqa"

    def __init__(self, variant: Variant = "official"):
        self.variant = variant

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
        per = [{"vqa_accuracy": vqa_accuracy(p, r, self.variant)} for p, r in zip(predictions, references)]
        notes = []
        if any(len(r) == 1 for r in references):
            notes.append("VQA accuracy: samples with a single reference answer score as normalised exact match")
        return Score({"vqa_accuracy": mean([x["vqa_accuracy"] for x in per])}, per, notes)
