"""A sample, its task (prompt, options, metrics) and the kinds of task: what every loader returns."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InvalidRequest

SHORT_ANSWER = "{question}\nAnswer the question using a single word or phrase."


@dataclass
class Sample:
    id: str
    image: Path | bytes | Callable[[], bytes]
    question: str = ""
    references: list[str] = field(default_factory=list)  # accepted answers, or reference captions
    objects: list[str] = field(default_factory=list)  # objects in the image (CHAIR)
    label: str | None = None  # "yes" / "no" (POPE)
    group: str = ""  # answer type, question category, split: reports break scores down by it
    _bytes: bytes | None = field(default=None, repr=False)
    _sha: str | None = field(default=None, repr=False)

    def image_bytes(self) -> bytes:
        if self._bytes is None:
            if isinstance(self.image, bytes):
                self._bytes = self.image
            elif isinstance(self.image, Path):
                try:
                    self._bytes = self.image.read_bytes()
                except OSError as exc:
                    raise InvalidRequest(f"sample {self.id}: cannot read image {self.image}: {exc.strerror}") from None
            else:
                self._bytes = self.image()
        return self._bytes

    @property
    def image_sha256(self) -> str:
        """The content hash of the image bytes: part of every prediction's cache key."""
        if self._sha is None:
            self._sha = hashlib.sha256(self.image_bytes()).hexdigest()
        return self._sha

    @property
    def image_name(self) -> str:
        return str(self.image) if isinstance(self.image, Path) else f"<{self.id}>"

    def release(self) -> None:
        """Forget the bytes (the hash stays): keeps memory flat on large sets."""
        if not isinstance(self.image, bytes):
            self._bytes = None


@dataclass(frozen=True)
class Kind:
    prompt: str
    metrics: tuple[str, ...]
    primary: str
    options: dict[str, Any]
    postprocess: str  # "short-answer" (first line/sentence, trailing "!" stripped) or "strip"


KINDS: dict[str, Kind] = {
    "vqa": Kind(SHORT_ANSWER, ("vqa",), "vqa_accuracy", {"temperature": 0, "seed": 0, "num_predict": 32},
                "short-answer"),
    "docvqa": Kind(SHORT_ANSWER, ("anls", "exact"), "anls", {"temperature": 0, "seed": 0, "num_predict": 32},
                   "short-answer"),
    "answers": Kind("{question}", ("exact", "anls"), "exact_match",
                    {"temperature": 0, "seed": 0, "num_predict": 64}, "short-answer"),
    "caption": Kind("Provide a one-sentence caption for the provided image.", ("caption",), "cider_d",
                    {"temperature": 0, "seed": 0, "num_predict": 64}, "strip"),
    "describe": Kind("Please describe this image in detail.", ("chair",), "chair_i",
                     {"temperature": 0, "seed": 0, "num_predict": 512}, "strip"),
    "pope": Kind(SHORT_ANSWER, ("pope",), "f1", {"temperature": 0, "seed": 0, "num_predict": 16}, "strip"),
}  # fmt: skip


@dataclass
class Task:
    """One data set with everything that decides its scores: the prompt, options and metrics."""

    name: str
    kind: str
    samples: list[Sample]
    source: str  # provenance: where the data comes from
    licence: str = ""
    prompt: str = ""  # template; "{question}" is replaced by each sample's question
    metrics: list[str] = field(default_factory=list)
    primary: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    postprocess: str = ""
    total: int = 0  # samples in the whole set, before --limit

    def __post_init__(self) -> None:
        kind = KINDS[self.kind]
        self.prompt = self.prompt or kind.prompt
        self.metrics = self.metrics or list(kind.metrics)
        self.primary = self.primary or kind.primary
        self.options = {**kind.options, **self.options}
        self.postprocess = self.postprocess or kind.postprocess
        self.total = self.total or len(self.samples)

    def prompt_for(self, sample: Sample) -> str:
        return self.prompt.replace("{question}", sample.question)

    def reference(self, sample: Sample, metric: str) -> Any:
        if metric == "chair":
            return sample.objects
        if metric == "pope":
            return sample.label
        return sample.references

    def settings(self) -> dict[str, Any]:
        """What produced the scores, for every report."""
        return {
            "dataset": self.name, "kind": self.kind, "source": self.source, "licence": self.licence,
            "n": len(self.samples), "total": self.total, "prompt": self.prompt, "options": self.options,
            "postprocess": self.postprocess, "metrics": self.metrics, "primary": self.primary,
        }  # fmt: skip
