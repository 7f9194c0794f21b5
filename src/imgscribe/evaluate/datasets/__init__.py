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

from collections.abc import Callable
from pathlib import Path

from ...errors import InvalidRequest
from .task import KINDS, SHORT_ANSWER, Kind, Sample, Task

__all__ = ["BUILTIN", "KINDS", "SHORT_ANSWER", "Kind", "Sample", "Task", "load_task"]


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
