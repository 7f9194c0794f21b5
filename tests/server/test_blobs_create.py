"""``HEAD``/``POST /api/blobs/sha256:<hex>`` and ``POST /api/create`` with what Ollama >= 0.5 sends
(``files`` of uploaded blobs, ``from`` with ``template``/``messages``...), hostile requests included,
and the official ``ollama`` Python client's ``create_blob`` + ``create``."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import httpx
import ollama
import pytest

from imgscribe.store import Store

from store.fake_remotes import gguf  # tests/store, a package beside this folder

from .conftest import live_server, wait_for

EVIL = {"Origin": "http://evil.com", "Content-Type": "text/plain"}


def tiny_gguf(metadata: dict, padding: int = 4096, seed: int = 0) -> bytes:
    """A GGUF v3 header with these metadata and no tensors, plus padding (the store tests' writer)."""
    return gguf(metadata, padding, seed)


MODEL = tiny_gguf({"general.architecture": "llama", "general.name": "tiny", "llama.context_length": 2048,
                   "general.file_type": 15})  # fmt: skip
PROJECTOR = tiny_gguf({"general.architecture": "clip", "clip.has_vision_encoder": True,
                       "clip.projector_type": "mlp"}, seed=1)  # fmt: skip


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(url: str, data: bytes, name: str | None = None, **kw) -> httpx.Response:
    return httpx.post(f"{url}/api/blobs/{name or digest(data)}", content=data, timeout=30, **kw)


def stored_files(store: Store) -> list[str]:
    """Everything in the blobs folder, temporary files included."""
    return sorted(p.name for p in store.blobs.dir.iterdir()) if store.blobs.dir.is_dir() else []


def create(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/api/create", json={"stream": False, **body}, timeout=30)


# -- blobs ----------------------------------------------------------------------------------------


def test_head_then_post_then_head(server, store):
    d = digest(MODEL)
    assert httpx.head(f"{server.url}/api/blobs/{d}").status_code == 404
    r = upload(server.url, MODEL)
    assert r.status_code == 201, r.text
    assert store.blobs.path(d).read_bytes() == MODEL
    assert httpx.head(f"{server.url}/api/blobs/{d}").status_code == 200
    assert upload(server.url, MODEL).status_code == 200  # already there: Ollama's 200
    assert stored_files(store) == [d.replace(":", "-")]


@pytest.mark.parametrize("name", ["sha256:00", "md5:" + "0" * 64, "sha256:" + "g" * 64, "latest", "sha256:" + "0" * 65])
def test_a_malformed_digest_is_a_400(server, store, name):
    assert httpx.head(f"{server.url}/api/blobs/{name}").status_code == 400
    r = upload(server.url, MODEL, name)
    assert r.status_code == 400 and "invalid digest" in r.json()["error"]
    assert stored_files(store) == []


def test_a_wrong_digest_is_a_400_and_nothing_is_kept(server, store):
    wrong = digest(b"something else")
    r = upload(server.url, MODEL, wrong)
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"] and digest(MODEL) in r.json()["error"]
    assert stored_files(store) == []
    assert httpx.head(f"{server.url}/api/blobs/{wrong}").status_code == 404


def test_a_foreign_web_page_cannot_upload_or_probe(server, store):
    r = upload(server.url, MODEL, headers=EVIL)
    assert r.status_code == 403 and "IMGSCRIBE_ORIGINS" in r.json()["error"]
    assert httpx.head(f"{server.url}/api/blobs/{digest(MODEL)}", headers=EVIL).status_code == 403
    assert stored_files(store) == []
    # and /api/create from files is refused the same way
    r = httpx.post(f"{server.url}/api/create", content=json.dumps({"model": "planted", "files": {}}), headers=EVIL)
    assert r.status_code == 403 and not store.exists("planted")


def test_the_api_key_guards_uploads(monkeypatch, scheduler, store):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", "s3cret")
    with live_server(scheduler) as live:
        assert upload(live.url, MODEL).status_code == 401
        assert httpx.head(f"{live.url}/api/blobs/{digest(MODEL)}").status_code == 401
        assert stored_files(store) == []
        assert upload(live.url, MODEL, headers={"Authorization": "Bearer s3cret"}).status_code == 201


def test_an_oversize_upload_is_a_413_and_nothing_is_kept(monkeypatch, scheduler, store):
    monkeypatch.setenv("IMGSCRIBE_MAX_BLOB_BYTES", "1000")
    with live_server(scheduler) as live:
        r = upload(live.url, MODEL)  # Content-Length says so: refused before reading
        assert r.status_code == 413 and "IMGSCRIBE_MAX_BLOB_BYTES" in r.json()["error"]
        chunks = iter([MODEL[:800], MODEL[800:]])  # no Content-Length: refused once past the limit
        r = httpx.post(f"{live.url}/api/blobs/{digest(MODEL)}", content=chunks, timeout=30)
        assert r.status_code == 413
        assert stored_files(store) == []
        small = b"x" * 1000
        assert upload(live.url, small).status_code == 201


def test_a_truncated_upload_keeps_nothing(server, store):
    """The client goes away halfway through: no blob, no temporary file left behind."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /api/blobs/{digest(MODEL)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Length: {len(MODEL)}\r\n\r\n".encode() + MODEL[: len(MODEL) // 2])  # fmt: skip
        assert wait_for(lambda: any(n.startswith(".tmp-upload-") for n in stored_files(store)))
    assert wait_for(lambda: stored_files(store) == []), stored_files(store)
    assert httpx.head(f"{server.url}/api/blobs/{digest(MODEL)}").status_code == 404


def test_a_slow_upload_is_cut_off(monkeypatch, scheduler, store):
    monkeypatch.setenv("IMGSCRIBE_BODY_TIMEOUT", "0.5")
    with live_server(scheduler) as live, socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(f"POST /api/blobs/{digest(MODEL)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Length: {len(MODEL)}\r\n\r\n".encode() + MODEL[:10])  # fmt: skip
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert wait_for(lambda: stored_files(store) == [])


def test_concurrent_uploads_of_the_same_file_make_one_good_blob(server, store):
    data = MODEL * 64  # big enough to be written in several pieces
    results: list[int] = []

    def send():
        results.append(upload(server.url, data).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {200, 201} and 201 in results
    assert stored_files(store) == [digest(data).replace(":", "-")]
    assert store.blobs.verify(digest(data))


# -- /api/create ----------------------------------------------------------------------------------


def test_create_from_uploaded_files_references_the_blobs(server, store):
    for data in (MODEL, PROJECTOR):
        assert upload(server.url, data).status_code == 201
    files = {"mmproj-tiny.gguf": digest(PROJECTOR), "tiny.gguf": digest(MODEL)}  # the projector first: headers decide
    r = create(server.url, model="uploaded", files=files, system="Be brief.", parameters={"temperature": 0},
               template="{{ .Prompt }}", messages=[{"role": "user", "content": "hi"}], license="MIT")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    manifest = store.resolve("uploaded")
    assert manifest.engine == "llamacpp"  # run by llama-server as any imported GGUF
    assert manifest.files == {"model": str(store.blobs.path(digest(MODEL))),
                              "projector": str(store.blobs.path(digest(PROJECTOR)))}  # fmt: skip
    assert manifest.system == "Be brief." and manifest.parameters == {"temperature": 0}
    assert manifest.template == "{{ .Prompt }}" and manifest.messages == [{"role": "user", "content": "hi"}]
    assert manifest.info.license == "MIT" and "vision" in manifest.info.capabilities
    assert store.stored("uploaded").digests == {digest(MODEL), digest(PROJECTOR)}  # layers: kept alive
    assert len(stored_files(store)) == 2  # referenced, not copied
    shown = httpx.post(f"{server.url}/api/show", json={"model": "uploaded"}).json()
    assert shown["system"] == "Be brief." and shown["template"] == "{{ .Prompt }}" and "vision" in shown["capabilities"]
    assert store.prune() == 0 and len(stored_files(store)) == 2


def test_create_from_files_streams_progress(server, store):
    upload(server.url, MODEL)
    with httpx.stream("POST", f"{server.url}/api/create", json={"model": "streamed", "files": {"m.gguf": digest(MODEL)}}) as r:
        statuses = [json.loads(line)["status"] for line in r.iter_lines() if line]
    assert statuses[-1] == "success" and store.resolve("streamed").files["model"].endswith(digest(MODEL).replace(":", "-"))
    assert "projector" not in store.resolve("streamed").files


@pytest.mark.parametrize("files, status, words", [
    ({"tiny.gguf": "sha256:" + "0" * 64}, 400, "is not on this server: upload it first"),
    ({"tiny.gguf": "sha256:00"}, 400, "invalid digest"),
    ({"../../etc/x.gguf": "MODEL"}, 400, "invalid file name"),
    ({"/abs.gguf": "MODEL"}, 400, "invalid file name"),
    ({"a.gguf": "PROJECTOR"}, 400, "no model GGUF"),
    ({"a.gguf": "MODEL", "b.gguf": "MODEL2"}, 400, "two model GGUFs"),
    ({"notes.txt": "TEXT"}, 400, "no GGUF file and no checkpoint folder"),
    ({"a.gguf": "MODEL", "p.gguf": "PROJECTOR", "q.gguf": "PROJECTOR2"}, 400, "several projectors"),
    ({"x.gguf": "NO_ARCH"}, 400, "files: x.gguf has no general.architecture"),
    ({"config.json": "TEXT", "model.safetensors": "TEXT"}, 400, "files: cannot read config.json"),
    ({"config.json": "NOPE", "model.safetensors": "TEXT"}, 400, "the uploaded checkpoint is a Nope model"),
])  # fmt: skip
def test_create_from_files_that_make_no_model(server, store, files, status, words):
    blobs = {"MODEL": MODEL, "MODEL2": tiny_gguf({"general.architecture": "llama"}, seed=9),
             "PROJECTOR": PROJECTOR, "PROJECTOR2": tiny_gguf({"general.architecture": "clip"}, seed=8), "TEXT": b"just text", "NO_ARCH": tiny_gguf({"general.name": "x"}),
             "NOPE": b'{"architectures": ["Nope"]}'}  # fmt: skip
    for data in blobs.values():
        upload(server.url, data)
    files = {k: digest(blobs[v]) if v in blobs else v for k, v in files.items()}
    for stream in (False, True):  # judged before the stream starts: a 400 either way
        r = httpx.post(f"{server.url}/api/create", json={"model": "broken", "files": files, "stream": stream})
        assert r.status_code == status and words in r.json()["error"], r.text
        assert str(store.root) not in r.text  # the store's paths are the server's business
    assert not store.exists("broken")
    assert not store.blobs.snapshots.exists() or list(store.blobs.snapshots.iterdir()) == []


def test_a_gguf_with_a_folders_json_files_is_the_gguf(server, store):
    """Ollama's CLI sends a GGUF folder's *.json files too: the GGUF makes the model."""
    sidecar = b'{"architectures": ["LlamaForCausalLM"]}'
    for data in (MODEL, sidecar):
        upload(server.url, data)
    r = create(server.url, model="folder", files={"model.gguf": digest(MODEL), "config.json": digest(sidecar)})
    assert r.status_code == 200, r.text
    assert store.resolve("folder").files == {"model": str(store.blobs.path(digest(MODEL)))}


def test_create_from_uploaded_checkpoint_files_makes_a_snapshot(server, store):
    from imgscribe import testing

    folder = testing.build("gemma3", Path(store.root).parent / "gemma3")
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert upload(server.url, data).status_code in (200, 201)
        files[path.relative_to(folder).as_posix()] = digest(data)
    r = create(server.url, model="ckpt", files=files)
    assert r.status_code == 200, r.text
    manifest = store.resolve("ckpt")
    assert manifest.engine == "transformers" and Path(manifest.files["model"]).parent == store.root / "snapshots"
    assert store.stored("ckpt").digests == set(files.values())


def test_create_from_an_existing_model_with_template_and_messages(server, store):
    r = create(server.url, model="derived", **{"from": "llava"}, system="terse", template="T {{ .Prompt }}",
               parameters={"num_predict": 3, "stop": ["END"]},
               messages=[{"role": "System", "content": "s"}, {"role": "assistant", "content": "a"}])  # fmt: skip
    assert r.status_code == 200, r.text
    derived, parent = store.resolve("derived"), store.resolve("llava")
    assert derived.files == parent.files and derived.engine == parent.engine
    assert derived.template == "T {{ .Prompt }}" and derived.system == "terse"
    assert derived.messages == [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]
    assert derived.parameters == {"num_predict": 3, "stop": ["END"]}
    answer = httpx.post(f"{server.url}/api/generate", json={"model": "derived", "prompt": "a b c d e", "stream": False})
    assert answer.json()["eval_count"] == 3


@pytest.mark.parametrize("body, status, words", [
    ({"from": "llava", "quantize": "q4_K_M"}, 501, "quantizing is not available"),
    ({"from": "llava", "adapters": {"lora.gguf": "sha256:" + "0" * 64}}, 501, "LoRA adapters are not supported"),
    ({"from": "llava", "files": {"a.gguf": "sha256:" + "0" * 64}}, 400, "not both"),
    ({"from": "llava", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
    ({"from": "llava", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400, "text only"),
    ({"from": "llava", "messages": "hi"}, 400, "messages"),
    ({"from": "llava", "template": 3}, 400, "template"),
    ({"from": "llava", "parameters": {"server_args": ["--log-file", "/tmp/x"]}}, 400, "unknown parameter"),
    ({"files": {"a.gguf": 5}}, 400, "files"),
    ({}, 400, "'from' is required"),
])  # fmt: skip
def test_create_refusals(server, store, body, status, words):
    r = create(server.url, model="refused", **body)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert not store.exists("refused")


def test_the_official_client_creates_from_a_model_and_from_an_uploaded_blob(server, store, tmp_path):
    client = ollama.Client(host=server.url)
    done = client.create("terse-llava", from_="llava", system="Answer in one word.", parameters={"temperature": 0})
    assert done.status == "success"
    assert store.resolve("terse-llava").system == "Answer in one word."
    path = tmp_path / "tiny.gguf"
    path.write_bytes(MODEL)
    d = client.create_blob(path)
    assert d == digest(MODEL) and store.blobs.has(d)
    assert client.create_blob(path) == d  # uploading it again is fine
    statuses = [p.status for p in client.create("from-blob", files={"tiny.gguf": d}, stream=True)]
    assert statuses[-1] == "success"
    assert client.show("from-blob").details.format == "gguf"
    with pytest.raises(ollama.ResponseError) as info:
        client.create("nope", from_="llava", quantize="q4_K_M")
    assert info.value.status_code == 501 and "quantizing is not available" in info.value.error


def _llamacpp_support():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
    try:
        import _llamacpp_support
    finally:
        sys.path.pop(0)
    return _llamacpp_support


@pytest.mark.slow
def test_a_model_created_from_uploaded_gguf_files_answers(server, store):
    """A real tiny GGUF pair (llama.cpp's converter, llava15) uploaded with the official client's
    create_blob, created with files, asked about a photo: llama-server runs it from the blobs."""
    support = _llamacpp_support()
    support.llama_server_binary()  # skips here, fails in CI, when llama-server is not built
    model, projector = support.gguf_pair("llava15")
    client = ollama.Client(host=server.url)
    files = {"mmproj-tiny-llava.gguf": client.create_blob(projector), "tiny-llava.gguf": client.create_blob(model)}
    assert client.create("tiny-llava-up", files=files, system="Describe briefly.").status == "success"
    manifest = store.resolve("tiny-llava-up")
    assert manifest.engine == "llamacpp" and Path(manifest.files["projector"]).parent == store.root / "blobs"
    answer, _ = support.ollama_chat(server.url, "tiny-llava-up", image=support.photo_b64(),
                                    options={"num_predict": 8, "seed": 1})  # fmt: skip
    assert answer[-1]["done"] is True, answer
    assert answer[-1]["eval_count"] > 0 and answer[-1]["prompt_eval_count"] > 0
    server.scheduler.unload("tiny-llava-up")
