"""What every metric returns (:class:`Score`) and is (:class:`Metric`): the one small interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: values where a smaller number is the better model (everything else: larger is better).
LOWER_IS_BETTER = frozenset({"chair_i", "chair_s"})


@dataclass
class Score:
    values: dict[str, float]
    per_sample: list[dict[str, float]] | None = None
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Metric(Protocol):
    name: str

    def score(self, predictions: Sequence[str], references: Sequence[Any]) -> Score: ...


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
