"""/api/tags says what loading each model needs and whether it fits the RAM free now (the web page's
Models tab shows it), from imgscribe.memory's estimate; models that need none say nothing."""

from __future__ import annotations

import httpx

from imgscribe.types import ModelInfo, ModelManifest


def _tags(server) -> dict[str, dict]:
    answer = httpx.get(server.url + "/api/tags", trust_env=False, timeout=30).json()
    return {m["name"]: m["imgscribe"] for m in answer["models"]}


def test_each_model_says_what_it_needs_and_whether_it_fits(server, store):
    for name, size in (("small-gguf", 2_000_000_000), ("huge-gguf", 9_000_000_000_000)):
        info = ModelInfo(name=name, engine="llamacpp", size=size, parameter_size="7B", quantization_level="Q4_K_M",
                         capabilities=["completion", "vision"])  # fmt: skip
        store.create(name, ModelManifest(name=name, engine="llamacpp", info=info))
    tags = _tags(server)
    small, huge = tags["small-gguf:latest"]["memory"], tags["huge-gguf:latest"]["memory"]
    assert small["needs"] > 2_000_000_000 and small["fits"] is True and small["available"] > 0
    assert huge["fits"] is False and huge["needs"] > small["needs"]
    assert "weights" in small["summary"] and "KV cache" in small["summary"]
    assert tags["builtin:latest"]["memory"] is None  # needs no estimate (a few hundred MB, always loadable)
