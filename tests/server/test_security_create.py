"""Engine settings never come from the wire: /api/create ``parameters`` are options only.

``server_args: ["--log-file", "/any/path", "-m", "/other.gguf"]`` once made llama-server write an
arbitrary file and try another model. Now any key that is not an option is a 400 naming it, before
the stream starts, and nothing is created; a manifest changed by hand to hold one is refused when
it is read, before any engine starts."""

from __future__ import annotations

import json

import httpx
import pytest

from imgscribe.types import ModelInfo, ModelManifest

from .conftest import add_echo

ATTACK = ["--log-file", "/tmp/imgscribe-owned.log", "-m", "/other.gguf"]
SETTINGS = {
    "server_args": ATTACK,
    "request_args": {"ignore_eos": True, "n_probs": 5},
    "headers": {"Authorization": "Bearer stolen"},
    "url": "http://169.254.169.254/",
    "api_key_env": "AWS_SECRET_ACCESS_KEY",
    "extra_body": {"model": "other"},
    "num_parallel": 64,
    "chat_template": "{{ raise_exception('x') }}",
    "load_timeout": 1e9,
    "template": "{{ .Prompt }}",
    "tokens": 5,
}


def _names(server) -> set[str]:
    return {m["name"] for m in httpx.get(server.url + "/api/tags", timeout=10).json()["models"]}


@pytest.mark.parametrize("key", list(SETTINGS))
@pytest.mark.parametrize("stream", [None, False])
def test_create_refuses_engine_settings_in_parameters(server, key, stream):
    body = {"model": "x", "from": "llava", "parameters": {"temperature": 0.1, key: SETTINGS[key]}}
    if stream is not None:
        body["stream"] = stream
    r = httpx.post(server.url + "/api/create", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")  # not a stream that ends in an error
    message = r.json()["error"]
    assert message.startswith(f"parameters: unknown parameter '{key}'")
    assert message.count(". ") == 0 and "\n" not in message  # one sentence
    assert "x:latest" not in _names(server)


def test_the_attack_leaves_no_file_and_no_model(server, tmp_path):
    target = tmp_path / "owned.log"
    body = {"model": "x", "from": "llava", "parameters": {"server_args": ["--log-file", str(target), "-m", "/other.gguf"]}}
    assert httpx.post(server.url + "/api/create", json=body, timeout=10).status_code == 400
    assert not target.exists() and "x:latest" not in _names(server)


def test_a_valid_option_still_works_and_is_shown(server, store):
    body = {"model": "tuned", "from": "llava", "parameters": {"temperature": 0.25, "num_predict": 2, "stop": "END"}}
    r = httpx.post(server.url + "/api/create", json=body, timeout=10)
    assert r.status_code == 200 and json.loads(r.text.splitlines()[-1]) == {"status": "success"}
    manifest = store.resolve("tuned")
    assert manifest.parameters == {"temperature": 0.25, "num_predict": 2, "stop": ["END"]}
    assert manifest.engine_settings == store.resolve("llava").engine_settings  # inherited, never from the request
    show = httpx.post(server.url + "/api/show", json={"model": "tuned"}, timeout=10).json()
    assert "temperature" in show["parameters"] and "0.25" in show["parameters"]
    assert "PARAMETER temperature" in show["modelfile"]
    r = httpx.post(server.url + "/api/generate", json={"model": "tuned", "prompt": "a b c d", "stream": False}, timeout=10)
    assert r.json()["eval_count"] == 2  # the model's default num_predict is honoured


def test_show_never_prints_engine_settings(server, store):
    add_echo(store, "configured", delay=0.001, tokens=3, parallel=2, temperature=0.5)
    show = httpx.post(server.url + "/api/show", json={"model": "configured"}, timeout=10).json()
    for setting in ("delay", "tokens", "parallel"):
        assert setting not in show["parameters"] and setting not in show["modelfile"]
    assert "temperature" in show["parameters"]


def test_a_setting_written_into_a_manifest_by_hand_is_refused_before_llama_server_starts(server, store, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    from imgscribe.engines.llamacpp import process

    started = []
    monkeypatch.setattr(process.ServerProcess, "start", lambda self: started.append(self))
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    info = ModelInfo(name="gguf", engine="llamacpp", capabilities=["completion"])
    store.create("gguf", ModelManifest(name="gguf", engine="llamacpp", files={"model": str(model)}, info=info,
                                       parameters={"num_ctx": 1024}, engine_settings={"num_parallel": 1}))  # fmt: skip
    path = store.manifests / "registry.ollama.ai" / "library" / "gguf" / "latest"
    data = json.loads(path.read_text())
    data["model"]["parameters"]["server_args"] = ATTACK
    path.write_text(json.dumps(data))

    r = httpx.post(server.url + "/api/generate", json={"model": "gguf", "prompt": "hi", "stream": False}, timeout=10)
    assert r.status_code == 500 and "unknown parameter 'server_args'" in r.json()["error"]
    assert "gguf" in r.json()["error"]
    assert started == []
    assert "server_args" in path.read_text().split('"engine_settings"')[0]  # left where it was written, not migrated
