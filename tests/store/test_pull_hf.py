"""``pull hf.co/ORG/REPO[:QUANT]`` from a Hugging Face Hub stand-in (``IMGSCRIBE_HF_ENDPOINT``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imgscribe.errors import InvalidRequest, ModelNotFound
from imgscribe.store.pull import Offline, PullError
from imgscribe.store.pull.hf import RepoFile, pick_gguf

from .fake_remotes import (
    closed_port,
    git_oid,
    safetensors,
    tiny_model_gguf,
    tiny_projector_gguf,
)

REPO = "Org/Tiny-VLM-GGUF"


def gguf_repo(hub, repo=REPO, **extra):
    files = {
        "README.md": b"# tiny",
        ".gitattributes": b"*.gguf filter=lfs",
        "tiny-vlm-Q4_K_M.gguf": tiny_model_gguf("q4km", seed=1),
        "tiny-vlm-Q8_0.gguf": tiny_model_gguf("q8", seed=2),
        "mmproj-tiny-vlm-F32.gguf": tiny_projector_gguf(seed=3),
        "mmproj-tiny-vlm-F16.gguf": tiny_projector_gguf(seed=4),
        **extra,
    }
    hub.add_repo(repo, files)
    return files


def llava_config(arch="LlavaForConditionalGeneration") -> bytes:
    return json.dumps({
        "architectures": [arch], "model_type": "llava", "torch_dtype": "bfloat16",
        "text_config": {"model_type": "llama", "max_position_embeddings": 4096},
        "vision_config": {"model_type": "clip_vision_model"},
    }).encode()  # fmt: skip


def checkpoint_repo(hub, repo="Org/Tiny-Llava-HF", config=None):
    files = {
        "config.json": config or llava_config(),
        "model-00001-of-00002.safetensors": safetensors(1) * 200,  # large enough to be an LFS file
        "model-00002-of-00002.safetensors": safetensors(2) * 200,
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "tokenizer.json": b'{"model": {}}',
        "tokenizer_config.json": b"{}",
        "preprocessor_config.json": b'{"image_processor_type": "CLIPImageProcessor"}',
        "chat_template.jinja": b"{{ messages }}",
        "README.md": b"# tiny",
        "onnx/model.onnx": b"onnx" * 500,
        "pytorch_model.bin": b"torch" * 500,
        "images/demo.png": b"png",
    }
    hub.add_repo(repo, files)
    return files


def pull(store, name):
    return list(store.pull(name))


def test_gguf_repo_picks_the_default_quant_and_the_f16_projector(store, hub):
    files = gguf_repo(hub)
    events = pull(store, f"hf.co/{REPO}")
    assert events[0] == {"status": "pulling manifest"}
    assert [e["status"] for e in events[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]

    name = "hf.co/org/tiny-vlm-gguf:latest"
    model = store.resolve(name)
    assert model.engine == "llamacpp"
    assert Path(model.files["model"]).read_bytes() == files["tiny-vlm-Q4_K_M.gguf"]
    assert Path(model.files["projector"]).read_bytes() == files["mmproj-tiny-vlm-F16.gguf"]
    assert model.info.capabilities == ["completion", "vision"]
    assert model.info.quantization_level == "Q4_K_M"
    fetched = {r.path.split("::")[-1] for r in hub.requests("/cdn/")}
    assert fetched == {"tiny-vlm-Q4_K_M.gguf", "mmproj-tiny-vlm-F16.gguf"}  # nothing else downloaded
    assert all(name not in r.path for r in hub.requests("/resolve/") for name in ("README", "Q8_0"))
    source = store.stored(name).source
    assert source["kind"] == "huggingface" and source["repository"] == REPO and source["revision"] == hub.sha(REPO)
    assert name in [i.name for i in store.list()]


def test_a_quant_tag_picks_that_file(store, hub):
    files = gguf_repo(hub)
    pull(store, f"hf.co/{REPO}:q8_0")
    model = store.resolve("hf.co/org/tiny-vlm-gguf:q8_0")
    assert Path(model.files["model"]).read_bytes() == files["tiny-vlm-Q8_0.gguf"]


def test_a_missing_quant_is_a_404_that_lists_the_ones_there(store, hub):
    gguf_repo(hub)
    with pytest.raises(ModelNotFound, match=r"no GGUF file for quantisation 'Q2_K' \(it has: Q4_K_M, Q8_0\)") as caught:
        pull(store, f"hf.co/{REPO}:Q2_K")
    assert caught.value.status == 404


def test_a_missing_repository_is_a_404(store, hub):
    with pytest.raises(ModelNotFound, match="Hugging Face has no repository Org/Nothing.*HF_TOKEN"):
        pull(store, "hf.co/Org/Nothing")


def test_gated_repositories_say_how_to_get_access(store, hub):
    gguf_repo(hub)
    hub.gated.add(REPO)
    with pytest.raises(PullError, match="accept its conditions.*HF_TOKEN"):
        pull(store, f"hf.co/{REPO}")


def test_the_token_is_sent(store, hub, monkeypatch):
    gguf_repo(hub)
    hub.token = "hf_secret"
    with pytest.raises(ModelNotFound):
        pull(store, f"hf.co/{REPO}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert pull(store, f"hf.co/{REPO}")[-1] == {"status": "success"}


def test_checkpoint_repo_becomes_a_transformers_folder(store, hub):
    files = checkpoint_repo(hub)
    pull(store, "huggingface.co/Org/Tiny-Llava-HF")
    model = store.resolve("huggingface.co/org/tiny-llava-hf")
    assert model.engine == "transformers"
    folder = model.files["model"]
    assert os.path.isdir(folder)
    present = sorted(os.listdir(folder))
    assert present == sorted(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                              "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
                              "preprocessor_config.json", "chat_template.jinja"])  # fmt: skip
    for name in present:
        assert (Path(folder) / name).read_bytes() == files[name]
    info = model.info
    assert info.capabilities == ["completion", "vision"] and info.is_vlm
    assert info.format == "safetensors"
    assert info.context_length == 4096
    assert info.quantization_level == "BF16"
    fetched = " ".join(r.path for r in hub.log)
    assert "onnx" not in fetched and "pytorch_model.bin" not in fetched and "README" not in fetched

    store.delete("huggingface.co/org/tiny-llava-hf")
    assert not os.path.exists(folder)
    assert store.blobs.all() == []


def test_checkpoint_families_the_engine_cannot_run_are_refused_before_the_weights(store, hub):
    pytest.importorskip("imgscribe.engines.transformers.families")
    checkpoint_repo(hub, config=llava_config("WhisperForConditionalGeneration"))
    with pytest.raises(InvalidRequest, match="WhisperForConditionalGeneration.*does not run"):
        pull(store, "hf.co/Org/Tiny-Llava-HF")
    assert not [r for r in hub.log if ".safetensors" in r.path]
    assert store.blobs.all() == []


def test_checkpoint_repos_have_no_quant_tags(store, hub):
    checkpoint_repo(hub)
    with pytest.raises(InvalidRequest, match="no quantisation tags"):
        pull(store, "hf.co/Org/Tiny-Llava-HF:Q4_K_M")


def test_small_files_are_checked_against_their_git_id_and_refetched(store, hub):
    files = checkpoint_repo(hub)
    hub.faults.corrupt_times["tokenizer.json"] = 1
    pull(store, "hf.co/Org/Tiny-Llava-HF")
    assert len(hub.requests("/resolve/" + hub.sha("Org/Tiny-Llava-HF") + "/tokenizer.json")) == 2
    folder = store.resolve("hf.co/org/tiny-llava-hf").files["model"]
    data = (Path(folder) / "tokenizer.json").read_bytes()
    assert data == files["tokenizer.json"] and git_oid(data) == git_oid(files["tokenizer.json"])


def test_large_files_resume_with_range(store, hub, monkeypatch):
    from imgscribe.store.pull import download

    monkeypatch.setattr(download, "MIN_PART_SIZE", 10 << 20)  # one range per file
    files = gguf_repo(hub)
    hub.faults.drop_after["tiny-vlm-Q4_K_M.gguf"] = 2 * 16384
    pull(store, f"hf.co/{REPO}")
    resumed = [r.headers["range"] for r in hub.downloads("/cdn/Org/Tiny-VLM-GGUF::tiny-vlm-Q4_K_M.gguf")]
    size = len(files["tiny-vlm-Q4_K_M.gguf"])
    assert resumed == [f"bytes=0-{size - 1}", f"bytes=32768-{size - 1}"]  # again from where it broke
    assert hub.served["tiny-vlm-Q4_K_M.gguf"] == len(files["tiny-vlm-Q4_K_M.gguf"])


def test_split_ggufs_become_a_folder(store, hub):
    part1, part2 = tiny_model_gguf("split", seed=7), b"second part" * 100
    hub.add_repo("Org/Split-GGUF", {"big-Q4_K_M-00001-of-00002.gguf": part1, "big-Q4_K_M-00002-of-00002.gguf": part2,
                                    "mmproj-big-f16.gguf": tiny_projector_gguf()})  # fmt: skip
    pull(store, "hf.co/Org/Split-GGUF")
    model = store.resolve("hf.co/org/split-gguf").files["model"]
    assert model.endswith("/big-Q4_K_M-00001-of-00002.gguf")
    folder = os.path.dirname(model)
    assert sorted(os.listdir(folder)) == ["big-Q4_K_M-00001-of-00002.gguf", "big-Q4_K_M-00002-of-00002.gguf"]
    assert "snapshots" in folder
    store.delete("hf.co/org/split-gguf")
    assert not os.path.exists(folder) and store.blobs.all() == []


def test_long_listings_are_followed_page_by_page(store, hub):
    gguf_repo(hub)
    hub.page_size = 2
    pull(store, f"hf.co/{REPO}")
    assert len(hub.requests("/tree/")) > 2
    assert store.resolve(f"hf.co/{REPO}").info.quantization_level == "Q4_K_M"


def test_listings_that_name_paths_outside_the_folder_are_refused(store, hub):
    checkpoint_repo(hub)
    hub.extra_entries["Org/Tiny-Llava-HF"] = [{"type": "file", "path": "../../evil.json", "size": 2, "oid": "0" * 40}]
    with pytest.raises(InvalidRequest, match="would leave the model's folder"):
        pull(store, "hf.co/Org/Tiny-Llava-HF")


def test_offline_hub(store, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(Offline, match="create NAME --from PATH.*'builtin'"):
        pull(store, f"hf.co/{REPO}")


def test_hf_and_ollama_pulls_share_blobs(store, hub, registry):
    files = gguf_repo(hub)
    registry.add_model("tiny", "latest", [("model", files["tiny-vlm-Q4_K_M.gguf"]), ("projector", files["mmproj-tiny-vlm-F16.gguf"])])
    pull(store, f"hf.co/{REPO}")
    list(store.pull(f"{registry.host}/library/tiny", insecure=True))
    assert registry.requests("/cdn/") and all(registry.served[d] == 0 for d in store.stored(f"hf.co/{REPO}").digests)
    assert store.resolve(f"hf.co/{REPO}").files == store.resolve(f"{registry.host}/library/tiny").files


@pytest.mark.parametrize(
    "names, tag, model, projector",
    [
        (["ggml-model-q4_k.gguf", "ggml-model-q5_k.gguf", "mmproj-model-f16.gguf"], "latest", "ggml-model-q4_k.gguf", "mmproj-model-f16.gguf"),
        (["m-Q4_K_S.gguf", "m-Q4_K_M.gguf"], "latest", "m-Q4_K_M.gguf", None),
        (["m-Q4_K_M.gguf", "m-IQ4_XS.gguf", "mmproj-BF16.gguf", "mmproj-F32.gguf"], "IQ4_XS", "m-IQ4_XS.gguf", "mmproj-BF16.gguf"),
        (["only.gguf", "mmproj.gguf"], "latest", "only.gguf", "mmproj.gguf"),
        (["m-Q4_K_M.gguf", "m-Q4_K_M_L.gguf"], "Q4_K_M", "m-Q4_K_M.gguf", None),
    ],
)
def test_gguf_choice(names, tag, model, projector):
    files = [RepoFile(n, 1, "0" * 64, None) for n in names]
    chosen, proj, _ = pick_gguf(files, tag)
    assert [f.path for f in chosen] == [model]
    assert (proj.path if proj else None) == projector
