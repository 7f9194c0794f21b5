"""Exact match: 1 when the prediction equals one of the accepted answers after the official VQA
answer normalisation (:func:`~imgscribe.evaluate.metrics.vqa.normalize_answer`: case, punctuation,
articles, number words), else 0. Both sides are normalised."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Score, mean
from .vqa import normalize_answer

__all__ = ["ExactMatch", "exact_match"]


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return 1.0 if any(normalize_answer(a) == pred for a in answers) else 0.0


class ExactMatch:
    name = "exact"

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
        per = [{"exact_match": exact_match(p, r)} for p, r in zip(predictions, references)]
        return Score({"exact_match": mean([x["exact_match"] for x in per])}, per)
