"""ANLS, the Average Normalized Levenshtein Similarity of DocVQA and ST-VQA.

``ANLS = mean_i max_j s(a_ij, o_i)``, ``s = 1 - NL`` when ``NL < tau`` else 0, ``tau = 0.5``,
``NL(a, o) = levenshtein(a, o) / max(len(a), len(o))`` (Biten et al., ICCV 2019; Mathew et al.,
WACV 2021). Both strings are compared case-insensitively, stripped, internal whitespace collapsed.

Choices where the implementations differ (``shared/notes/eval.md`` section 2.1), pinned in tests:

* lengths are those of the normalised strings, as the definition says. PyPI ``anls`` 0.0.2 and the
  RRC script take ``len(s.upper())``, which differs only where upper-casing changes the length
  ("ß" -> "SS"); lmms-eval and VLMEvalKit take the raw strings' lengths (extra spaces inflate the
  score);
* ``NL`` exactly ``tau`` scores 0 (``NL < tau``), as in the definition and ``anls``; lmms-eval
  scores it 0.5;
* two empty strings are equal (score 1); an empty prediction against a non-empty answer scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Score, mean

__all__ = ["ANLS", "anls_score", "levenshtein"]

try:  # MIT; a C++ Levenshtein. The pure-Python one below gives the same numbers, slower.
    from rapidfuzz.distance import Levenshtein as _RF
except ImportError:  # pragma: no cover - exercised by the fallback test
    _RF = None


def _levenshtein_py(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def levenshtein(a: str, b: str) -> int:
    return _RF.distance(a, b) if _RF is not None else _levenshtein_py(a, b)


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_score(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """The best similarity of one prediction to any accepted answer, in [0, 1]."""
    pred = _norm(prediction)
    best = 0.0
    for answer in answers:
        gold = _norm(answer)
        length = max(len(pred), len(gold))
        nl = levenshtein(pred, gold) / length if length else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


class ANLS:
    name = "anls"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
        per = [{"anls": anls_score(p, r, self.threshold)} for p, r in zip(predictions, references)]
        return Score({"anls": mean([x["anls"] for x in per])}, per)
