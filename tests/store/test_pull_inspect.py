"""Inspect before downloading: the model's (and projector's) GGUF header is read with Range requests
and the pull is refused before the big download when the pinned llama-server cannot load the blob."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from imgscribe.store.pull.errors import Unsupported
from imgscribe.store.names import parse_name
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


def assert_translated(remote, manifest: dict, store, name: str) -> None:
    """The published model blob was fetched once, after one header read; the store keeps only its
    translation, and the manifest keeps Ollama's digests."""
    layer = manifest["layers"][0]
    assert remote.inspected[layer["digest"]] <= HEADER_FIRST
    assert remote.served[layer["digest"]] == layer["size"]
    assert not store.blobs.has(layer["digest"])  # replaced by its translation
    stored = store.manifest_files.read(parse_name(name))
    assert layer["digest"] in [entry["digest"] for entry in stored.source["layers"]]
    assert layer["digest"] in stored.source["translated"]


SINGLE_FILE = [
    ("gemma3", "4b", "gemma3", "gemma3", "gemma3"),
    ("gemma3", "12b-it-qat", "gemma3", "gemma3", "gemma3"),  # not in the catalog: decided from the blob
    ("qwen2.5vl", "3b", "qwen25vl", "qwen2vl", "qwen2.5vl_merger"),
    ("llama4", "128x17b", "llama4", "llama4", "llama4"),  # no llama.cpp build of that size exists: translated anyway
    ("mistral-small3.1", "24b", "mistral3", "mistral3", "pixtral"),
]


@pytest.mark.parametrize(("model", "tag", "arch", "llama_arch", "projector"), SINGLE_FILE)
def test_single_file_vision_blobs_are_split_into_model_and_projector(store, registry, model, tag, arch, llama_arch, projector):
    """Decided from the blob (its v.*/mm.* tensors and <arch>.vision.* keys), not from the catalog or the config."""
    from imgscribe.formats.gguf import read_gguf

    manifest = registry.add_model(model, tag, [("model", ollama_vision_gguf(arch, padding=400_000))],
                                  {"model_format": "gguf", "model_family": "llama"})  # fmt: skip
    name = f"{registry.host}/library/{model}:{tag}"
    events = pull(store, name)
    assert any("imgscribe translates it for llama-server" in e.get("status", "") for e in events)
    assert_translated(registry, manifest, store, name)
    found = store.resolve(name)
    text, clip = read_gguf(found.files["model"]), read_gguf(found.files["projector"])
    assert text.architecture == llama_arch and not [t for t in text.tensors if t.startswith(("v.", "mm."))]
    assert not [k for k in text.metadata if ".vision." in k]
    assert clip.is_projector and clip.metadata["clip.projector_type"] == projector
    assert len(clip.tensors) == 2 + (arch == "mistral3")  # the two vision tensors; mistral3 gains v.token_embd.img_break
    assert clip.metadata["clip.vision.block_count"] == 1 and clip.metadata["clip.vision.projection_dim"] == 16
    assert found.info.model_info["imgscribe.inspection"] == "translated"
    assert "Translated for llama.cpp" in found.info.description  # what `show` prints
    assert found.info.digest == hashlib.sha256(registry.manifests[("library", model, tag)]).hexdigest()
    assert "vision" in found.info.capabilities


def test_a_second_pull_of_a_translated_blob_downloads_and_translates_nothing(store, registry):
    manifest = registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf(padding=400_000))])
    first = pull(store, f"{registry.host}/library/gemma3:4b")
    layer = manifest["layers"][0]
    served = registry.served[layer["digest"]]
    again = pull(store, f"{registry.host}/library/gemma3:4b")
    assert registry.served[layer["digest"]] == served  # not fetched again
    assert any(e["status"].startswith("translating ") for e in first)
    assert not any(e["status"].startswith("translating ") for e in again)
    assert store.resolve(f"{registry.host}/library/gemma3:4b").files["projector"]


def test_an_interrupted_translation_leaves_no_file_and_a_rerun_finishes(store, registry, monkeypatch):
    from imgscribe.store import translate

    manifest = registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf(padding=400_000))])
    real = translate.write_gguf

    def crash(source, spec, dest, progress=lambda n: None):
        Path(dest).write_bytes(b"GGUF half")
        raise KeyboardInterrupt

    monkeypatch.setattr(translate, "write_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        pull(store, f"{registry.host}/library/gemma3:4b")
    layer = manifest["layers"][0]["digest"]
    assert [p.name for p in store.blobs.dir.iterdir() if "tmp" in p.name] == []
    assert store.blobs.has(layer)  # the download is kept for the rerun
    assert not store.exists(f"{registry.host}/library/gemma3:4b")
    monkeypatch.setattr(translate, "write_gguf", real)
    served = registry.served[layer]
    pull(store, f"{registry.host}/library/gemma3:4b")
    assert registry.served[layer] == served  # resumed from the kept download, not fetched again
    assert store.resolve(f"{registry.host}/library/gemma3:4b").files["projector"]


def test_a_single_file_layout_without_a_translation_is_refused_before_download(store, registry):
    manifest = registry.add_model("qwen3-vl", "8b", [("model", ollama_vision_gguf("qwen3vl", padding=400_000))])
    with pytest.raises(Unsupported, match="vision encoder inside") as caught:
        pull(store, f"{registry.host}/library/qwen3-vl:8b")
    assert caught.value.verdict == "translate"
    assert "for gemma3, qwen25vl, mistral3, llama4 but not for qwen3vl" in str(caught.value)
    assert_only_headers_read(registry, manifest, store)


def test_a_qwen25vl_text_blob_is_renamed_qwen2vl(store, registry):
    """qwen25vl is not an architecture b11434 knows (it knows qwen2vl), vision tensors or not."""
    from imgscribe.formats.gguf import read_gguf

    registry.add_model("qwen2.5vl", "7b", [("model", tiny_model_gguf(arch="qwen25vl"))])
    pull(store, f"{registry.host}/library/qwen2.5vl:7b")
    header = read_gguf(store.resolve(f"{registry.host}/library/qwen2.5vl:7b").files["model"])
    assert header.architecture == "qwen2vl" and header.metadata["qwen2vl.context_length"] == 2048
    assert not [k for k in header.metadata if k.startswith("qwen25vl.")]


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


def test_a_gemma3_blob_without_its_rms_epsilon_gets_gemma3s(store, registry):
    """llama.cpp requires gemma3.attention.layer_norm_rms_epsilon ("key not found" at load); Ollama adds it."""
    from imgscribe.formats.gguf import read_gguf

    manifest = registry.add_model("gemma3", "1b", [("model", gemma3_text_gguf(rms_eps=False))])
    name = f"{registry.host}/library/gemma3:1b"
    pull(store, name)
    assert_translated(registry, manifest, store, name)
    header = read_gguf(store.resolve(name).files["model"])
    assert header.metadata["gemma3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert "<start_of_turn>" in header.metadata["tokenizer.chat_template"]  # Gemma 3's, not llama-server's ChatML
    assert "projector" not in store.resolve(name).files


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
    # the transformers engine runs mllama: the refusal points to the Hugging Face checkpoint, which it runs
    assert "imgscribe pull hf.co/meta-llama/Llama-3.2-11B-Vision-Instruct" in message
    assert "transformers engine" in message and "does not run" not in message
    assert_only_headers_read(registry, manifest, store)


@pytest.mark.parametrize(("model", "tag"), [("llava", "7b-v1.5-q4_0"), ("llava", "13b"), ("bakllava", "latest")])
def test_old_llava_projectors_without_a_type_get_mlp(store, registry, model, tag):
    from imgscribe.formats.gguf import read_gguf

    published = tiny_model_gguf(padding=400_000)
    registry.add_model(model, tag, [("model", published), ("projector", tiny_projector_gguf(projector_type=None))])
    name = f"{registry.host}/library/{model}:{tag}"
    events = pull(store, name)
    assert any("clip.projector_type = mlp added" in e["status"] for e in events)
    files = store.resolve(name).files
    assert read_gguf(files["projector"]).metadata["clip.projector_type"] == "mlp"
    assert Path(files["model"]).read_bytes() == published  # only the projector needed it


def test_a_projector_with_neither_type_nor_vision_encoder_is_refused_before_download(store, registry):
    projector = gguf({"general.architecture": "clip"}, 100_000, 1, {"mm.0.weight": (8, 16)})
    manifest = registry.add_model("odd", "latest", [("model", tiny_model_gguf(padding=400_000)), ("projector", projector)])
    with pytest.raises(Unsupported, match="no clip.projector_type"):
        pull(store, f"{registry.host}/library/odd")
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


def test_hf_an_old_projector_without_a_type_is_translated(store, hub):
    from imgscribe.formats.gguf import read_gguf

    files = {"m-Q4_K_M.gguf": tiny_model_gguf(padding=400_000), "mmproj-m-f16.gguf": tiny_projector_gguf(projector_type=None)}
    hub.add_repo("Org/Old-GGUF", files)
    events = pull(store, "hf.co/Org/Old-GGUF")
    assert any("clip.projector_type = mlp added" in e["status"] for e in events)
    stored = store.resolve("hf.co/Org/Old-GGUF")
    assert read_gguf(stored.files["projector"]).metadata["clip.projector_type"] == "mlp"
    assert Path(stored.files["model"]).read_bytes() == files["m-Q4_K_M.gguf"]


def test_hf_a_repo_without_a_usable_projector_is_refused_before_download(store, hub):
    model = gguf({"general.architecture": "llama", "llama.embedding_length": 16}, 400_000, 1)
    files = {"m-Q4_K_M.gguf": model, "mmproj-m-f16.gguf": tiny_projector_gguf(width=99)}  # another model's projector
    hub.add_repo("Org/Odd-GGUF", files)
    with pytest.raises(Unsupported, match="no projector llama-server can use") as caught:
        pull(store, "hf.co/Org/Odd-GGUF")
    assert caught.value.verdict == "refuse"
    assert all(hub.served[f] == 0 for f in files) and hub.inspected["m-Q4_K_M.gguf"] <= HEADER_FIRST
    assert [i.name for i in store.list() if i.engine != "builtin"] == []


def test_hf_an_mllama_gguf_is_refused_before_download(store, hub):
    hub.add_repo("Org/Llama-Vision-GGUF", {"llama-vision-Q4_K_M.gguf": mllama_gguf()})
    with pytest.raises(Unsupported, match="no llama.cpp build runs"):
        pull(store, "hf.co/Org/Llama-Vision-GGUF")
    assert hub.served["llama-vision-Q4_K_M.gguf"] == 0


def test_a_registry_that_ignores_range_still_gets_only_the_header_read(store, registry):
    manifest = registry.add_model("qwen3-vl", "8b", [("model", ollama_vision_gguf("qwen3vl", padding=2_000_000))])
    registry.faults.ignore_range = True
    registry.faults.delay = 0.002  # so that what the fake sends is what the client took, not a socket buffer's worth
    with pytest.raises(Unsupported, match="vision encoder inside"):
        pull(store, f"{registry.host}/library/qwen3-vl:8b")
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


def test_a_full_disk_while_translating_keeps_the_download(store, registry, monkeypatch):
    import errno

    from imgscribe.store import translate
    from imgscribe.store.pull.errors import DiskError

    manifest = registry.add_model("gemma3", "4b", [("model", ollama_vision_gguf(padding=400_000))])
    real = translate.write_gguf

    def full(source, spec, dest, progress=lambda n: None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(translate, "write_gguf", full)
    with pytest.raises(DiskError, match="free some space and pull again: the download is kept"):
        pull(store, f"{registry.host}/library/gemma3:4b")
    layer = manifest["layers"][0]["digest"]
    assert store.blobs.has(layer) and [p.name for p in store.blobs.dir.iterdir() if "tmp" in p.name] == []
    monkeypatch.setattr(translate, "write_gguf", real)
    served = registry.served[layer]
    pull(store, f"{registry.host}/library/gemma3:4b")
    assert registry.served[layer] == served  # only translated this time
