"""Data sets for evaluation: samples, the task around them (prompt, options, metrics), and loaders.

``load_task(spec)`` takes a built-in name or a local path:

========================  ==================================================================
``docs``                  synthetic documents rendered at load time, with questions (ANLS)
``easyvqa``               a fixed, seeded subset of the easy-vqa test split (VQA accuracy)
``photos``                public-domain photos with reference captions (BLEU, METEOR, ROUGE-L,
                          CIDEr-D, CHAIR)
``photos-detail``         the same photos, asked for a detailed description (CHAIR)
``photos-pope``           yes/no object probes on the same photos (POPE)
``vqav2:PATH``            VQAv2: a folder (or questions file) with ``*questions*.json`` and
                          ``*annotations*.json``; images found by id under it or ``--images``
``textvqa:PATH``          TextVQA JSON (``data`` with ``image_id``, ``question``, ``answers``)
``docvqa:PATH``           DocVQA JSON (``data`` with ``image``, ``question``, ``answers``)
``coco:PATH``             COCO captions JSON (``images`` + ``annotations`` with ``caption``)
``pope:PATH``             POPE question file (JSON lines with ``image``, ``text``, ``label``)
``jsonl:PATH``            your own: one object a line with ``image`` and ``question`` or
                          ``prompt``, and ``answers`` or ``references`` (+ optional ``objects``)
========================  ==================================================================

A path without a prefix is recognised from its content. Nothing is downloaded, ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InvalidRequest

__all__ = ["BUILTIN", "KINDS", "Sample", "Task", "load_task"]

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


def _builtin(name: str) -> Callable[[], Task]:
    def load() -> Task:
        from . import builtin

        return getattr(builtin, name.replace("-", "_"))()

    return load


BUILTIN: dict[str, str] = {
    "docs": "synthetic invoices, receipts and forms rendered at load time; ANLS + exact match",
    "easyvqa": "200 seeded questions from the easy-vqa test split (PyPI easy-vqa, MIT); VQA accuracy",
    "photos": "10 public-domain/CC0 photos from scikit-image with project-written captions; "
    "BLEU/METEOR/ROUGE-L/CIDEr-D + CHAIR",
    "photos-detail": "the same photos, 'describe in detail'; CHAIR hallucination + object recall",
    "photos-pope": "42 yes/no object probes on the same photos, half present, half absent; POPE",
}


def _load(fmt: str, path: Path, images: Path | None, limit: int | None) -> Task:
    """The task in ``path`` (``fmt`` "": recognised from the content); a file of the wrong shape is
    one clear error, not a KeyError."""
    from . import formats

    try:
        fmt = fmt or formats.detect(path)
        return formats.LOADERS[fmt](path, images, limit)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidRequest(
            f"{path} is not a {fmt or 'known'} data set ({what}); check the file, or name its format as FORMAT:PATH"
        ) from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None


def load_task(spec: str, *, limit: int | None = None, images: Path | None = None) -> Task:
    """A task from a built-in name, ``FORMAT:PATH`` or a path (format recognised from content)."""
    from . import formats

    spec = spec.strip()
    if spec in BUILTIN:
        task = _builtin(spec)()
    else:
        fmt, sep, rest = spec.partition(":")
        if sep and fmt in formats.LOADERS and not Path(spec).exists():
            path = Path(rest).expanduser()
        else:
            path = Path(spec).expanduser()
            if not path.exists():
                known = ", ".join([*BUILTIN, *(f"{f}:PATH" for f in formats.LOADERS)])
                raise InvalidRequest(f"data set {spec!r}: no such built-in set or path (known: {known})")
            fmt = ""
        task = _load(fmt, path, images, limit)
    if limit is not None and limit >= 0:
        task.samples = task.samples[:limit]
    return task
