"""The remote engine against real servers: a llama-server process (OpenAI dialect) and a second
imgscribe server (Ollama dialect, and OpenAI dialect), through imgscribe's own Ollama HTTP API."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import gguf_pair, live_server, llama_server_binary, ollama_chat, photo_b64  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.llamacpp.process import ServerProcess  # noqa: E402
from imgscribe.engines.llamacpp.runner import server_args  # noqa: E402
from imgscribe.errors import EngineFailed, InvalidRequest, ModelNotFound  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.store.import_remote import manifest_for_remote  # noqa: E402
from imgscribe.types import ChatRequest, Message, ModelInfo, ModelManifest  # noqa: E402


def _echo(store: Store, name: str, **settings) -> None:
    info = ModelInfo(name=name, engine="echo", family="echo", capabilities=["completion", "vision"],
                     parameter_size="0B", context_length=4096)  # fmt: skip
    store.create(name, ModelManifest(name=name, engine="echo", info=info, engine_settings=settings))


def _final(lines: list[dict]) -> dict:
    errors = [line["error"] for line in lines if "error" in line]
    assert not errors, errors
    assert lines and lines[-1]["done"] is True
    return lines[-1]


@pytest.fixture
def upstream(tmp_path):
    """A first imgscribe server with echo models: the remote end."""
    store = Store(tmp_path / "upstream")
    _echo(store, "echo-a")
    _echo(store, "echo-slow", delay=0.02, tokens=500)
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as live:
        yield live
    scheduler.close()


def test_remote_imgscribe_server_ollama_dialect(upstream, tmp_path):
    manifest = manifest_for_remote("far", upstream.url, "echo-a")  # dialect detected: /api/version
    assert manifest.engine_settings["api"] == "ollama" and not manifest.parameters
    assert manifest.info.capabilities == ["completion", "vision"]  # from the upstream's /api/show
    store = Store(tmp_path / "models")
    store.create("far", manifest)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            photo = testing.photo("chelsea")  # an opaque RGB PNG: its bytes travel unchanged
            lines, _ = ollama_chat(live.url, "far", "what is this", photo_b64("chelsea"))
            final = _final(lines)
            text = "".join(line["message"]["content"] for line in lines)
            assert text.startswith("echo: what is this | 1 image(s): 451x300 sha256:")
            assert hashlib.sha256(photo).hexdigest()[:12] in text
            assert len(lines) > 3  # streamed through both servers
            assert final["eval_count"] > 0 and final["prompt_eval_count"] > 0  # the upstream's metrics

            # the client goes away mid-answer: the upstream stops too
            upstream_runner = upstream.scheduler.runner("echo-slow")
            store.create("far-slow", manifest_for_remote("far-slow", upstream.url, "echo-slow"))
            body = {"model": "far-slow", "messages": [{"role": "user", "content": "go"}], "stream": True}
            with httpx.Client(timeout=30, trust_env=False) as client:
                with client.stream("POST", live.url + "/api/chat", json=body) as r:
                    for n, _line in enumerate(r.iter_lines()):
                        if n == 5:
                            break
            deadline = time.monotonic() + 10
            while upstream_runner.cancelled == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert upstream_runner.cancelled == 1
            assert upstream_runner.generated < 500
    finally:
        scheduler.close()


def test_remote_imgscribe_server_openai_dialect(upstream, tmp_path):
    with pytest.raises(InvalidRequest, match="choose one with --remote-model"):
        manifest_for_remote("x", upstream.url, api="openai")  # it serves several models
    manifest = manifest_for_remote("far", upstream.url + "/v1", "echo-a", api="openai")
    store = Store(tmp_path / "models")
    store.create("far", manifest)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        chunks = list(scheduler.chat(_request("far", "hello there")))
        text = "".join(c.text for c in chunks)
        assert text.startswith("echo: hello there | 1 image(s)")
        final = chunks[-1]
        assert final.done and final.metrics.eval_count > 0 and final.metrics.total_duration > 0
    finally:
        scheduler.close()


def _request(model: str, prompt: str, **kw) -> ChatRequest:
    from imgscribe.images import intake

    return ChatRequest(model, [Message("user", prompt, [intake(testing.photo_path("rocket"))])], **kw)


def test_remote_errors_are_clear(upstream, tmp_path):
    with pytest.raises(ModelNotFound, match="remote server"):
        manifest_for_remote("x", upstream.url, "no-such-model")
    from imgscribe.engines.llamacpp.process import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InvalidRequest, match="no Ollama or OpenAI-compatible server"):
        manifest_for_remote("x", dead)
    store = Store(tmp_path / "models")
    store.create("gone", manifest_for_remote("gone", dead, "m", "ollama", check=False))
    scheduler = Scheduler(store)
    try:
        with pytest.raises(EngineFailed, match="cannot reach the remote server"):
            list(scheduler.chat(ChatRequest("gone", [Message("user", "hi")])))
    finally:
        scheduler.close()


@pytest.mark.slow
def test_remote_llama_server(tmp_path, monkeypatch):
    """A llama-server that imgscribe did not start (OpenAI dialect, with an API key) used as a model;
    its answer and prompt token count match the llamacpp engine on the same files."""
    binary = llama_server_binary()
    model, mmproj = gguf_pair("qwen2_vl")
    local = manifest_for_gguf("qwen-local", model, mmproj)
    proc = ServerProcess(binary, server_args(local, 2, tmp_path), log_path=tmp_path / "server.log", name="external")
    proc.start()
    try:
        monkeypatch.setenv("TEST_LLAMA_KEY", proc.api_key)
        manifest = manifest_for_remote("far", proc.url, api_key_env="TEST_LLAMA_KEY")
        assert manifest.engine_settings["api"] == "openai" and manifest.engine_settings["model"] == "qwen-local"
        store = Store(tmp_path / "models")
        store.create("far", manifest)
        store.create("qwen-local", local)
        scheduler = Scheduler(store, num_parallel=0)
        try:
            with live_server(scheduler) as live:
                options = {"num_predict": 8, "temperature": 0, "seed": 7}
                lines, _ = ollama_chat(live.url, "far", "Describe this image.", photo_b64(), options=options)
                remote = _final(lines)
                lines_local, _ = ollama_chat(live.url, "qwen-local", "Describe this image.", photo_b64(), options=options)
                local_final = _final(lines_local)
                assert remote["prompt_eval_count"] == local_final["prompt_eval_count"] > 100
                assert remote["prompt_eval_duration"] > 0 and remote["eval_duration"] > 0  # its timings
                text = "".join(line["message"]["content"] for line in lines)
                assert text == "".join(line["message"]["content"] for line in lines_local)

                # a schema goes through as response_format: llama-server constrains the output
                schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
                lines, _ = ollama_chat(live.url, "far", "JSON please", format=schema, options={"num_predict": 48})
                _final(lines)
                assert isinstance(json.loads("".join(line["message"]["content"] for line in lines))["n"], int)

                # two at once through the remote model
                results: dict[int, list] = {}

                def ask(i: int) -> None:
                    results[i] = ollama_chat(live.url, "far", f"photo {i}", photo_b64("coffee"),
                                             options={"num_predict": 16})[0]  # fmt: skip

                threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert all(_final(results[i])["prompt_eval_count"] > 0 for i in range(2))
        finally:
            scheduler.close()
    finally:
        proc.stop()
    monkeypatch.delenv("TEST_LLAMA_KEY")
    with pytest.raises(EngineFailed, match="TEST_LLAMA_KEY"):
        from imgscribe.engines.remote import RemoteRunner

        RemoteRunner(manifest)


def test_create_remote_through_the_cli_and_the_api(upstream, tmp_path, monkeypatch, capsys):
    """``imgscribe create NAME --remote URL`` and ``POST /api/create`` with ``remote``."""
    from fastapi.testclient import TestClient

    from imgscribe.cli import main
    from imgscribe.server import create_app

    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "models"))
    assert main(["create", "far-cli", "--remote", upstream.url, "--remote-model", "echo-a"]) == 0
    assert "created far-cli:latest (remote" in capsys.readouterr().out
    assert Store().resolve("far-cli").engine == "remote"
    assert main(["create", "both", "--remote", upstream.url, "--from", str(tmp_path)]) == 2

    body = {"model": "far-api", "remote": upstream.url, "remote_model": "echo-a", "stream": False}
    with TestClient(create_app(Scheduler(Store(tmp_path / "api")))) as client:
        assert client.post("/api/create", json=body).status_code == 403  # over the API only what the owner allows
    monkeypatch.setenv("IMGSCRIBE_REMOTES", upstream.url)
    with TestClient(create_app(Scheduler(Store(tmp_path / "api")))) as client:
        assert client.post("/api/create", json=body).json()["status"] == "success"
        answer = client.post("/api/generate", json={"model": "far-api", "prompt": "hello", "stream": False}).json()
        assert answer["response"].startswith("echo: hello")
        missing = {"model": "x", "remote": upstream.url, "remote_model": "nope", "stream": False}
        assert client.post("/api/create", json=missing).status_code == 404


def test_a_remote_servers_failure_is_a_502_naming_it(tmp_path):
    """A remote server answering 500 is a bad gateway for our client (a 502 naming that server, as
    docs/security.md says), not our own failure (500); a 4xx it answers stays the client's 400."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Failing(BaseHTTPRequestHandler):
        status = 500

        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": "out of memory"}).encode()
            self.send_response(Failing.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    store = Store(tmp_path / "models")
    store.create("far", manifest_for_remote("far", url, "m", "ollama", check=False))
    scheduler = Scheduler(store)
    try:
        with live_server(scheduler) as live:
            r = httpx.post(live.url + "/api/generate", json={"model": "far", "prompt": "hi", "stream": False}, timeout=30)
            assert r.status_code == 502 and f"the remote server {url} failed (500): out of memory" in r.json()["error"], r.text
            Failing.status = 400
            r = httpx.post(live.url + "/api/generate", json={"model": "far", "prompt": "hi", "stream": False}, timeout=30)
            assert r.status_code == 400 and "refused the request (400)" in r.json()["error"], r.text
    finally:
        scheduler.close()
        server.shutdown()
