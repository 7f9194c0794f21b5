"""The catalog of known vision-language models (``catalog.json`` beside this file).

It answers "what is this model and what does it need?" for models that are not downloaded yet:
``imgscribe show NAME`` (``cli/catalog_show.py`` writes its text), the memory estimate
(``memory.py``) and ``imgscribe recommend`` (``recommend.py``). The data file holds every number
with its source; this module types and checks it, ``catalog_lookup.py`` finds names in it.

Names that find a model (case-insensitive)::

    lookup("llava")                      # Ollama's llava:latest, which is llava:7b (LLaVA 1.6 Mistral 7B)
    lookup("llava:13b")                  # an Ollama tag
    lookup("qwen2.5-vl-7b")              # a catalog id or alias
    lookup("Qwen/Qwen2.5-VL-7B-Instruct")  # a Hugging Face checkpoint ...
    lookup("hf.co/ggml-org/gemma-3-4b-it-GGUF:Q4_K_M")  # ... or GGUF repository, with a quantisation
    lookup("qwen2.5-vl")                 # a family: its default variant
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .catalog_lookup import Match, build_index, candidate_keys

__all__ = [
    "Catalog",
    "CatalogModel",
    "Variant",
    "Match",
    "load",
    "lookup",
    "NOT_DOWNLOADED",
]

Engine = Literal["llamacpp", "transformers", "remote"]
Task = Literal["describe", "ocr", "documents", "video", "multi-image"]
Priority = Literal["performance", "balanced", "ease"]

#: Marks a ModelInfo built from the catalog rather than from a downloaded model.
NOT_DOWNLOADED = "not downloaded"

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Source(BaseModel):
    model_config = _STRICT
    title: str
    url: str = ""
    checked: str  # "read", "via eval-notes", "recalled", ...


class Quantization(BaseModel):
    model_config = _STRICT
    bits_per_weight: float
    engines: list[Engine]
    source: str


class Score(BaseModel):
    model_config = _STRICT
    benchmark: str
    value: float
    source: str  # a key of Catalog.sources
    unit: str = ""
    note: str = ""

    def text(self, sources: dict[str, Source] | None = None) -> str:
        value = f"{self.value:g}{self.unit}"
        where = self.source
        if sources and self.source in sources:
            where = sources[self.source].title.split(" (")[0].split(",")[0]
        note = f"; {self.note}" if self.note else ""
        return f"{self.benchmark} {value} ({where}{note})"


class OllamaTag(BaseModel):
    model_config = _STRICT
    tag: str
    also: list[str] = Field(default_factory=list)
    quant: str
    size_gb: float | None = None  # download size shown on ollama.com
    source: str


class HFRepos(BaseModel):
    model_config = _STRICT
    checkpoint: str | None = None  # transformers format
    original: str | None = None  # the authors' own format, when different
    gguf: str | None = None  # GGUF + mmproj, llama.cpp-ready
    gguf_source: str | None = None


class Arch(BaseModel):
    """What the KV cache depends on (text decoder only)."""

    model_config = _STRICT
    layers: int
    kv_heads: int
    head_dim: int
    sliding_window: int | None = None  # local-attention window of the local layers
    global_every: int | None = None  # one global layer in every N (Gemma 3: 6)


class Inputs(BaseModel):
    model_config = _STRICT
    image: bool = True
    multi_image: bool = False
    video: bool = False


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    params_b: float
    text_params_b: float
    vision_params_b: float
    active_params_b: float | None = None  # mixture-of-experts: parameters used per token
    vision_params_estimate: bool = False
    context_length: int
    arch: Arch | None = None
    facts_source: str
    license: str = ""
    ollama: list[OllamaTag] = Field(default_factory=list)
    hf: HFRepos = Field(default_factory=HFRepos)
    engines: list[Engine] | None = None  # overrides the model's list
    aliases: list[str] = Field(default_factory=list)
    pull: str | None = None  # the name to pull; derived when absent (see pull_name)
    default_quant: str
    quality: int = Field(ge=0, le=100)
    scores: list[Score] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    _family: CatalogModel | None = PrivateAttr(default=None)  # set when the family is validated

    @property
    def family(self) -> CatalogModel:
        assert self._family is not None, "a Variant is used through its CatalogModel"
        return self._family

    @property
    def run_engines(self) -> list[str]:
        return list(self.engines if self.engines is not None else self.family.engines)

    @property
    def inputs(self) -> Inputs:
        return self.family.inputs

    @property
    def in_ollama_library(self) -> bool:
        return bool(self.ollama)

    @property
    def local_engines(self) -> list[str]:
        """Engines that run it on this machine, in the order imgscribe prefers them."""
        engines = []
        if "llamacpp" in self.run_engines and (self.hf.gguf or self.ollama):
            engines.append("llamacpp")
        if "transformers" in self.run_engines and self.hf.checkpoint:
            engines.append("transformers")
        return engines

    @property
    def pull_name(self) -> str:
        """What to give ``imgscribe pull``.

        The explicit ``pull`` of the catalog, else a llama.cpp-ready GGUF repository (GGUF + mmproj;
        Ollama's newer vision models pack the projector into one file that llama.cpp may not read),
        else the Ollama tag, else the transformers checkpoint.
        """
        if self.pull:
            return self.pull
        if self.hf.gguf and "llamacpp" in self.run_engines:
            return f"hf.co/{self.hf.gguf}"
        if self.ollama:
            return self.ollama[0].tag
        if self.hf.checkpoint:
            return f"hf.co/{self.hf.checkpoint}"
        return self.id

    def pull_names(self) -> list[str]:
        """Every name this variant can be pulled by, preferred first."""
        names = [self.pull_name]
        if self.hf.gguf:
            names.append(f"hf.co/{self.hf.gguf}")
        names += [t.tag for t in self.ollama]
        if self.hf.checkpoint:
            names.append(f"hf.co/{self.hf.checkpoint}")
        return list(dict.fromkeys(names))

    def quality_for(self, task: str) -> int:
        return self.quality + self.family.task_adjust.get(task, 0)

    def supports(self, task: str) -> bool:
        if task == "video":
            return self.inputs.video
        if task == "multi-image":
            return self.inputs.multi_image
        return self.inputs.image

    @property
    def parameter_size(self) -> str:
        if self.active_params_b:
            return f"{self.params_b:g}B ({self.active_params_b:g}B active)"
        return f"{self.params_b:g}B"


class CatalogModel(BaseModel):
    """A model family: what its variants share."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    org: str
    released: str
    family: str
    families: list[str]
    inputs: Inputs
    engines: list[Engine]
    summary: str
    limits: list[str] = Field(default_factory=list)
    task_adjust: dict[str, int] = Field(default_factory=dict)
    quality_basis: str
    superseded_by: str | None = None
    survey_names: list[str] = Field(default_factory=list)
    default_variant: str
    variants: list[Variant]

    @model_validator(mode="after")
    def _link(self) -> CatalogModel:
        for variant in self.variants:
            variant._family = self
        if self.default_variant not in {v.id for v in self.variants}:
            raise ValueError(f"{self.id}: default_variant {self.default_variant!r} is not a variant")
        return self


class SurveyPick(BaseModel):
    model_config = _STRICT
    rank: int
    name: str
    variant: str
    survey_reason: str
    our_view: str


class SurveyRequirement(BaseModel):
    model_config = _STRICT
    params: str
    ram_gb: float
    variant: str
    text: str


class Correction(BaseModel):
    model_config = _STRICT
    id: str
    section: str
    claim: str
    correction: str
    sources: list[str]
    applies_to: list[str]


class Survey(BaseModel):
    model_config = _STRICT
    source: str
    system_requirements: list[SurveyRequirement]
    system_requirements_view: str
    recommendations: dict[Priority, list[SurveyPick]]
    corrections: list[Correction]


class Tier(BaseModel):
    model_config = _STRICT
    id: str
    label: str
    ram_gb: float
    vram_gb: float
    survey_section: str


class HistoryEntry(BaseModel):
    model_config = _STRICT
    id: str
    name: str
    released: str
    note: str
    scores: list[Score]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int
    as_of: str
    about: str
    sources: dict[str, Source]
    quantizations: dict[str, Quantization]
    policy: dict[str, Any]
    tiers: list[Tier]
    survey: Survey
    models: list[CatalogModel]
    history: list[HistoryEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        problems = []
        known = set(self.sources)
        ids = [v.id for v in self.variants()]
        if len(ids) != len(set(ids)):
            problems.append("duplicate variant ids")
        for variant in self.variants():
            for score in variant.scores:
                if score.source not in known:
                    problems.append(f"{variant.id}: score source {score.source!r} unknown")
            if variant.facts_source not in known:
                problems.append(f"{variant.id}: facts_source {variant.facts_source!r} unknown")
            if variant.default_quant not in self.quantizations:
                problems.append(f"{variant.id}: default_quant {variant.default_quant!r} unknown")
            for tag in variant.ollama:
                if tag.source not in known or tag.quant not in self.quantizations:
                    problems.append(f"{variant.id}: ollama tag {tag.tag} source/quant unknown")
        for picks in self.survey.recommendations.values():
            problems += [f"survey pick {p.variant!r} unknown" for p in picks if p.variant not in ids]
        problems += [
            f"survey requirement {r.variant!r} unknown"
            for r in self.survey.system_requirements
            if r.variant not in ids
        ]
        targets = set(ids) | {m.id for m in self.models}
        for correction in self.survey.corrections:
            problems += [f"correction {correction.id}: {t!r} unknown" for t in correction.applies_to if t not in targets]
            problems += [f"correction {correction.id}: source {s!r} unknown" for s in correction.sources if s not in known]
        if problems:
            raise ValueError("catalog.json: " + "; ".join(problems))
        return self

    def variants(self) -> list[Variant]:
        return [v for m in self.models for v in m.variants]

    def variant(self, variant_id: str) -> Variant:
        for variant in self.variants():
            if variant.id == variant_id:
                return variant
        raise KeyError(variant_id)

    def model(self, model_id: str) -> CatalogModel:
        for model in self.models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)

    def corrections_for(self, variant: Variant) -> list[Correction]:
        """Survey corrections about this variant (``applies_to`` names families or variants)."""
        return [c for c in self.survey.corrections if {variant.family.id, variant.id} & set(c.applies_to)]

    def bits_per_weight(self, quant: str) -> float:
        key = quant.upper()
        if key not in self.quantizations:
            raise KeyError(f"unknown quantisation {quant!r}; known: {', '.join(self.quantizations)}")
        return self.quantizations[key].bits_per_weight

    # -- lookup -------------------------------------------------------------------------------

    @property
    def _index(self) -> dict[str, tuple[str, str]]:
        """normalised name -> (kind, variant id). Built once per catalog object."""
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = build_index(self)
            self.__dict__["_index_cache"] = cached
        return cached

    def lookup(self, name: str) -> Match | None:
        if not isinstance(name, str) or not name.strip():
            return None
        for key, quant in candidate_keys(name):
            hit = self._index.get(key)
            if hit is not None:
                kind, variant_id = hit
                return Match(self.variant(variant_id), kind, quant, name)
        return None


@lru_cache(maxsize=1)
def load() -> Catalog:
    """The catalog shipped with the package (parsed once)."""
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    return Catalog.model_validate(json.loads(text))


def lookup(name: str) -> Match | None:
    """Find a catalog variant by Ollama tag, alias, catalog id, family id or HF repository."""
    return load().lookup(name)
