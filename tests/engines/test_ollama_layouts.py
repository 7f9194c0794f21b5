"""Ollama's published layouts, end to end: a tiny checkpoint converted by llama.cpp's own converter,
laid out as Ollama's library publishes it (imgscribe.testing.ollama_layouts), served by a fake Ollama
registry, pulled (and so translated) by imgscribe, then run by llama-server beside llama.cpp's own
conversion: the translated files hold the same tensors, and a request with a photo gets the same
greedy answer and the same prompt token count.

Without the binary these tests skip locally (with the reason) and fail in CI (CI=true).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import gguf_pair, live_server, llama_server_binary, ollama_chat, photo_b64  # noqa: E402
from store.fake_remotes import FakeRegistry  # noqa: E402

from imgscribe.formats.gguf import read_gguf  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.testing import ollama_layouts  # noqa: E402

#: family -> how Ollama's library publishes it (the layout the fixture imitates)
LAYOUTS = {
    "gemma3": "single file",
    "qwen2_5_vl": "single file",
    "mistral3": "single file",
    "llama4": "single file",
    "llava15": "model + projector without clip.projector_type",  # llava:7b-v1.5, bakllava
    "llava_next": "model + projector without clip.projector_type",  # llava:7b/13b/34b (1.6)
    "llava_phi3": "model + projector without clip.projector_type",
    "llava_llama3": "model whose EOS is <|end_of_text|> + projector",
}


@pytest.fixture(scope="module")
def binary() -> Path:
    return llama_server_binary()


def published(family: str, tmp: Path) -> list[tuple[str, bytes]]:
    model, mmproj = gguf_pair(family)
    if LAYOUTS[family] == "single file":
        blob = ollama_layouts.monolithic(family, model, mmproj, tmp / "blob.gguf", tokenizer_quirks=False)
        return [("model", blob.read_bytes())]
    if family in ("llava15", "llava_next", "llava_phi3"):
        return [("model", model.read_bytes()), ("projector", ollama_layouts.untyped_projector(mmproj, tmp / "p.gguf").read_bytes())]
    return [("model", ollama_layouts.llama3_end_of_text(model, tmp / "m.gguf").read_bytes()), ("projector", mmproj.read_bytes())]


def tensors(path: str | Path) -> dict[str, np.ndarray]:
    import gguf

    return {t.name: np.asarray(t.data) for t in gguf.GGUFReader(path).tensors}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(LAYOUTS))
def test_pulled_layout_runs_as_llama_cpps_own_conversion(family, binary, tmp_path):
    model, mmproj = gguf_pair(family)
    registry = FakeRegistry()
    try:
        manifest = registry.add_model("tiny", "latest", published(family, tmp_path))
        store = Store(tmp_path / "models")
        name = f"{registry.host}/library/tiny:latest"
        events = list(store.pull(name, insecure=True))
    finally:
        registry.close()
    assert events[-1]["status"] == "success"
    assert any(e["status"].startswith("translating ") for e in events)
    pulled = store.resolve(name)
    assert pulled.info.model_info["imgscribe.inspection"] == "translated"
    for layer in manifest["layers"]:
        assert registry.served[layer["digest"]] == layer["size"]  # each published layer fetched once

    # the same tensors as llama.cpp's own files, name for name and byte for byte
    for role, reference in (("model", model), ("projector", mmproj)):
        mine, theirs = tensors(pulled.files[role]), tensors(reference)
        assert sorted(mine) == sorted(theirs), role
        for tensor, data in theirs.items():
            assert mine[tensor].shape == data.shape and np.array_equal(mine[tensor], data), tensor
    if family == "llava_llama3":
        header = read_gguf(pulled.files["model"])
        eot = header.special_tokens["<|eot_id|>"]
        assert header.metadata["tokenizer.ggml.eos_token_id"] == eot == header.metadata["tokenizer.ggml.eot_token_id"]

    # through llama-server: the same greedy answer and prompt token count as llama.cpp's conversion
    store.create("reference", manifest_for_gguf("reference", model, mmproj))
    options = {"num_predict": 8, "temperature": 0, "seed": 1}
    with live_server(Scheduler(store, num_parallel=0)) as live:
        answers = {}
        for which in (name, "reference"):
            lines, _ = ollama_chat(live.url, which, "Describe this image.", photo_b64("chelsea"), options=options)
            final = lines[-1]
            assert final.get("done") is True, lines[-1]
            answers[which] = ("".join(line["message"]["content"] for line in lines), final["eval_count"],
                              final["prompt_eval_count"])  # fmt: skip
    assert answers[name] == answers["reference"]
    assert answers[name][2] > 20  # the image's tokens are in the prompt
