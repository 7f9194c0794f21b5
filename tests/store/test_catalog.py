"""The catalog of known models: it loads, every number has a source, names find the right model."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from imgscribe import memory
from imgscribe.store import catalog
from imgscribe.cli.catalog_show import catalog_info
from imgscribe.store.catalog import NOT_DOWNLOADED, load, lookup
from imgscribe.types import ModelInfo


@pytest.fixture(scope="module")
def cat():
    return load()


def test_catalog_file_is_package_data_and_valid_json():
    text = resources.files("imgscribe.store").joinpath("catalog.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert load() is load()  # parsed once


# -- every model the survey names, plus small modern ones ----------------------------------------

SURVEY_MODELS = {
    "LLaVA 1.5 7B": "llava-1.5-7b",
    "LLaVA 1.5 13B": "llava-1.5-13b",
    "llava:7b": "llava-1.6-mistral-7b",
    "llava:13b": "llava-1.6-vicuna-13b",
    "llava:34b": "llava-1.6-34b",
    "llava-llama3": "llava-llama3-8b",
    "llava-phi3": "llava-phi3-3.8b",
    "LLaVA-OneVision": "llava-onevision-7b",
    "Qwen2-VL 7B": "qwen2-vl-7b",
    "Qwen2-VL 72B": "qwen2-vl-72b",
    "Qwen2.5-VL": "qwen2.5-vl-7b",
    "Gemma 3": "gemma-3-4b",
    "Phi-4-multimodal": "phi-4-multimodal",
    "Pixtral 12B": "pixtral-12b",
    "Pixtral Large": "pixtral-large-2411",
    "Llama 4 Scout": "llama4-scout",
    "Janus-Pro": "janus-pro-7b",
    "SmolVLM": "smolvlm-2.2b",
    "moondream": "moondream2",
}


@pytest.mark.parametrize("name,variant_id", SURVEY_MODELS.items())
def test_every_named_model_is_in_the_catalog(name, variant_id):
    match = lookup(name)
    assert match is not None, name
    assert match.variant.id == variant_id


def test_each_variant_has_the_facts_the_issue_asks_for(cat):
    for v in cat.variants():
        assert v.params_b > 0 and v.text_params_b > 0 and v.vision_params_b > 0, v.id
        assert v.params_b >= v.text_params_b, v.id
        assert v.context_length >= 2048, v.id
        assert v.license, v.id
        assert v.run_engines, v.id
        assert v.hf.checkpoint or v.hf.gguf or v.hf.original, v.id
        assert v.arch is not None, f"{v.id}: layers / KV heads / head size needed for the KV estimate"
        assert isinstance(v.inputs.video, bool)
        assert 0 <= v.quality <= 100
        assert v.pull_name


def test_every_number_has_a_known_source(cat):
    for v in cat.variants():
        assert v.facts_source in cat.sources
        for tag in v.ollama:
            assert tag.source in cat.sources
        if v.hf.gguf:
            assert v.hf.gguf_source in cat.sources, v.id
        for score in v.scores:
            assert score.source in cat.sources
    for quant in cat.quantizations.values():
        assert quant.source  # "exact", a source key or "estimate: ..."
    for entry in cat.history:
        assert all(s.source in cat.sources for s in entry.scores)


def test_benchmark_scores_only_come_from_checked_sources(cat):
    """No score rests on memory alone: each comes from eval.md's anchors (or was read)."""
    for v in cat.variants():
        for score in v.scores:
            checked = cat.sources[score.source].checked
            assert checked in ("via eval-notes", "read"), (v.id, score.benchmark, checked)


def test_published_anchor_values_match_eval_notes(cat):
    """Spot checks against shared/notes/eval.md section 4."""
    def value(variant_id, benchmark):
        return next(s.value for s in cat.variant(variant_id).scores if s.benchmark.startswith(benchmark))

    assert value("llava-1.5-7b", "VQAv2") == 78.5
    assert value("llava-1.5-13b", "MM-Vet") == 36.1
    assert value("llava-1.6-34b", "MMMU") == 51.1
    assert value("llava-1.6-mistral-7b", "DocVQA") == 72.2
    assert value("qwen2-vl-7b", "DocVQA") == 94.5
    assert value("qwen2-vl-2b", "MathVista") == 43.0
    assert value("smolvlm-2.2b", "DocVQA") == 81.6
    assert value("moondream2", "VQAv2") == 80.3
    assert value("pixtral-12b", "MMMU") == 52.5


def test_models_without_a_verified_score_carry_none(cat):
    for variant_id in ("llava-onevision-72b", "gemma-3-27b", "phi-4-multimodal", "janus-pro-7b", "pixtral-large-2411"):
        assert cat.variant(variant_id).scores == []


def test_qwen2_vl_72b_and_llama4_scout_carry_their_publishers_scores(cat):
    """Qwen2-VL README (72B column) and the Llama 4 model card (instruction-tuned Scout), both re-read."""
    expected = {
        "qwen2-vl-72b": {"MMMU val": 64.5, "DocVQA test (ANLS)": 96.5, "OCRBench": 877, "MathVista mini": 70.5},
        "llama4-scout": {"MMMU": 69.4, "DocVQA test (ANLS)": 94.4, "ChartQA (relaxed accuracy)": 88.8, "MathVista": 70.7},
    }
    for variant_id, values in expected.items():
        scores = cat.variant(variant_id).scores
        assert scores, variant_id
        for score in scores:
            assert score.source in cat.sources, (variant_id, score.source)
            assert cat.sources[score.source].checked == "read", (variant_id, score.source)
        by_benchmark = {s.benchmark: s.value for s in scores}
        for benchmark, value in values.items():
            assert by_benchmark[benchmark] == value, (variant_id, benchmark)
    assert {s.source for s in cat.variant("qwen2-vl-72b").scores} == {"qwen2-vl-readme"}
    assert {s.source for s in cat.variant("llama4-scout").scores} == {"llama4-card"}


# -- the survey's mistakes -------------------------------------------------------------------------


def test_85_1_percent_belongs_to_the_original_llava(cat):
    correction = next(c for c in cat.survey.corrections if c.id == "llava-85.1")
    assert "ORIGINAL LLaVA" in correction.correction
    assert "2304.08485" in correction.correction
    assert "llava-v1-paper" in correction.sources
    # the number lives on the original LLaVA, never on a LLaVA-1.5/1.6 variant
    original = next(h for h in cat.history if h.id == "llava-v1")
    assert any(s.value == 85.1 and s.source == "llava-v1-paper" for s in original.scores)
    for v in cat.variants():
        assert all(s.value != 85.1 for s in v.scores), v.id


def test_show_of_llava_states_the_85_1_correction():
    for name in ("llava:7b-v1.5-q4_0", "llava"):
        text = catalog_info(name).description
        assert "85.1%" in text and "ORIGINAL LLaVA" in text


def test_other_corrections(cat):
    by_id = {c.id: c for c in cat.survey.corrections}
    assert not cat.variant("gemma-3-4b").inputs.video and "gemma-3" in by_id["gemma3-video"].applies_to
    scout = cat.variant("llama4-scout")
    assert scout.active_params_b == 17.0 and scout.params_b > 100
    assert "llama4" in by_id["llama4-scout-17b"].applies_to
    qwen72 = by_id["qwen2-vl-72b-scores"]
    assert "qwen2-vl-72b" in qwen72.applies_to and "qwen2-vl-readme" in qwen72.sources
    assert "64.5" in qwen72.correction  # what Qwen reports, against the survey's 54.4
    assert "no score for LLaVA-OneVision-72B" in qwen72.correction


def test_survey_recommendations_are_data_with_our_view(cat):
    recs = cat.survey.recommendations
    assert [p.variant for p in recs["performance"]] == ["pixtral-large-2411", "qwen2-vl-72b", "llama4-scout"]
    assert [p.variant for p in recs["balanced"]] == ["qwen2-vl-7b", "llava-1.6-vicuna-13b", "phi-4-multimodal"]
    assert [p.variant for p in recs["ease"]] == ["llava-1.6-mistral-7b", "llava-llama3-8b", "gemma-3-4b"]
    for picks in recs.values():
        assert all(p.our_view and p.survey_reason for p in picks)
    assert [r.ram_gb for r in cat.survey.system_requirements] == [8, 16, 32]


# -- lookups -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,variant_id,kind,quant",
    [
        ("llava", "llava-1.6-mistral-7b", "ollama", "Q4_0"),  # Ollama's latest is 7b
        ("llava:latest", "llava-1.6-mistral-7b", "ollama", "Q4_0"),
        ("LLaVA:7B", "llava-1.6-mistral-7b", "ollama", "Q4_0"),
        ("llava:13b", "llava-1.6-vicuna-13b", "ollama", "Q4_0"),
        ("llava:34b-v1.6-q4_0", "llava-1.6-34b", "ollama", "Q4_0"),
        ("registry.ollama.ai/library/llava:7b", "llava-1.6-mistral-7b", "ollama", "Q4_0"),
        ("llava:7b-v1.5-q4_0", "llava-1.5-7b", "ollama", "Q4_0"),
        ("gemma3", "gemma-3-4b", "ollama", "Q4_K_M"),
        ("qwen2.5vl:32b", "qwen2.5-vl-32b", "ollama", "Q4_K_M"),
        ("llama4:scout", "llama4-scout", "ollama", "Q4_K_M"),
        ("moondream", "moondream2", "ollama", "Q4_0"),
        ("hf.co/ggml-org/gemma-3-4b-it-GGUF:Q8_0", "gemma-3-4b", "hf-gguf", "Q8_0"),
        ("hf.co/ggml-org/gemma-3-4b-it-GGUF", "gemma-3-4b", "hf-gguf", "Q4_K_M"),
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl-7b", "hf-checkpoint", "BF16"),
        ("https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl-7b", "hf-checkpoint", "BF16"),
        ("liuhaotian/llava-v1.5-13b", "llava-1.5-13b", "hf-checkpoint", "BF16"),
        ("qwen2.5-vl", "qwen2.5-vl-7b", "alias", "Q4_K_M"),
        ("Pixtral Large", "pixtral-large-2411", "alias", "Q4_K_M"),
        ("phi-4-multimodal", "phi-4-multimodal", "id", "BF16"),
        ("llava-onevision-72b", "llava-onevision-72b", "id", "BF16"),
        ("janus-pro", "janus-pro-7b", "alias", "BF16"),
        ("gemma-3", "gemma-3-4b", "alias", "Q4_K_M"),
    ],
)
def test_lookup(name, variant_id, kind, quant):
    match = lookup(name)
    assert match is not None, name
    assert (match.variant.id, match.kind, match.quantization) == (variant_id, kind, quant)


@pytest.mark.parametrize("name", ["", "   ", "nothing-like-this", "someone/llava:7b", "llava:99b", "../etc/passwd"])
def test_lookup_misses(name):
    assert lookup(name) is None


def test_family_id_finds_the_default_variant(cat):
    for model in cat.models:
        match = lookup(model.id)
        assert match is not None and match.variant.id == model.default_variant


def test_no_name_is_claimed_twice(cat):
    # the index refuses collisions when built; building it again on a fresh object must succeed
    fresh = catalog.Catalog.model_validate(json.loads(resources.files("imgscribe.store").joinpath("catalog.json").read_text()))
    assert fresh.lookup("llava").variant.id == "llava-1.6-mistral-7b"


def test_pull_names(cat):
    assert cat.variant("llava-1.6-vicuna-13b").pull_name == "llava:13b"
    assert cat.variant("gemma-3-4b").pull_name == "hf.co/ggml-org/gemma-3-4b-it-GGUF"
    assert cat.variant("phi-4-multimodal").pull_name == "hf.co/microsoft/Phi-4-multimodal-instruct"
    assert "gemma3:4b" in cat.variant("gemma-3-4b").pull_names()


def test_ollama_download_sizes_agree_with_the_memory_model(cat):
    """Weights + projector from params x bits should land near Ollama's published download sizes."""
    checked = 0
    for v in cat.variants():
        for tag in v.ollama:
            if tag.size_gb:
                est = memory.estimate(v, quant=tag.quant, engine="llamacpp")
                on_disk = (est.weights + est.vision) / memory.GB
                assert abs(on_disk - tag.size_gb) / tag.size_gb < 0.12, (tag.tag, on_disk, tag.size_gb)
                checked += 1
    assert checked >= 12


# -- show for models not yet pulled ------------------------------------------------------------------


def test_catalog_info_for_a_model_not_downloaded():
    info = catalog_info("llava:13b")
    assert isinstance(info, ModelInfo)
    assert info.name == "llava:13b"
    assert info.summary.startswith(NOT_DOWNLOADED)
    assert info.description.startswith("NOT DOWNLOADED")
    assert info.model_info["downloaded"] is False
    assert info.size == 0
    assert info.engine == "llamacpp" and info.quantization_level == "Q4_0"
    assert info.context_length == 4096 and info.vision and info.is_vlm
    assert info.license.startswith("Llama 2")
    text = info.description
    for needle in ("imgscribe pull llava:13b", "13.35B", "llava-hf/llava-v1.6-vicuna-13b-hf", "MMMU 36.2", "Memory needed", "KV cache"):
        assert needle in text, needle


def test_catalog_info_variants():
    assert catalog_info("no-such-model") is None
    info = catalog_info("Qwen/Qwen2.5-VL-7B-Instruct")
    assert info.quantization_level == "BF16" and info.model_info["inputs"]["video"] is True
    large = catalog_info("pixtral-large")
    assert large.engine == "remote" and "no local engine" in large.description
    assert "Mistral Research License" in large.license
    scout = catalog_info("llama4:scout")
    assert "17B active" in scout.parameter_size
