"""``POST /api/create`` with ``from`` a checkpoint folder on the server's disk, then a chat with it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from imgscribe import testing
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.store import Store

from .conftest import b64, image_bytes


def test_create_from_a_checkpoint_folder_then_chat(tmp_path):
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


def test_create_from_a_path_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(Scheduler(Store(tmp_path / "models")))) as client:
        created = client.post("/api/create", json={"model": "x", "from": str(tmp_path / "empty"), "stream": False})
        assert created.status_code == 400, created.text
        assert created.json()["error"]
        assert client.get("/api/tags").json()["models"][-1]["name"] != "x:latest"
