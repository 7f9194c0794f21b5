"""POPE: yes/no object probes ("Is there a <object> in the image?"), Li et al., EMNLP 2023.

Answers are read with the rule of the POPE repository and LLaVA's ``llava/eval/eval_pope.py``: keep
the text before the first ".", remove commas, split on spaces; the answer is "no" when the words
contain ``No``, ``not`` or ``no`` (case-sensitive, whole words), otherwise "yes". So "No, there
is not." and "There is no cat" read "no"; "Yes." and "I see a cat" read "yes"; "NO" reads "yes".

"yes" is the positive class. ``yes_ratio`` is the share of *predicted* "yes" (lmms-eval's
``pope_yes_ratio`` averages the ground truth instead, ~0.5 by construction; not done here).
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Score

__all__ = ["Pope", "parse_yes_no"]

_NEGATIVE = frozenset({"No", "not", "no"})


def parse_yes_no(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if _NEGATIVE.intersection(words) else "yes"


class Pope:
    name = "pope"

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> Score:
        parsed = [parse_yes_no(p) for p in predictions]
        labels = [str(r).strip().lower() for r in references]
        bad = sorted({label for label in labels if label not in ("yes", "no")})
        if bad:
            raise ValueError(f"POPE labels must be 'yes' or 'no', got {bad[:3]}")
        tp = sum(p == "yes" and g == "yes" for p, g in zip(parsed, labels))
        fp = sum(p == "yes" and g == "no" for p, g in zip(parsed, labels))
        tn = sum(p == "no" and g == "no" for p, g in zip(parsed, labels))
        fn = sum(p == "no" and g == "yes" for p, g in zip(parsed, labels))
        n = len(labels)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        values = {
            "accuracy": (tp + tn) / n if n else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "yes_ratio": parsed.count("yes") / n if n else 0.0,
        }
        per = [{"accuracy": float(p == g), "yes": float(p == "yes")} for p, g in zip(parsed, labels)]
        return Score(values, per)
