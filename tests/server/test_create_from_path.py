"""``POST /api/create`` with ``from`` a checkpoint folder on the server's disk, then a chat with it."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from imgscribe import testing
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.store import Store

from .conftest import b64, image_bytes


def test_create_from_a_checkpoint_folder_then_chat(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_IMPORT_ROOTS", str(tmp_path))
    folder = testing.build("gemma3", tmp_path / "gemma3")
    store = Store(tmp_path / "models")
    with TestClient(create_app(Scheduler(store))) as client:
        created = client.post("/api/create", json={"model": "tiny-gemma", "from": str(folder), "stream": False})
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "success"
        shown = client.post("/api/show", json={"model": "tiny-gemma"}).json()
        assert "vision" in shown["capabilities"] and shown["details"]["family"] == "gemma3"
        answer = client.post("/api/chat", json={
            "model": "tiny-gemma", "stream": False, "options": {"num_predict": 4},
            "messages": [{"role": "user", "content": "Describe this image.", "images": [b64(image_bytes())]}],
        })  # fmt: skip
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["done"] and body["eval_count"] >= 1 and body["prompt_eval_count"] > 0


def test_create_from_a_path_that_is_not_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_IMPORT_ROOTS", str(tmp_path))
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(Scheduler(Store(tmp_path / "models")))) as client:
        created = client.post("/api/create", json={"model": "x", "from": str(tmp_path / "empty"), "stream": False})
        assert created.status_code == 400, created.text
        assert created.json()["error"]
        assert client.get("/api/tags").json()["models"][-1]["name"] != "x:latest"


# -- server paths from the wire (docs/security.md) ------------------------------------------------


def _create(client: TestClient, **body) -> dict:
    r = client.post("/api/create", json={"model": "planted", "stream": False, **body})
    return {"status": r.status_code, "error": r.json().get("error", ""), "text": r.text}


def test_by_default_no_server_path_is_registered(tmp_path):
    """The finding: any file the server could read was registered and loaded, and errors told which
    paths exist. Now: the same 403 for a real folder, a real file and a path that does not exist."""
    folder = testing.build("gemma3", tmp_path / "gemma3")
    with TestClient(create_app(Scheduler(Store(tmp_path / "models")))) as client:
        answers = [_create(client, **{"from": str(p)}) for p in (folder, "/etc/passwd", "/no/such/place")]
        answers.append(_create(client, **{"from": "llava", "mmproj": "/etc/passwd"}))
        assert [a["status"] for a in answers] == [403] * 4
        assert all("IMGSCRIBE_IMPORT_ROOTS" in a["error"] for a in answers)
        assert len({a["error"].replace("mmproj", "from") for a in answers}) == 1  # nothing tells them apart
        assert "planted:latest" not in [m["name"] for m in client.get("/api/tags").json()["models"]]


@pytest.mark.parametrize("escape", ["{root}/../outside", "{root}/link-out", "{root}/link-out/model.gguf"])
def test_paths_outside_the_roots_are_refused_with_links_and_dots_resolved(tmp_path, monkeypatch, escape):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "model.gguf").write_bytes(b"GGUF")
    os.symlink(outside, root / "link-out")
    monkeypatch.setenv("IMGSCRIBE_IMPORT_ROOTS", str(root))
    with TestClient(create_app(Scheduler(Store(tmp_path / "models")))) as client:
        answer = _create(client, **{"from": escape.format(root=root)})
        assert answer["status"] == 403 and "IMGSCRIBE_IMPORT_ROOTS" in answer["error"]
        answer = _create(client, **{"from": str(outside / "model.gguf")})
        assert answer["status"] == 403


def test_under_a_root_a_missing_path_is_a_plain_400(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_IMPORT_ROOTS", str(tmp_path))
    with TestClient(create_app(Scheduler(Store(tmp_path / "models")))) as client:
        answer = _create(client, **{"from": str(tmp_path / "missing.gguf")})
        assert answer["status"] == 400 and "no such file" in answer["error"]
