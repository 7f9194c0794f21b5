"""Registering Hugging Face folders: the importer's facts, its refusals, and ``imgscribe create``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_support import checkpoint  # noqa: E402

from imgscribe.engines.transformers import ENGINE, compat  # noqa: E402
from imgscribe.engines.transformers.families import format_parameters  # noqa: E402
from imgscribe.errors import InvalidRequest, Unsupported  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.importer import create_from_path  # noqa: E402


def test_manifest_facts_come_from_the_folder(tmp_path):
    import torch
    from safetensors.torch import load_file

    path = checkpoint("qwen2_vl")
    info = create_from_path(Store(tmp_path), "tiny-qwen", path)
    manifest = Store(tmp_path).resolve("tiny-qwen")
    weights = load_file(path / "model.safetensors")
    params = sum(t.numel() for t in weights.values())
    assert manifest.engine == "transformers" and manifest.files == {"model": str(path.resolve())}
    assert info.name == "tiny-qwen:latest" and info.family == "qwen2vl" and info.families[0] == "qwen2vl"
    assert info.capabilities == ["completion", "vision"] and info.is_vlm
    assert info.parameter_size == format_parameters(params) and info.model_info["general.parameter_count"] == params
    assert info.quantization_level == "F32" and info.format == "safetensors"
    config = json.loads((path / "config.json").read_text())
    assert info.context_length == config["text_config"]["max_position_embeddings"]
    assert info.size >= (path / "model.safetensors").stat().st_size
    assert len(info.digest) == 64 and int(info.digest, 16) >= 0
    assert Store(tmp_path).resolve("tiny-qwen").info.digest == info.digest
    assert all(isinstance(w, torch.Tensor) for w in weights.values())


def test_digest_follows_the_weights(tmp_path):
    a = tmp_path / "a"
    shutil.copytree(checkpoint("gemma3"), a)
    store = Store(tmp_path / "store")
    first = create_from_path(store, "a", a).digest
    assert create_from_path(store, "a2", a).digest == first
    data = bytearray((a / "model.safetensors").read_bytes())
    data[-8:] = bytes(8)  # change the last weights
    (a / "model.safetensors").write_bytes(bytes(data))
    assert create_from_path(store, "a3", a).digest != first


def test_parameter_sizes_read_like_ollamas():
    assert format_parameters(7_241_732_096) == "7.2B"
    assert format_parameters(494_032_768) == "494.03M"
    assert format_parameters(262_848) == "262.85K"


def test_refusals_are_clear(tmp_path):
    store = Store(tmp_path / "store")
    with pytest.raises(InvalidRequest, match="no such file"):
        create_from_path(store, "x", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidRequest, match="not a model imgscribe can import"):
        create_from_path(store, "x", empty)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(InvalidRequest, match=r"BertModel.*supported architectures: .*Qwen2VLForConditionalGeneration"):
        create_from_path(store, "x", bert)
    with pytest.raises(InvalidRequest, match="mmproj"):
        create_from_path(store, "x", checkpoint("gemma3"), mmproj=tmp_path / "p.gguf")
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    shutil.copy(checkpoint("gemma3") / "config.json", noweights)
    with pytest.raises(InvalidRequest, match="no weights"):
        create_from_path(store, "x", noweights)
    assert [i.name for i in store.list()] == ["builtin:latest"]


def test_gguf_goes_to_the_llamacpp_import(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(20))  # a GGUF magic and nothing sensible after it
    with pytest.raises(InvalidRequest) as err:
        create_from_path(Store(tmp_path / "store"), "g", fake)
    assert "GGUF" in str(err.value) or "gguf" in str(err.value)


def test_torchvision_families_say_what_they_need(tmp_path, monkeypatch):
    from imgscribe.store.importer import describe_hf_folder

    folder = tmp_path / "llama4"
    folder.mkdir()
    config = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
              "text_config": {"max_position_embeddings": 8192}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(checkpoint("gemma3") / "model.safetensors", folder)  # any weights: only the header is read
    manifest = describe_hf_folder(folder)
    assert manifest.info.family == "llama4" and "torchvision" in manifest.info.description
    monkeypatch.setattr(compat, "has_torchvision", lambda: False)
    with pytest.raises(Unsupported, match="torchvision"):
        ENGINE.load(manifest)


def test_cli_create_registers_the_folder(tmp_path, capsys):
    import imgscribe.cli.create  # noqa: F401  (adds the command)
    from imgscribe.cli import main

    path = checkpoint("idefics3")
    assert main(["create", "tiny-idefics", "--from", str(path)]) == 0
    out = capsys.readouterr().out
    assert "created tiny-idefics:latest (transformers: idefics3" in out
    assert Store().resolve("tiny-idefics").files["model"] == str(path.resolve())
    assert main(["create", "broken", "--from", str(tmp_path / "nothing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
