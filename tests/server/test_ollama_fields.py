"""The fields of ``/api/version``, ``/api/tags``, ``/api/ps`` and ``/api/show`` against what Ollama
returns (``fixtures/ollama_api_types.json``, written from Ollama's ``api/types.go``), for every
engine's models: echo, builtin, llamacpp (a GGUF with its projector)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from packaging.version import Version

from imgscribe.store.import_gguf import manifest_for_gguf
from imgscribe.types import ModelInfo, ModelManifest
from imgscribe.version import OLLAMA_API_VERSION, __version__

from .test_blobs_create import MODEL, PROJECTOR

pytestmark = pytest.mark.timeout(60)
TYPES = json.loads((Path(__file__).parent / "fixtures" / "ollama_api_types.json").read_text())
HEX = re.compile(r"[0-9a-f]{64}")


def _time(value) -> datetime:
    assert isinstance(value, str), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def conforms(obj: dict, kind: str) -> None:
    """``obj`` has every field Ollama always sends, each field of Ollama's type."""
    spec = TYPES[kind]
    for name in spec["required"]:
        assert name in obj, f"{kind}.{name} missing"
    for name, wanted in {**spec["required"], **spec["optional"]}.items():
        if name not in obj:
            continue
        value = obj[name]
        if wanted == "string":
            assert isinstance(value, str), (kind, name, value)
        elif wanted == "integer":
            assert isinstance(value, int) and not isinstance(value, bool), (kind, name, value)
        elif wanted == "hex":
            assert isinstance(value, str) and HEX.fullmatch(value), (kind, name, value)
        elif wanted == "time":
            _time(value)
        elif wanted == "object":
            assert isinstance(value, dict), (kind, name)
        elif wanted == "array":
            assert isinstance(value, list), (kind, name)
        elif wanted == "array|null":
            assert value is None or isinstance(value, list), (kind, name)
        else:
            conforms(value, wanted)
    for capability in obj.get("capabilities") or []:
        assert capability in TYPES["Capabilities"], capability


@pytest.fixture
def gguf_model(store, tmp_path):
    (tmp_path / "tiny.gguf").write_bytes(MODEL)
    (tmp_path / "mmproj-tiny.gguf").write_bytes(PROJECTOR)
    store.create("tiny-gguf", manifest_for_gguf("tiny-gguf", tmp_path / "tiny.gguf", tmp_path / "mmproj-tiny.gguf"))
    return "tiny-gguf"


def test_version_is_ollamas_api_version_with_ours_beside_it(server):
    res = httpx.get(server.url + "/api/version")
    body = res.json()
    assert body["version"] == OLLAMA_API_VERSION
    assert Version(body["version"]) >= Version("0.6.5")  # Continue's minimum; Raycast's is 0.6.4
    assert body["imgscribe"] == __version__ and res.headers["X-Imgscribe-Version"] == __version__


def test_tags_entries_are_ollamas_with_bare_hex_digests(server, gguf_model):
    models = httpx.get(server.url + "/api/tags").json()["models"]
    names = [m["name"] for m in models]
    assert "builtin:latest" in names or "builtin" in names
    for m in models:
        conforms(m, "ListModelResponse")  # builtin's digest included: bare hex, never sha256:
        assert m["modified_at"].endswith("Z")


def test_copy_keeps_the_digest(server):
    for source, copy in [("echo-test", "alias-of-echo"), ("builtin", "my-builtin")]:
        assert httpx.post(server.url + "/api/copy", json={"source": source, "destination": copy}).status_code == 200
        digests = {m["name"].removesuffix(":latest"): m["digest"] for m in httpx.get(server.url + "/api/tags").json()["models"]}
        assert digests[copy] == digests[source], source


def test_ps_keep_alive_forever_is_a_far_future_timestamp(server):
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "hi", "stream": False, "keep_alive": -1})
    assert r.status_code == 200
    [row] = httpx.get(server.url + "/api/ps").json()["models"]
    conforms(row, "ProcessModelResponse")
    assert _time(row["expires_at"]) > datetime.now(UTC) + timedelta(days=365 * 200)
    assert row["context_length"] == 4096  # the echo model's


def test_ps_a_timed_model_expires_soon(server):
    httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "hi", "stream": False, "keep_alive": "5m"})
    [row] = httpx.get(server.url + "/api/ps").json()["models"]
    assert _time(row["expires_at"]) < datetime.now(UTC) + timedelta(minutes=6)


@pytest.mark.parametrize(("model", "arch", "context"), [("llava", "echo", 4096), ("builtin", "builtin", 4096),
                                                         ("tiny-gguf", "llama", 2048)])  # fmt: skip
def test_show_fields_and_context_length(server, gguf_model, model, arch, context):
    show = httpx.post(server.url + "/api/show", json={"model": model}).json()
    conforms(show, "ShowResponse")
    assert show["model_info"]["general.architecture"] == arch
    assert show["model_info"][f"{arch}.context_length"] == context
    assert show["modified_at"].endswith("Z")
    assert "completion" in show["capabilities"]


def test_show_projector_info_for_a_gguf_with_a_projector(server, gguf_model):
    show = httpx.post(server.url + "/api/show", json={"model": gguf_model}).json()
    assert show["projector_info"]["general.architecture"] == "clip"
    assert show["projector_info"]["clip.projector_type"] == "mlp"
    assert "vision" in show["capabilities"] and show["details"]["families"] == ["llama", "clip"]
    assert "projector_info" not in httpx.post(server.url + "/api/show", json={"model": "llava"}).json()


def test_context_length_from_model_info_when_the_importer_gave_none(server, store):
    info = ModelInfo(name="cfg-only", engine="echo", family="qwen2_vl", capabilities=["completion"],
                     model_info={"qwen2_vl.context_length": 32768})  # fmt: skip
    store.create("cfg-only", ModelManifest(name="cfg-only", engine="echo", info=info))
    show = httpx.post(server.url + "/api/show", json={"model": "cfg-only"}).json()
    assert show["model_info"]["qwen2_vl.context_length"] == 32768
    httpx.post(server.url + "/api/generate", json={"model": "cfg-only", "prompt": "x", "stream": False})
    [row] = httpx.get(server.url + "/api/ps").json()["models"]
    assert row["context_length"] == 32768
