"""Built-in sets (deterministic, offline, with provenance) and the loaders of the standard formats."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from imgscribe.errors import InvalidRequest
from imgscribe.evaluate.datasets import BUILTIN, load_task
from imgscribe.evaluate.datasets.builtin import render_document
from imgscribe.evaluate.datasets.formats import detect


def test_builtin_sets_load_offline_with_provenance():
    expected = {"docs": ("docvqa", 40), "easyvqa": ("vqa", 200), "photos": ("caption", 10),
                "photos-detail": ("describe", 10), "photos-pope": ("pope", 42)}  # fmt: skip
    assert set(expected) == set(BUILTIN)
    for name, (kind, n) in expected.items():
        task = load_task(name)
        assert (task.kind, len(task.samples), task.total) == (kind, n, n)
        assert task.source and task.licence and task.prompt and task.metrics
        assert len({s.id for s in task.samples}) == n
        first = task.samples[0]
        assert len(first.image_sha256) == 64 and first.image_bytes()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1")


def test_builtin_sets_are_deterministic():
    a, b = load_task("easyvqa", limit=20), load_task("easyvqa", limit=20)
    assert [(s.id, s.question, s.references) for s in a.samples] == [(s.id, s.question, s.references) for s in b.samples]
    assert render_document(4) == render_document(4)
    docs = load_task("docs", limit=6)
    assert [s.image_sha256 for s in docs.samples] == [s.image_sha256 for s in load_task("docs", limit=6).samples]
    assert {s.group for s in load_task("docs").samples} == {"invoice", "receipt", "form"}
    assert {s.group for s in a.samples} <= {"yes/no", "shape", "color"}


def test_pope_probes_are_balanced():
    task = load_task("photos-pope")
    labels = [s.label for s in task.samples]
    assert labels.count("yes") == labels.count("no") == 21
    assert all(s.question.startswith("Is there a") for s in task.samples)


def test_limit_and_unknown_names():
    assert len(load_task("docs", limit=3).samples) == 3
    assert load_task("docs", limit=3).total == 40
    with pytest.raises(InvalidRequest, match="no such built-in set or path"):
        load_task("nope")


def _image(path, color="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def test_vqav2_folder(tmp_path):
    _image(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    _image(tmp_path / "val2014" / "COCO_val2014_000000000007.jpg", "blue")
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"data_subtype": "val2014",
        "questions": [{"image_id": 42, "question": "What color?", "question_id": 420},
                      {"image_id": 7, "question": "Is it blue?", "question_id": 70}]}))  # fmt: skip
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 420, "image_id": 42, "answer_type": "other", "answers": [{"answer": "red", "answer_id": i} for i in range(10)]},
        {"question_id": 70, "image_id": 7, "answer_type": "yes/no", "answers": [{"answer": "yes", "answer_id": i} for i in range(10)]}]}))  # fmt: skip
    assert detect(tmp_path) == "vqav2"
    task = load_task(str(tmp_path))
    assert task.kind == "vqa" and [s.id for s in task.samples] == ["420", "70"]
    assert task.samples[0].references == ["red"] * 10 and task.samples[1].group == "yes/no"
    assert task.samples[1].image.name == "COCO_val2014_000000000007.jpg"
    assert len(load_task(f"vqav2:{tmp_path}", limit=1).samples) == 1


def test_textvqa_docvqa_coco_pope_jsonl(tmp_path):
    _image(tmp_path / "train_images" / "abc.jpg")
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_name": "TextVQA", "data": [
        {"question_id": 1, "image_id": "abc", "question": "What brand?", "answers": ["nike"] * 10}]}))  # fmt: skip
    task = load_task(str(tmp_path / "TextVQA_0.5.1_val.json"))
    assert task.kind == "vqa" and task.samples[0].image.name == "abc.jpg" and "OCR" in task.source

    _image(tmp_path / "documents" / "d1.png")
    (tmp_path / "val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 5, "question": "Total?", "image": "documents/d1.png", "answers": ["$5"], "question_types": ["form"]}]}))  # fmt: skip
    task = load_task(str(tmp_path / "val_v1.0.json"))
    assert task.kind == "docvqa" and task.metrics == ["anls", "exact"] and task.samples[0].group == "form"

    _image(tmp_path / "val2014" / "COCO_val2014_000000000009.jpg")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2014.json").write_text(json.dumps({
        "images": [{"id": 9, "file_name": "COCO_val2014_000000000009.jpg"}],
        "annotations": [{"image_id": 9, "id": 1, "caption": "A red square."}, {"image_id": 9, "id": 2, "caption": "Red."}]}))  # fmt: skip
    task = load_task(str(tmp_path / "annotations" / "captions_val2014.json"))
    assert task.kind == "caption" and task.samples[0].references == ["A red square.", "Red."]

    pope = tmp_path / "coco_pope_random.json"  # JSON lines under a .json name, as in the POPE repository
    pope.write_text("\n".join(json.dumps({"question_id": i, "image": "COCO_val2014_000000000009.jpg",
                                          "text": "Is there a cat in the image?", "label": label})
                              for i, label in enumerate(["yes", "no"])))  # fmt: skip
    assert detect(pope) == "pope"
    task = load_task(str(pope), images=tmp_path / "val2014")
    assert task.kind == "pope" and [s.label for s in task.samples] == ["yes", "no"] and task.samples[0].group == "random"

    _image(tmp_path / "mine" / "a.png")
    own = tmp_path / "mine" / "set.jsonl"
    own.write_text(json.dumps({"image": "a.png", "question": "What colour?", "answers": ["red"]}) + "\n")
    task = load_task(str(own))
    assert task.kind == "answers" and task.metrics == ["exact", "anls"]
    assert task.prompt_for(task.samples[0]).startswith("What colour?\nAnswer the question using a single word")
    own.write_text(json.dumps({"image": "a.png", "references": ["a red square"], "objects": ["square"]}) + "\n")
    task = load_task(f"jsonl:{own}")
    assert task.kind == "caption" and task.metrics == ["caption", "chair"] and task.prompt.startswith("Provide")
    own.write_text(json.dumps({"image": "missing.png", "answers": ["x"]}) + "\n")
    with pytest.raises(InvalidRequest, match="missing.png"):
        load_task(str(own))
