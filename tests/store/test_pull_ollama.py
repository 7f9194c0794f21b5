"""``pull`` from a registry that speaks Ollama's protocol (a fake one on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from imgscribe.errors import InvalidRequest, ModelNotFound
from imgscribe.store import Store
from imgscribe.store.pull import DigestMismatch, Offline

from .fake_remotes import (
    closed_port,
    ollama_vision_gguf,
    tiny_model_gguf,
    tiny_projector_gguf,
)

TEMPLATE = "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]"
PARAMS = {"stop": ["[INST]", "[/INST]"], "num_ctx": 4096}


def add_llava(registry, repo="llava", tag="7b", model=None, projector=None, system="You describe images."):
    model = model or tiny_model_gguf("tiny-llava")
    projector = projector or tiny_projector_gguf()
    layers = [("model", model), ("projector", projector), ("template", TEMPLATE.encode()),
              ("params", json.dumps(PARAMS).encode()), ("license", b"Apache License 2.0")]  # fmt: skip
    if system:
        layers.append(("system", system.encode()))
    return registry.add_model(repo, tag, layers)


def pull(store: Store, name: str, insecure: bool = True) -> list[dict]:
    return list(store.pull(name, insecure=insecure))


def blob_digest(manifest: dict, role: str) -> str:
    return next(layer["digest"] for layer in manifest["layers"] if layer["mediaType"].endswith("." + role))


def test_pull_a_vision_model(store, registry):
    manifest = add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    events = pull(store, name)

    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [e for e in events if e["status"].startswith("pulling ") and "digest" in e]
    digests = {layer["digest"] for layer in manifest["layers"]} | {manifest["config"]["digest"]}
    assert {e["digest"] for e in progress} == digests
    for digest in digests:
        last = [e for e in progress if e["digest"] == digest][-1]
        assert last["completed"] == last["total"] > 0
        assert last["status"] == f"pulling {digest[7:19]}"

    model = store.resolve(name)
    assert model.name == name
    assert model.engine == "llamacpp"
    assert model.files["model"] == str(store.blobs.path(blob_digest(manifest, "model")))
    assert model.files["projector"] == str(store.blobs.path(blob_digest(manifest, "projector")))
    assert model.parameters["stop"] == PARAMS["stop"] and model.parameters["num_ctx"] == 4096
    assert model.template == TEMPLATE and "template" not in model.parameters
    assert model.system == "You describe images."
    info = model.info
    assert info.capabilities == ["completion", "vision"] and info.is_vlm
    assert (info.family, info.parameter_size, info.quantization_level, info.format) == ("llama", "7B", "Q4_0", "gguf")
    assert info.license == "Apache License 2.0"
    assert info.context_length == 2048  # from the GGUF header
    assert len(info.digest) == 64
    assert info.size == sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
    assert name in [i.name for i in store.list()]

    manifest_request = registry.requests("/manifests/7b")[0]
    assert manifest_request.headers["accept"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert all(store.blobs.verify(d) for d in digests)
    assert not list(store.blobs.dir.glob("*partial*"))


def test_pulling_again_downloads_nothing(store, registry):
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    pull(store, name)
    before = len(registry.requests("/cdn/"))
    events = pull(store, name)
    assert events[-1] == {"status": "success"}
    assert len(registry.requests("/cdn/")) == before


def test_big_blobs_download_in_parallel_ranges(store, registry):
    manifest = add_llava(registry, model=tiny_model_gguf(padding=600_000))
    pull(store, f"{registry.host}/library/llava:7b")
    model = blob_digest(manifest, "model")
    ranges = [r.headers.get("range") for r in registry.downloads(f"/cdn/{model}")]
    assert len(ranges) >= 9 and all(r and r.startswith("bytes=") for r in ranges)  # 64 KiB parts in the tests
    assert registry.served[model] == next(layer["size"] for layer in manifest["layers"] if layer["digest"] == model)


def test_a_dropped_connection_resumes_where_it_stopped(store, registry, monkeypatch):
    from imgscribe.store.pull import download

    monkeypatch.setattr(download, "MIN_PART_SIZE", 10 << 20)  # one range per blob
    manifest = add_llava(registry)
    model = blob_digest(manifest, "model")
    size = next(layer["size"] for layer in manifest["layers"] if layer["digest"] == model)
    registry.faults.drop_after[model] = 6 * 16384
    registry.faults.drop_times[model] = 2
    pull(store, f"{registry.host}/library/llava:7b")
    ranges = [r.headers["range"] for r in registry.downloads(f"/cdn/{model}")]
    assert ranges == [f"bytes=0-{size - 1}", f"bytes=98304-{size - 1}", f"bytes=196608-{size - 1}"]
    assert registry.served[model] == size  # nothing fetched twice
    assert store.blobs.verify(model)


def test_an_interrupted_pull_resumes_next_time(store, registry, monkeypatch):
    from imgscribe.store.pull import download

    monkeypatch.setattr(download, "MIN_PART_SIZE", 10 << 20)
    manifest = add_llava(registry, model=tiny_model_gguf(padding=1_000_000))
    model = blob_digest(manifest, "model")
    size = next(layer["size"] for layer in manifest["layers"] if layer["digest"] == model)
    registry.faults.delay = 0.01  # 16 KiB every 10 ms
    name = f"{registry.host}/library/llava:7b"
    events = store.pull(name, insecure=True)
    for event in events:  # like Ctrl-C once some of the model has arrived
        if event.get("digest") == model and event["completed"] > 100_000:
            break
    events.close()
    assert name not in [i.name for i in store.list()]  # no half-pulled model
    assert store.blobs.partial(model).is_file()
    time.sleep(0.3)  # the fake server notices the closed connection
    first = registry.served[model]
    assert 0 < first < size

    registry.faults.delay = 0
    pull(store, name)
    resumed = registry.downloads(f"/cdn/{model}")[-1].headers["range"]
    start = int(resumed.split("=")[1].split("-")[0])
    assert 0 < start <= first
    assert registry.served[model] - first == size - start  # only the rest was fetched
    assert store.blobs.verify(model)
    assert not store.blobs.partial(model).exists()


def test_a_corrupted_blob_is_rejected_and_fetched_again(store, registry):
    manifest = add_llava(registry)
    projector = blob_digest(manifest, "projector")
    registry.faults.corrupt_times[projector] = 1
    pull(store, f"{registry.host}/library/llava:7b")
    size = next(layer["size"] for layer in manifest["layers"] if layer["digest"] == projector)
    assert registry.served[projector] == 2 * size
    assert store.blobs.verify(projector)


def test_a_blob_corrupted_every_time_fails_and_keeps_nothing(store, registry):
    manifest = add_llava(registry)
    projector = blob_digest(manifest, "projector")
    registry.faults.corrupt_times[projector] = 100
    name = f"{registry.host}/library/llava:7b"
    with pytest.raises(DigestMismatch, match=f"blob {projector[:19]}.* does not match its sha256 digest"):
        pull(store, name)
    assert name not in [i.name for i in store.list()]
    assert not store.blobs.has(projector)
    assert not store.blobs.partial(projector).exists()


def test_a_missing_tag_is_a_clear_404(store, registry):
    add_llava(registry)
    with pytest.raises(ModelNotFound) as caught:
        pull(store, f"{registry.host}/library/llava:99b")
    assert caught.value.status == 404
    assert "no model library/llava with tag '99b'" in str(caught.value)
    with pytest.raises(ModelNotFound, match="no model library/nothing"):
        pull(store, f"{registry.host}/library/nothing")


def test_offline_says_what_to_do_instead(store):
    with pytest.raises(Offline) as caught:
        pull(store, f"127.0.0.1:{closed_port()}/library/llava:7b")
    message = str(caught.value)
    assert "cannot reach 127.0.0.1" in message and "network is unreachable" in message
    assert "imgscribe create NAME --from PATH" in message and "'builtin'" in message


def test_plain_http_needs_insecure(store, registry):
    add_llava(registry)
    with pytest.raises(InvalidRequest, match="--insecure"):
        pull(store, f"http://{registry.host}/library/llava:7b", insecure=False)
    with pytest.raises(Exception, match="insecure|TLS|SSL|https"):  # https to a plain-http server
        pull(store, f"{registry.host}/library/llava:7b", insecure=False)
    assert pull(store, f"http://{registry.host}/library/llava:7b", insecure=True)[-1]["status"] == "success"


def test_registries_that_ask_for_a_token(store, registry):
    registry.private.add("team")
    add_llava(registry, repo="team/vision")
    pull(store, f"{registry.host}/team/vision:7b")
    assert registry.requests("/token")
    assert store.resolve(f"{registry.host}/team/vision:7b").engine == "llamacpp"


def test_models_share_blobs_and_rm_frees_only_unused_ones(store, registry):
    projector = tiny_projector_gguf()
    a = add_llava(registry, repo="llava", tag="7b", model=tiny_model_gguf("a", seed=1), projector=projector)
    b = add_llava(registry, repo="llava", tag="13b", model=tiny_model_gguf("b", seed=2), projector=projector)
    pull(store, f"{registry.host}/library/llava:7b")
    pull(store, f"{registry.host}/library/llava:13b")
    shared = blob_digest(a, "projector")
    assert shared == blob_digest(b, "projector")
    assert registry.served[shared] == len(projector)  # fetched once, for the first model
    all_digests = {layer["digest"] for m in (a, b) for layer in m["layers"]} | {a["config"]["digest"], b["config"]["digest"]}
    assert set(store.blobs.all()) == all_digests  # each stored once

    store.delete(f"{registry.host}/library/llava:7b")
    assert not store.blobs.has(blob_digest(a, "model"))
    assert store.blobs.has(shared) and store.blobs.has(blob_digest(b, "model"))
    store.delete(f"{registry.host}/library/llava:13b")
    assert store.blobs.all() == []


def test_a_new_version_replaces_the_old_and_frees_its_files(store, registry):
    old = add_llava(registry, model=tiny_model_gguf("old", seed=1))
    name = f"{registry.host}/library/llava:7b"
    pull(store, name)
    new = add_llava(registry, model=tiny_model_gguf("new", seed=2))
    events = pull(store, name)
    assert {"status": "removing unused layers"} in events
    assert not store.blobs.has(blob_digest(old, "model"))
    assert store.resolve(name).files["model"] == str(store.blobs.path(blob_digest(new, "model")))


def test_two_pulls_of_the_same_model_at_once(store, registry):
    manifest = add_llava(registry, model=tiny_model_gguf(padding=500_000))
    registry.faults.delay = 0.002
    name = f"{registry.host}/library/llava:7b"
    results, errors = [], []

    def run():
        try:
            results.append(pull(Store(store.root), name))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2
    model = blob_digest(manifest, "model")
    size = next(layer["size"] for layer in manifest["layers"] if layer["digest"] == model)
    assert registry.served[model] == size  # the second waited for the first, fetched nothing
    assert store.blobs.verify(model)


def test_tensor_layer_models_are_refused(store, registry):
    registry.add_model("mlxmodel", "latest", [("tensor", b"weights"), ("model", tiny_model_gguf())])
    with pytest.raises(Exception, match="MLX"):
        pull(store, f"{registry.host}/library/mlxmodel")


def test_newer_single_file_vision_models_become_a_model_and_a_projector(store, registry):
    """Ollama's gemma3 keeps its vision encoder in the model file: llama.cpp needs GGUF + mmproj (more in test_pull_inspect.py)."""
    from imgscribe.formats.gguf import read_gguf

    registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf("gemma3"))],
                       {"model_format": "gguf", "model_family": "gemma3"})  # fmt: skip
    pull(store, f"{registry.host}/library/gemma3:4b")
    files = store.resolve(f"{registry.host}/library/gemma3:4b").files
    assert read_gguf(files["model"]).architecture == "gemma3"
    assert read_gguf(files["projector"]).metadata["clip.projector_type"] == "gemma3"


def test_a_text_model_without_projector_is_pulled_as_text_only(store, registry):
    registry.add_model("tinytext", "latest", [("model", tiny_model_gguf())])
    pull(store, f"{registry.host}/library/tinytext")
    info = store.resolve(f"{registry.host}/library/tinytext").info
    assert info.capabilities == ["completion"] and not info.is_vlm


def test_a_blob_that_is_not_a_gguf_is_refused_and_not_kept(store, registry):
    manifest = registry.add_model("junk", "latest", [("model", b"not a gguf at all")])
    with pytest.raises(InvalidRequest, match="not one llama.cpp can run"):
        pull(store, f"{registry.host}/library/junk")
    assert not store.blobs.has(manifest["layers"][0]["digest"])


def test_a_404_for_a_model_the_catalog_knows_says_where_to_get_it(store, registry):
    with pytest.raises(ModelNotFound, match=r"imgscribe pull hf.co/ggml-org/SmolVLM-256M-Instruct-GGUF"):
        pull(store, f"{registry.host}/library/smolvlm-256m")


def test_a_cancel_event_stops_the_transfers_and_keeps_what_arrived(store, registry, monkeypatch):
    from imgscribe.errors import Cancelled
    from imgscribe.store.pull import download

    monkeypatch.setattr(download, "MIN_PART_SIZE", 10 << 20)
    manifest = add_llava(registry, model=tiny_model_gguf(padding=1_000_000))
    model = blob_digest(manifest, "model")
    registry.faults.delay = 0.01
    cancel = threading.Event()
    events = store.pull(f"{registry.host}/library/llava:7b", insecure=True, cancel=cancel)
    with pytest.raises(Cancelled, match="pull again"):
        for event in events:
            if event.get("digest") == model and event["completed"] > 0:
                cancel.set()
    assert store.blobs.partial(model).is_file()
    assert f"{registry.host}/library/llava:7b" not in [i.name for i in store.list()]
