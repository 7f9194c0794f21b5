"""Scores with n, intervals, groups and speed; the same numbers every time."""

from __future__ import annotations

import pytest

from imgscribe.evaluate.datasets import Sample, Task
from imgscribe.evaluate.scoring import bootstrap_ci, score_task


def _task():
    samples = [Sample(f"s{i}", b"", f"q{i}", [answer], group=group)
               for i, (answer, group) in enumerate([("red", "color"), ("blue", "color"), ("yes", "yes/no"), ("no", "yes/no")])]  # fmt: skip
    return Task("t", "vqa", samples, source="test")


def test_score_task():
    records = [
        {"prediction": "Red.", "latency_s": 0.5, "eval_tokens": 2, "eval_duration_s": 0.1},
        {"prediction": "green", "latency_s": 1.5, "eval_tokens": 1, "eval_duration_s": 0.1, "cached": True},
        {"prediction": "Yes!\nBecause...", "latency_s": 1.0, "eval_tokens": 5, "eval_duration_s": 0.3},
        {"prediction": "", "error": "boom"},
    ]
    result, rows = score_task(_task(), records)
    assert result["scores"] == {"vqa_accuracy": 0.5} and result["primary_value"] == 0.5
    assert result["groups"] == {"color": {"n": 2, "vqa_accuracy": 0.5}, "yes/no": {"n": 2, "vqa_accuracy": 0.5}}
    lo, hi = result["ci95"]["vqa_accuracy"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    assert result["n"] == 4 and result["n_errors"] == 1 and result["n_cached"] == 1 and result["errors"] == ["boom"]
    assert result["latency_s"]["mean"] == pytest.approx(1.0) and result["latency_s"]["p50"] == pytest.approx(1.0)
    assert result["tokens_per_s"] == pytest.approx(8 / 0.5)
    assert [r["answer"] for r in rows] == ["Red.", "green", "Yes", ""]
    assert [r["scores"]["vqa_accuracy"] for r in rows] == [1.0, 0.0, 1.0, 0.0]


def test_bootstrap_is_deterministic():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    lo, hi = bootstrap_ci(values)
    assert lo < sum(values) / len(values) < hi
    assert bootstrap_ci([0.7]) == [0.7, 0.7] and bootstrap_ci([]) == [0.0, 0.0]
