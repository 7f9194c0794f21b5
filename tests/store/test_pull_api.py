"""``POST /api/pull`` on a live imgscribe server, then the pulled model through the API."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from .fake_remotes import closed_port
from .test_pull_ollama import add_llava


@contextmanager
def live(store: Store) -> Iterator[str]:
    import uvicorn

    from imgscribe.server import create_app

    scheduler = Scheduler(store)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(scheduler), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        scheduler.close()


@pytest.fixture
def api(store) -> Iterator[str]:
    with live(store) as url:
        yield url


def ndjson(url: str, path: str, body: dict, timeout: float = 60) -> tuple[int, list[dict]]:
    with httpx.Client(timeout=timeout, trust_env=False) as client, client.stream("POST", url + path, json=body) as r:
        return r.status_code, [json.loads(line) for line in r.iter_lines() if line.strip()]


def test_pull_streams_progress_then_the_model_is_listed_and_shown(api, registry):
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    status, lines = ndjson(api, "/api/pull", {"model": name, "insecure": True})
    assert status == 200
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert lines[1] == {"status": "checked the GGUF headers: llama-server runs this model as published"}
    assert any("digest" in line and line["completed"] == line["total"] for line in lines)

    tags = httpx.get(api + "/api/tags", trust_env=False).json()["models"]
    assert name in [t["name"] for t in tags]
    shown = httpx.post(api + "/api/show", json={"model": name}, trust_env=False).json()
    assert "vision" in shown["capabilities"] and "model_info" in shown
    assert shown["license"] == "Apache License 2.0"

    copied = httpx.post(api + "/api/copy", json={"source": name, "destination": "mine"}, trust_env=False)
    assert copied.status_code == 200
    deleted = httpx.request("DELETE", api + "/api/delete", json={"model": name}, trust_env=False)
    assert deleted.status_code == 200
    assert [t["name"] for t in httpx.get(api + "/api/tags", trust_env=False).json()["models"] if t["name"] != "builtin:latest"] == ["mine:latest"]


def test_pull_not_streamed_answers_once(api, registry):
    add_llava(registry)
    answer = httpx.post(api + "/api/pull", json={"model": f"{registry.host}/library/llava:7b", "insecure": True,
                                                  "stream": False}, timeout=60, trust_env=False)  # fmt: skip
    assert answer.status_code == 200 and answer.json() == {"status": "success"}


@pytest.mark.parametrize("stream", [True, False])
def test_a_missing_tag_is_a_404_with_a_clear_message(api, registry, stream):
    add_llava(registry)
    answer = httpx.post(api + "/api/pull", json={"model": f"{registry.host}/library/llava:99b", "insecure": True,
                                                  "stream": stream}, timeout=60, trust_env=False)  # fmt: skip
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert "not found" in error and "no model library/llava with tag '99b'" in error


def test_a_refusal_before_download_is_a_400_with_the_alternative(api, registry):
    from .fake_remotes import ollama_vision_gguf

    manifest = registry.add_model("qwen3-vl", "8b", [("model", ollama_vision_gguf("qwen3vl"))])  # no translation
    status, lines = ndjson(api, "/api/pull", {"model": f"{registry.host}/library/qwen3-vl:8b", "insecure": True})
    assert status == 400 and len(lines) == 1 and "vision encoder inside" in lines[0]["error"]
    assert "a GGUF with a separate mmproj projector" in lines[0]["error"]
    assert registry.served[manifest["layers"][0]["digest"]] == 0  # only its header was read


def test_a_translated_pull_streams_the_verdict_and_the_translation(api, registry):
    from .fake_remotes import ollama_vision_gguf

    registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf())])
    status, lines = ndjson(api, "/api/pull", {"model": f"{registry.host}/library/gemma3:4b", "insecure": True})
    statuses = [line["status"] for line in lines]
    assert status == 200 and statuses[-1] == "success", lines
    verdict = next(s for s in statuses if s.startswith("checked the GGUF headers"))
    assert "imgscribe translates it for llama-server" in verdict and "split into a model and an mmproj" in verdict
    assert statuses.index(verdict) < statuses.index("verifying sha256 digest")  # decided before the download
    progress = [line for line in lines if line["status"].startswith("translating ")]
    assert progress and progress[-1]["completed"] == progress[-1]["total"] > 0
    assert any(re.match(r"translated files: [\d.]+ (MB|KB) on disk; the published blob \(", s) for s in statuses)


def test_offline_is_an_error_that_says_what_to_do(api):
    answer = httpx.post(api + "/api/pull", json={"model": f"127.0.0.1:{closed_port()}/library/llava", "insecure": True},
                        timeout=60, trust_env=False)  # fmt: skip
    assert answer.status_code == 502
    assert "cannot reach" in answer.json()["error"] and "builtin" in answer.json()["error"]


def test_the_ollama_python_client_pulls(api, registry):
    ollama = pytest.importorskip("ollama")
    add_llava(registry)
    client = ollama.Client(host=api)
    parts = list(client.pull(f"{registry.host}/library/llava:7b", insecure=True, stream=True))
    assert parts[0].status == "pulling manifest" and parts[-1].status == "success"
    assert any(p.digest and p.completed == p.total for p in parts)
    assert f"{registry.host}/library/llava:7b" in [m.model for m in client.list().models]


# -- the pulled model, run -------------------------------------------------------------------------


def _llamacpp_support():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
    try:
        import _llamacpp_support
    finally:
        sys.path.pop(0)
    return _llamacpp_support


@pytest.mark.slow
def test_a_pulled_gguf_model_answers_through_the_api(store, registry, hub):
    """A real tiny GGUF pair (llama.cpp's converter, llava15) published on the fake registry and the
    fake Hub, pulled from both, then asked about a photo through ``/api/chat``: llama-server runs it."""
    support = _llamacpp_support()
    support.llama_server_binary()  # skips here, fails in CI, when llama-server is not built
    from imgscribe.engines.llamacpp.convert import convert_many

    (converted,) = convert_many([(support.checkpoint("llava15"), store.root.parent / "gguf")], outtype="f32",
                                llama_dir=support.llama_cpp_source())  # fmt: skip
    if isinstance(converted, BaseException):
        raise converted
    model, projector = converted.model, converted.mmproj
    registry.add_model("tiny-llava", "latest", [("model", model.read_bytes()), ("projector", projector.read_bytes())])
    hub.add_repo("Org/Tiny-Llava-GGUF", {"tiny-llava-F32.gguf": model.read_bytes(), "mmproj-tiny-llava-f32.gguf": projector.read_bytes()})
    with live(store) as url:
        for name, insecure in ((f"{registry.host}/library/tiny-llava", True), ("hf.co/Org/Tiny-Llava-GGUF", False)):
            status, lines = ndjson(url, "/api/pull", {"model": name, "insecure": insecure}, timeout=120)
            assert status == 200 and lines[-1] == {"status": "success"}, lines
            pulled = store.resolve(name)
            assert pulled.engine == "llamacpp" and Path(pulled.files["projector"]).parent == store.root / "blobs"
            assert "vision" in pulled.info.capabilities
            answer, _ = support.ollama_chat(url, name, image=support.photo_b64(), options={"num_predict": 8, "seed": 1})
            assert answer[-1]["done"] is True, answer
            assert answer[-1]["eval_count"] > 0 and answer[-1]["prompt_eval_count"] > 0
    assert len(store.blobs.all()) == 3  # model and projector shared by both names, and the registry's config


@pytest.mark.slow
def test_a_pulled_checkpoint_answers_through_the_api(store, hub):
    """A tiny llava15 transformers checkpoint on the Hub stand-in, pulled, then asked about a photo."""
    from imgscribe import testing

    folder = testing.build("llava15", store.root.parent / "ckpt")
    hub.add_repo("Org/Tiny-Llava", {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
    with live(store) as url:
        status, lines = ndjson(url, "/api/pull", {"model": "hf.co/Org/Tiny-Llava"}, timeout=120)
        assert status == 200 and lines[-1] == {"status": "success"}, lines
        assert store.resolve("hf.co/org/tiny-llava").engine == "transformers"
        support = _llamacpp_support()
        answer, _ = support.ollama_chat(url, "hf.co/org/tiny-llava", image=support.photo_b64(),
                                        options={"num_predict": 4, "seed": 1}, timeout=300)  # fmt: skip
    assert answer[-1]["done"] is True, answer
    assert answer[-1]["eval_count"] > 0
