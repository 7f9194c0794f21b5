"""Scores for model answers, each behind one small interface.

A metric takes the predictions of one model on one task, in sample order, and their references,
and returns a :class:`Score`: the aggregate values (fractions in [0, 1], never x100), the values
per sample where the metric is decomposable (so reports can break them down and bootstrap them)
and notes that say what was not computed or how (a missing Java runtime, a tokenizer fallback).

What a "reference" is depends on the metric:

==========  =============================================  ======================================
metric      reference per sample                           values
==========  =============================================  ======================================
``vqa``     the human answers (10 for VQAv2/TextVQA)       ``vqa_accuracy``
``anls``    the accepted answers                           ``anls``
``exact``   the accepted answers                           ``exact_match``
``caption`` the reference captions                         ``bleu1..4``, ``rouge_l``, ``cider_d``,
                                                           ``meteor`` (Java)
``chair``   the objects in the image (vocabulary names)    ``chair_i``, ``chair_s``,
                                                           ``object_recall``
``pope``    ``"yes"`` or ``"no"``                          ``accuracy``, ``precision``,
                                                           ``recall``, ``f1``, ``yes_ratio``
==========  =============================================  ======================================
"""

from __future__ import annotations

from typing import Any

from .base import LOWER_IS_BETTER, Metric, Score, mean

__all__ = ["LOWER_IS_BETTER", "Metric", "Score", "get_metric", "mean", "metric_names"]


def get_metric(name: str, **settings: Any) -> Metric:
    """A metric by name (``vqa``, ``anls``, ``exact``, ``caption``, ``chair``, ``pope``)."""
    if name == "vqa":
        from .vqa import VQAAccuracy

        return VQAAccuracy()
    if name == "anls":
        from .anls import ANLS

        return ANLS(**settings)
    if name == "exact":
        from .exact import ExactMatch

        return ExactMatch()
    if name == "caption":
        from .caption import CaptionMetrics

        return CaptionMetrics(**settings)
    if name == "chair":
        from .chair import Chair

        return Chair(**settings)
    if name == "pope":
        from .pope import Pope

        return Pope()
    raise ValueError(f"unknown metric {name!r} (known: {', '.join(metric_names())})")


def metric_names() -> list[str]:
    return ["vqa", "anls", "exact", "caption", "chair", "pope"]
