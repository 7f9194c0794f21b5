"""Inspect before downloading: the model's (and projector's) GGUF header is read with Range requests
and the pull is refused before the big download when the pinned llama-server cannot load the blob."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from imgscribe.store.pull.errors import Unsupported
from imgscribe.store.pull.inspect import HEADER_FIRST

from .fake_remotes import gguf, ollama_vision_gguf, tiny_model_gguf, tiny_projector_gguf


def pull(store, name: str, insecure: bool = True) -> list[dict]:
    return list(store.pull(name, insecure=insecure))


def digest(manifest: dict, role: str) -> str:
    return next(layer["digest"] for layer in manifest["layers"] if layer["mediaType"].endswith("." + role))


def assert_only_headers_read(remote, manifest: dict, store) -> None:
    """Nothing but a first header range of each GGUF layer left the fake registry; no manifest."""
    for layer in manifest["layers"]:
        assert remote.served[layer["digest"]] == 0, layer["mediaType"]
        assert remote.inspected[layer["digest"]] <= HEADER_FIRST
        assert not store.blobs.has(layer["digest"])
    assert [i.name for i in store.list() if i.engine != "builtin"] == []


# -- Ollama's registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "tag", "arch", "instead"),
    [
        ("gemma3", "4b", "gemma3", "hf.co/ggml-org/gemma-3-4b-it-GGUF"),
        ("gemma3", "12b-it-qat", "gemma3", "hf.co/ggml-org/gemma-3-12b-it-GGUF"),  # not in the catalog
        ("gemma3", "latest", "gemma3", "hf.co/ggml-org/gemma-3-4b-it-GGUF"),
        ("qwen2.5vl", "3b", "qwen25vl", "hf.co/ggml-org/Qwen2.5-VL-3B-Instruct-GGUF"),
        ("qwen2.5vl", "latest", "qwen25vl", "hf.co/ggml-org/Qwen2.5-VL-7B-Instruct-GGUF"),
        ("llama4", "16x17b", "llama4", "hf.co/ggml-org/Llama-4-Scout-17B-16E-Instruct-GGUF"),
        ("mistral-small3.1", "24b", "mistral3", "hf.co/ggml-org/Mistral-Small-3.1-24B-Instruct-2503-GGUF"),
    ],
)
def test_single_file_vision_blobs_are_refused_before_download(store, registry, model, tag, arch, instead):
    """Decided from the blob (its v.*/mm.* tensors and <arch>.vision.* keys), not from the catalog or the config."""
    manifest = registry.add_model(model, tag, [("model", ollama_vision_gguf(arch, padding=400_000))],
                                  {"model_format": "gguf", "model_family": "llama"})  # fmt: skip
    with pytest.raises(Unsupported, match="vision encoder inside") as caught:
        pull(store, f"{registry.host}/library/{model}:{tag}")
    assert caught.value.verdict == "translate"
    assert f"imgscribe pull {instead}" in str(caught.value)
    assert "only Ollama's own engine" not in str(caught.value)
    assert_only_headers_read(registry, manifest, store)


def test_a_size_without_a_llama_cpp_build_lists_the_builds_there_are(store, registry):
    manifest = registry.add_model("llama4", "128x17b", [("model", ollama_vision_gguf("llama4"))])
    with pytest.raises(Unsupported, match=r"no llama.cpp build of that size .*Llama-4-Scout-17B-16E-Instruct-GGUF"):
        pull(store, f"{registry.host}/library/llama4:128x17b")
    assert_only_headers_read(registry, manifest, store)


def test_a_qwen25vl_text_blob_names_the_build_llama_cpp_runs(store, registry):
    """qwen25vl is not an architecture b11434 knows (it knows qwen2vl), vision tensors or not."""
    registry.add_model("qwen2.5vl", "7b", [("model", tiny_model_gguf(arch="qwen25vl"))])
    with pytest.raises(Unsupported, match=r"architecture 'qwen25vl'.*hf.co/ggml-org/Qwen2.5-VL-7B-Instruct-GGUF"):
        pull(store, f"{registry.host}/library/qwen2.5vl:7b")


def gemma3_text_gguf(rms_eps: bool = True) -> bytes:
    meta = {"general.architecture": "gemma3", "gemma3.context_length": 32768, "gemma3.embedding_length": 16}
    if rms_eps:
        meta["gemma3.attention.layer_norm_rms_epsilon"] = 1e-6
    return gguf(meta, 400_000, 8, {"token_embd.weight": (16, 3)})


def test_a_text_gemma3_blob_is_pulled_as_text(store, registry):
    """gemma3:1b has no vision tower: the same architecture, nothing inside to refuse."""
    registry.add_model("gemma3", "1b", [("model", gemma3_text_gguf())])
    pull(store, f"{registry.host}/library/gemma3:1b")
    info = store.resolve(f"{registry.host}/library/gemma3:1b").info
    assert info.capabilities == ["completion"] and info.model_info["imgscribe.inspection"] == "use"


@pytest.mark.parametrize(("tag", "instead"), [("1b", "llama.cpp's own converter"), ("4b", "hf.co/ggml-org/gemma-3-4b-it-GGUF")])
def test_a_gemma3_blob_without_its_rms_epsilon_is_refused_before_download(store, registry, tag, instead):
    """llama.cpp requires gemma3.attention.layer_norm_rms_epsilon ("key not found" at load); Ollama adds it."""
    manifest = registry.add_model("gemma3", tag, [("model", gemma3_text_gguf(rms_eps=False))])
    with pytest.raises(Unsupported, match="lacks gemma3.attention.layer_norm_rms_epsilon") as caught:
        pull(store, f"{registry.host}/library/gemma3:{tag}")
    assert caught.value.verdict == "translate" and instead in str(caught.value)
    assert_only_headers_read(registry, manifest, store)


def mllama_gguf() -> bytes:
    return gguf({"general.architecture": "mllama", "mllama.context_length": 131072, "mllama.embedding_length": 16,
                 "mllama.vision.block_count": 1, "tokenizer.chat_template": "{{ messages }}"}, 400_000, 7,
                {"token_embd.weight": (16, 3), "v.patch_embd.weight": (8, 8)})  # fmt: skip


def test_llama3_2_vision_is_refused_before_download(store, registry):
    manifest = registry.add_model("llama3.2-vision", "11b", [("model", mllama_gguf())],
                                  {"model_format": "gguf", "model_family": "mllama"})  # fmt: skip
    with pytest.raises(Unsupported) as caught:
        pull(store, f"{registry.host}/library/llama3.2-vision:11b")
    message = str(caught.value)
    assert caught.value.verdict == "refuse"
    assert "no llama.cpp build runs" in message and "meta-llama/Llama-3.2-11B-Vision-Instruct" in message
    assert "transformers engine does not run the mllama family" in message  # said plainly, not promised
    assert_only_headers_read(registry, manifest, store)


@pytest.mark.parametrize(
    ("model", "tag", "instead"),
    [
        ("llava", "7b-v1.5-q4_0", "hf.co/llava-hf/llava-1.5-7b-hf"),
        ("llava", "13b", "hf.co/llava-hf/llava-v1.6-vicuna-13b-hf"),
        ("bakllava", "latest", "hf.co/llava-hf/bakLlava-v1-hf"),
    ],
)
def test_old_llava_projectors_without_a_type_are_refused_before_download(store, registry, model, tag, instead):
    manifest = registry.add_model(model, tag, [("model", tiny_model_gguf(padding=400_000)),
                                               ("projector", tiny_projector_gguf(projector_type=None))])  # fmt: skip
    with pytest.raises(Unsupported, match="no clip.projector_type") as caught:
        pull(store, f"{registry.host}/library/{model}:{tag}")
    assert caught.value.verdict == "translate"
    assert instead in str(caught.value)
    assert_only_headers_read(registry, manifest, store)


def test_a_projector_of_another_width_is_refused(store, registry):
    model = gguf({"general.architecture": "llama", "llama.embedding_length": 4096}, 100_000)
    manifest = registry.add_model("mixed", "latest", [("model", model), ("projector", tiny_projector_gguf(width=5120))])
    with pytest.raises(Unsupported, match="width 5120 .* 4096"):
        pull(store, f"{registry.host}/library/mixed")
    assert_only_headers_read(registry, manifest, store)


def test_an_unknown_architecture_is_refused_before_download(store, registry):
    manifest = registry.add_model("odd", "latest", [("model", tiny_model_gguf(arch="notanarch", padding=400_000))])
    with pytest.raises(Unsupported, match="architecture 'notanarch'"):
        pull(store, f"{registry.host}/library/odd")
    assert_only_headers_read(registry, manifest, store)


def test_a_missing_chat_template_is_recorded_not_refused(store, registry):
    registry.add_model("notemplate", "latest", [("model", tiny_model_gguf()), ("projector", tiny_projector_gguf())])
    registry.add_model("withtemplate", "latest", [("model", ollama_vision_gguf("llama")), ("projector", tiny_projector_gguf())])
    without = [e["status"] for e in pull(store, f"{registry.host}/library/notemplate")]
    with_one = [e["status"] for e in pull(store, f"{registry.host}/library/withtemplate")]
    # the verdict is said as the pull goes, right after the manifest (what /api/pull streams, pull prints)
    checked = "checked the GGUF headers: llama-server runs this model as published"
    assert without[:2] == ["pulling manifest", checked] and without[2].startswith("note: the GGUF has no tokenizer.chat_template")
    assert with_one[:2] == ["pulling manifest", checked] and not any(s.startswith("note:") for s in with_one)
    info = store.resolve(f"{registry.host}/library/notemplate").info.model_info
    assert info["imgscribe.inspection"] == "use" and "no tokenizer.chat_template" in info["imgscribe.notes"][0]
    info = store.resolve(f"{registry.host}/library/withtemplate").info.model_info
    assert info["imgscribe.inspection"] == "use" and "imgscribe.notes" not in info


def test_a_large_header_is_read_in_growing_ranges_and_no_further(store, registry):
    """A vocabulary of strings past the first range: read on, but never the weights after the header."""
    vocab = [f"token-{i:06d}" for i in range(20_000)]  # ~400 KB of strings
    model = gguf({"general.architecture": "mllama", "tokenizer.ggml.tokens": vocab}, 4_000_000)
    manifest = registry.add_model("bigheader", "latest", [("model", model)])
    with pytest.raises(Unsupported, match="mllama"):
        pull(store, f"{registry.host}/library/bigheader")
    layer = manifest["layers"][0]["digest"]
    reads = [r.headers["range"] for r in registry.header_reads(f"/cdn/{layer}")]
    assert reads[0] == f"bytes=0-{HEADER_FIRST - 1}" and len(reads) > 1
    assert registry.served[layer] == 0 and registry.inspected[layer] < 1_000_000


# -- Hugging Face -------------------------------------------------------------------------------


def test_hf_the_projector_is_chosen_by_its_header(store, hub):
    """The F16 file projects to another width and the BF16 one has no type: the Q8_0 one is taken."""
    model = gguf({"general.architecture": "llama", "llama.embedding_length": 16}, 100_000, 1)
    files = {"m-Q4_K_M.gguf": model,
             "mmproj-m-F16.gguf": tiny_projector_gguf(seed=2, width=32),
             "mmproj-m-BF16.gguf": tiny_projector_gguf(seed=3, projector_type=None),
             "mmproj-m-Q8_0.gguf": tiny_projector_gguf(seed=4, width=16)}  # fmt: skip
    hub.add_repo("Org/M-GGUF", files)
    pull(store, "hf.co/Org/M-GGUF")
    stored = store.resolve("hf.co/Org/M-GGUF")
    assert Path(stored.files["projector"]).read_bytes() == files["mmproj-m-Q8_0.gguf"]
    assert hub.served["mmproj-m-F16.gguf"] == 0 and hub.served["mmproj-m-BF16.gguf"] == 0


def test_hf_a_repo_without_a_usable_projector_is_refused_before_download(store, hub):
    files = {"m-Q4_K_M.gguf": tiny_model_gguf(padding=400_000), "mmproj-m-f16.gguf": tiny_projector_gguf(projector_type=None)}
    hub.add_repo("Org/Old-GGUF", files)
    with pytest.raises(Unsupported, match="no projector llama-server can use") as caught:
        pull(store, "hf.co/Org/Old-GGUF")
    assert caught.value.verdict == "translate"
    assert all(hub.served[f] == 0 for f in files) and hub.inspected["m-Q4_K_M.gguf"] <= HEADER_FIRST
    assert [i.name for i in store.list() if i.engine != "builtin"] == []


def test_hf_an_mllama_gguf_is_refused_before_download(store, hub):
    hub.add_repo("Org/Llama-Vision-GGUF", {"llama-vision-Q4_K_M.gguf": mllama_gguf()})
    with pytest.raises(Unsupported, match="no llama.cpp build runs"):
        pull(store, "hf.co/Org/Llama-Vision-GGUF")
    assert hub.served["llama-vision-Q4_K_M.gguf"] == 0


def test_a_registry_that_ignores_range_still_gets_only_the_header_read(store, registry):
    manifest = registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf(padding=2_000_000))])
    registry.faults.ignore_range = True
    registry.faults.delay = 0.002  # so that what the fake sends is what the client took, not a socket buffer's worth
    with pytest.raises(Unsupported, match="gemma-3-4b-it-GGUF"):
        pull(store, f"{registry.host}/library/gemma3:4b")
    layer = manifest["layers"][0]["digest"]
    assert registry.served[layer] == 0 and registry.inspected[layer] < 1_000_000


# -- the header reader ----------------------------------------------------------------------------


def test_read_gguf_header_fetches_only_the_header_and_skips_arrays_of_numbers(tmp_path):
    from imgscribe.formats.gguf import read_gguf, read_gguf_header

    scores = b"".join(struct.pack("<f", i / 7) for i in range(500_000))  # 2 MB of token scores, skipped
    meta = gguf({"general.architecture": "llama", "tokenizer.ggml.tokens": ["a", "b"]})
    n_kv = 3  # the two above and the scores, appended by hand
    head = meta[:16] + struct.pack("<Q", n_kv) + meta[24:]
    blob = (head + _string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 500_000) + scores)
    blob = blob[:8] + struct.pack("<Q", 1) + blob[16:]  # one tensor
    blob += _string("v.blk.0.attn_q.weight") + struct.pack("<I2Q", 2, 8, 8) + struct.pack("<IQ", 0, 0) + b"\0" * 3_000_000
    asked: list[tuple[int, int]] = []

    def fetch(offset: int, size: int) -> bytes:
        asked.append((offset, size))
        return blob[offset : offset + size]

    header = read_gguf_header(fetch, "blob", first=4096)
    assert header.architecture == "llama" and header.metadata["tokenizer.ggml.scores"] == "<array of 500000>"
    assert list(header.tensors) == ["v.blk.0.attn_q.weight"] and header.tensors["v.blk.0.attn_q.weight"][0] == (8, 8)
    assert sum(size for _, size in asked) < 100_000  # the scores and the weights were never fetched
    path = tmp_path / "m.gguf"
    path.write_bytes(blob)
    assert read_gguf(path) == header


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()
