"""Loaders for the standard data set files, read from local disk (the user downloads them once).

Images are looked up under ``--images`` (when given), then next to the annotation file and in the
usual sub-folders; failing that, by file name (or, for COCO-style ids, by the number in the file
name) anywhere below those folders. A missing image is an error that names it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import InvalidRequest
from .task import SHORT_ANSWER, Sample, Task

__all__ = ["LOADERS", "detect"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif"}
_NUMBER = re.compile(r"(\d+)\.[A-Za-z]+$")


class _Images:
    def __init__(self, *roots: Path | None):
        self.roots = [r for r in roots if r is not None and r.is_dir()]
        self._by_name: dict[str, Path] | None = None
        self._by_number: dict[int, Path] | None = None

    def _scan(self) -> None:
        self._by_name, self._by_number = {}, {}
        for root in self.roots:
            for folder, _, files in os.walk(root):
                for f in files:
                    if Path(f).suffix.lower() in _IMAGE_SUFFIXES:
                        path = Path(folder) / f
                        self._by_name.setdefault(f, path)
                        m = _NUMBER.search(f)
                        if m:
                            self._by_number.setdefault(int(m.group(1)), path)

    def find(self, name: str = "", number: int | None = None, what: str = "") -> Path:
        if name:
            p = Path(name).expanduser()
            if p.is_absolute() and p.is_file():
                return p
            for root in self.roots:
                if (root / name).is_file():
                    return root / name
        if self._by_name is None:
            self._scan()
        assert self._by_name is not None and self._by_number is not None
        found = self._by_name.get(Path(name).name) if name else None
        if found is None and number is not None:
            found = self._by_number.get(number)
        if found is None:
            where = ", ".join(str(r) for r in self.roots) or "(no folder exists)"
            raise InvalidRequest(f"image {name or number} for {what} not found under {where}: pass --images DIR")
        return found


@lru_cache(maxsize=4)
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}") from None


def _read_records(path: Path) -> list[dict[str, Any]]:
    """JSON lines, or a JSON array of objects."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise InvalidRequest(f"{path}:{number}: not JSON ({exc})") from None
    if not all(isinstance(r, dict) for r in records):
        raise InvalidRequest(f"{path}: every record must be a JSON object")
    return records


def _cut(items: list, limit: int | None) -> list:
    return items if limit is None or limit < 0 else items[:limit]


# --------------------------------------------------------------------------- VQAv2


def _vqa_files(path: Path) -> tuple[Path, Path]:
    folder = path if path.is_dir() else path.parent
    q = next(iter(sorted(folder.glob("*[Qq]uestions*.json"))), None)
    a = next(iter(sorted(folder.glob("*annotations*.json"))), None)
    if path.is_file():
        if "questions" in _read_json(path):
            q = path
        else:
            a = path
    if q is None or a is None:
        raise InvalidRequest(
            f"VQAv2 at {path}: need both a questions file (v2_OpenEnded_mscoco_*_questions.json) and an "
            "annotations file (v2_mscoco_*_annotations.json) in the same folder"
        )
    return q, a


def load_vqav2(path: Path, images: Path | None, limit: int | None = None) -> Task:
    qfile, afile = _vqa_files(path)
    questions = _read_json(qfile)["questions"]
    annotations = {a["question_id"]: a for a in _read_json(afile)["annotations"]}
    subtype = _read_json(qfile).get("data_subtype", "val2014")
    folder = qfile.parent
    finder = _Images(images, folder, folder / subtype, folder.parent / subtype, folder / "images")
    samples = []
    for q in _cut(questions, limit):
        ann = annotations.get(q["question_id"])
        if ann is None:
            raise InvalidRequest(f"VQAv2: question {q['question_id']} has no annotation in {afile.name}")
        image = finder.find(f"COCO_{subtype}_{q['image_id']:012d}.jpg", q["image_id"], f"question {q['question_id']}")
        answers = [a["answer"] for a in ann["answers"]]
        samples.append(Sample(str(q["question_id"]), image, q["question"], answers, group=ann.get("answer_type", "")))
    return Task(f"vqav2:{qfile.name}", "vqa", samples, total=len(questions),
                source=f"VQAv2 {subtype}: {qfile} + {afile.name} (local files)",
                licence="VQA annotations CC BY 4.0; COCO images under their Flickr licences")  # fmt: skip


# --------------------------------------------------------------------------- TextVQA / DocVQA


def load_textvqa(path: Path, images: Path | None, limit: int | None = None) -> Task:
    data = _read_json(path)["data"]
    folder = path.parent
    finder = _Images(images, folder, folder / "train_images", folder / "train_val_images" / "train_images")
    samples = []
    for item in _cut(data, limit):
        image = finder.find(f"{item['image_id']}.jpg", None, f"question {item.get('question_id')}")
        qid = str(item.get("question_id", len(samples)))
        samples.append(Sample(qid, image, item["question"], list(item["answers"])))
    return Task(f"textvqa:{path.name}", "vqa", samples, total=len(data),
                source=f"TextVQA {path} (local file); prompt without OCR tokens (LLaVA's published TextVQA "
                "numbers put 'Reference OCR token: ...' in the prompt)",
                licence="TextVQA annotations CC BY 4.0; Open Images under CC BY 2.0")  # fmt: skip


def load_docvqa(path: Path, images: Path | None, limit: int | None = None) -> Task:
    data = _read_json(path)["data"]
    finder = _Images(images, path.parent, path.parent / "documents")
    samples = []
    for item in _cut(data, limit):
        qid = item.get("questionId", len(samples))
        image = finder.find(item["image"], None, f"question {qid}")
        if not item.get("answers"):
            raise InvalidRequest(f"DocVQA question {qid} has no answers (test split? score it on the RRC server)")
        types = item.get("question_types") or [""]
        samples.append(Sample(str(qid), image, item["question"], list(item["answers"]), group=types[0]))
    return Task(f"docvqa:{path.name}", "docvqa", samples, total=len(data),
                source=f"DocVQA {path} (local file)", licence="DocVQA: see rrc.cvc.uab.es terms")  # fmt: skip


# --------------------------------------------------------------------------- COCO captions


def load_coco(path: Path, images: Path | None, limit: int | None = None) -> Task:
    if path.is_dir():
        found = sorted(path.glob("captions_*.json"))
        if not found:
            raise InvalidRequest(f"COCO captions at {path}: no captions_*.json file")
        path = found[0]
    data = _read_json(path)
    captions: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann["caption"])
    pictures = [im for im in data["images"] if im["id"] in captions]
    split = re.sub(r"^captions_|\.json$", "", path.name)
    folder = path.parent
    finder = _Images(images, folder, folder / split, folder.parent / split, folder.parent / "images" / split)
    samples = []
    for im in _cut(pictures, limit):
        image = finder.find(im["file_name"], im["id"], f"image id {im['id']}")
        samples.append(Sample(str(im["id"]), image, "", captions[im["id"]]))
    return Task(f"coco:{path.name}", "caption", samples, total=len(pictures),
                source=f"COCO captions {path} (local file)",
                licence="COCO annotations CC BY 4.0; images under their Flickr licences")  # fmt: skip


# --------------------------------------------------------------------------- POPE


def load_pope(path: Path, images: Path | None, limit: int | None = None) -> Task:
    records = _read_records(path)
    finder = _Images(images, path.parent, path.parent / "val2014")
    split = path.stem.replace("coco_pope_", "")
    samples = []
    for number, r in enumerate(_cut(records, limit)):
        label = str(r.get("label", "")).strip().lower()
        if label not in ("yes", "no"):
            raise InvalidRequest(f"POPE {path.name} record {number + 1}: label must be 'yes' or 'no'")
        image = finder.find(r["image"], None, f"question {r.get('question_id', number + 1)}")
        question = r.get("text") or r.get("question") or ""
        samples.append(Sample(str(r.get("question_id", number + 1)), image, question, [label], label=label,
                              group=r.get("category", split)))  # fmt: skip
    return Task(f"pope:{path.name}", "pope", samples, total=len(records),
                source=f"POPE {path} (local file)", licence="POPE: MIT; COCO images under their Flickr licences")


# --------------------------------------------------------------------------- your own JSONL


def load_jsonl(path: Path, images: Path | None, limit: int | None = None) -> Task:
    """One object a line: ``image`` (path, relative to the file), ``question`` (asked for a short
    answer) or ``prompt`` (sent as written), and ``answers`` (accepted answers: exact match, ANLS)
    or ``references`` (reference captions: BLEU, METEOR, ROUGE-L, CIDEr-D); optional ``objects``
    (CHAIR), ``label`` yes/no (POPE), ``id``, ``group``."""
    records = _read_records(path)
    if not records:
        raise InvalidRequest(f"{path}: no records")
    finder = _Images(images, path.parent)
    has = {key: any(key in r for r in records) for key in ("references", "answers", "answer", "label", "objects")}
    if has["label"]:
        kind = "pope"
    elif has["references"]:
        kind = "caption"
    elif has["answers"] or has["answer"]:
        kind = "answers"
    elif has["objects"]:
        kind = "describe"
    else:
        raise InvalidRequest(f"{path}: records need 'answers', 'references', 'label' or 'objects' to be scored")
    samples = []
    for number, r in enumerate(_cut(records, limit), 1):
        if "image" not in r:
            raise InvalidRequest(f"{path} record {number}: no 'image'")
        image = finder.find(str(r["image"]), None, f"record {number}")
        if "prompt" in r:
            text = str(r["prompt"])
        elif "question" in r:
            text = str(r["question"])
            if kind in ("answers", "pope"):
                text = SHORT_ANSWER.replace("{question}", text)
        else:
            text = ""
        refs = r.get("references") or r.get("answers") or ([r["answer"]] if "answer" in r else [])
        if isinstance(refs, str):
            refs = [refs]
        label = str(r["label"]).strip().lower() if "label" in r else None
        objects = list(r.get("objects") or [])
        samples.append(Sample(str(r.get("id", number)), image, text, [str(x) for x in refs], objects=objects,
                              label=label, group=str(r.get("group", ""))))  # fmt: skip
    prompt = "{question}" if all(s.question for s in samples) else ""
    metrics: list[str] = []
    if kind == "caption" and has["objects"]:
        metrics = ["caption", "chair"]
    return Task(f"jsonl:{path.name}", kind, samples, prompt=prompt, metrics=metrics, total=len(records),
                source=f"user data set {path}", licence="")  # fmt: skip


LOADERS: dict[str, Callable[..., Task]] = {
    "vqav2": load_vqav2,
    "textvqa": load_textvqa,
    "docvqa": load_docvqa,
    "coco": load_coco,
    "pope": load_pope,
    "jsonl": load_jsonl,
}


def _first_record(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        for line in _lines(f):
            return json.loads(line)
    return {}


def _lines(f) -> Iterator[str]:
    for line in f:
        if line.strip():
            yield line


def detect(path: Path) -> str:
    """Which loader reads ``path``, from its content."""
    if path.is_dir():
        if any(path.glob("*[Qq]uestions*.json")) and any(path.glob("*annotations*.json")):
            return "vqav2"
        if any(path.glob("captions_*.json")):
            return "coco"
        raise InvalidRequest(
            f"{path}: a folder must hold VQAv2 questions + annotations files or a COCO captions_*.json; "
            "for other data sets give the file (or FORMAT:PATH)"
        )
    head = path.read_text(encoding="utf-8", errors="replace")[:1].strip() if path.stat().st_size else ""
    if path.suffix == ".jsonl" or (head == "{" and path.suffix != ".json"):
        first = _first_record(path)
        return "pope" if "label" in first and "text" in first else "jsonl"
    try:
        data = _read_json(path)
    except InvalidRequest:
        first = _first_record(path)  # JSON lines named .json (the POPE repository's files)
        return "pope" if "label" in first and "text" in first else "jsonl"
    if isinstance(data, list):
        first = data[0] if data else {}
        return "pope" if isinstance(first, dict) and "label" in first and "text" in first else "jsonl"
    if "questions" in data or ("annotations" in data and "images" not in data):
        return "vqav2"
    if "annotations" in data and "images" in data:
        return "coco"
    if "data" in data:
        first = data["data"][0] if data["data"] else {}
        name = str(data.get("dataset_name", "")).lower()
        return "docvqa" if "docvqa" in name or "questionId" in first else "textvqa"
    if "label" in data and "text" in data:  # a one-line POPE file named .json
        return "pope"
    raise InvalidRequest(f"{path}: not a data set format imgscribe knows (use FORMAT:PATH to say which)")
