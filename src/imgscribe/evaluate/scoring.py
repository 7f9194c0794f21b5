"""Turn one model's answers on one task into scores, with n, confidence intervals and speed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .datasets import Task
from .harness import postprocess
from .metrics import get_metric

__all__ = ["BOOTSTRAP_SAMPLES", "MEAN_OF_SAMPLES", "score_task"]

#: values that are the mean of their per-sample values: these get a bootstrap 95 % interval and a
#: breakdown by group. Corpus-level values (BLEU, CIDEr-D, CHAIR-i, object recall, F1) get neither.
MEAN_OF_SAMPLES = frozenset({"vqa_accuracy", "anls", "exact_match", "accuracy", "chair_s"})
BOOTSTRAP_SAMPLES = 1000


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bootstrap_ci(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of the mean (numpy, fixed seed: the same run, the same interval)."""
    import numpy as np

    if len(values) < 2:
        return [float(values[0]), float(values[0])] if values else [0.0, 0.0]
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def score_task(task: Task, records: list[dict[str, Any]], metric_settings: dict[str, dict[str, Any]] | None = None
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """(the result for the leaderboard, the per-sample rows). ``records`` are in sample order.

    A failed answer scores as a wrong (empty) one; when every answer failed there is no score at all.
    """
    metric_settings = metric_settings or {}
    answers = [postprocess(r.get("prediction") or "", task.postprocess) for r in records]
    values: dict[str, float] = {}
    per_sample: list[dict[str, float]] = [{} for _ in records]
    notes: list[str] = []
    all_failed = bool(records) and all(r.get("error") for r in records)
    for name in [] if all_failed else task.metrics:
        metric = get_metric(name, **metric_settings.get(name, {}))
        refs = [task.reference(s, name) for s in task.samples]
        score = metric.score(answers, refs)
        values.update(score.values)
        notes.extend(score.notes)
        for row, extra in zip(per_sample, score.per_sample or []):
            row.update(extra)
    groups: dict[str, dict[str, Any]] = {}
    for sample, row in zip(task.samples, per_sample):
        if sample.group:
            g = groups.setdefault(sample.group, {"n": 0, "_sums": {}})
            g["n"] += 1
            for key in MEAN_OF_SAMPLES.intersection(row):
                g["_sums"][key] = g["_sums"].get(key, 0.0) + row[key]
    for g in groups.values():
        sums = g.pop("_sums")
        g.update({k: v / g["n"] for k, v in sums.items()})
    ci = {k: bootstrap_ci([row[k] for row in per_sample]) for k in MEAN_OF_SAMPLES.intersection(values)
          if all(k in row for row in per_sample)}  # fmt: skip

    ran = [r for r in records if not r.get("error")]
    latencies = [r["latency_s"] for r in ran if r.get("latency_s") is not None]
    tokens = sum(r.get("eval_tokens") or 0 for r in ran)
    gen_time = sum(r.get("eval_duration_s") or 0 for r in ran)
    errors = [r for r in records if r.get("error")]
    result = {
        "task": task.name, "n": len(records), "scores": values, "primary": task.primary,
        "primary_value": values.get(task.primary), "ci95": ci, "groups": groups,
        "n_errors": len(errors), "n_cached": sum(1 for r in records if r.get("cached")),
        "errors": sorted({r["error"] for r in errors})[:5],
        "latency_s": {
            "mean": sum(latencies) / len(latencies) if latencies else None,
            "p50": _percentile(latencies, 0.5) if latencies else None,
            "p95": _percentile(latencies, 0.95) if latencies else None,
            "total": sum(latencies),
        },
        "tokens_per_s": tokens / gen_time if gen_time > 0 else (tokens / sum(latencies) if sum(latencies) else None),
        "output_tokens_mean": tokens / len(ran) if ran else None,
        "answer_chars_mean": sum(len(a) for a in answers) / len(answers) if answers else None,
        "notes": list(dict.fromkeys(notes)),
    }  # fmt: skip
    rows = []
    for sample, record, answer, row in zip(task.samples, records, answers, per_sample):
        rows.append({
            "model": record.get("model"), "digest": record.get("digest"), "task": task.name, "sample": sample.id,
            "group": sample.group, "image": sample.image_name, "image_sha256": record.get("image_sha256"),
            "prompt": record.get("prompt"), "options": record.get("options"), "prediction": record.get("prediction", ""),
            "answer": answer, "references": sample.references, "objects": sample.objects or None,
            "label": sample.label, "scores": row, "latency_s": record.get("latency_s"),
            "eval_tokens": record.get("eval_tokens"), "cached": bool(record.get("cached")),
            "error": record.get("error"), "key": record.get("key"),
        })  # fmt: skip
    return result, rows
