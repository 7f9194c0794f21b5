"""The catalog of known vision-language models (``catalog.json`` beside this file).

It answers "what is this model and what does it need?" for models that are not downloaded yet:
``imgscribe show NAME`` (through :func:`catalog_info`), the memory estimate (``memory.py``) and
``imgscribe recommend`` (``recommend.py``). The data file holds every number with its source; this
module only types it, indexes it and looks names up.

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
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ..types import ModelInfo

__all__ = [
    "Catalog",
    "CatalogModel",
    "Variant",
    "Match",
    "load",
    "lookup",
    "catalog_info",
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
            cached = _build_index(self)
            self.__dict__["_index_cache"] = cached
        return cached

    def lookup(self, name: str) -> Match | None:
        if not isinstance(name, str) or not name.strip():
            return None
        for key, quant in _candidate_keys(name):
            hit = self._index.get(key)
            if hit is not None:
                kind, variant_id = hit
                return Match(self.variant(variant_id), kind, quant, name)
        return None


@dataclass(frozen=True)
class Match:
    variant: Variant
    kind: str  # "ollama", "alias", "id", "hf-gguf", "hf-checkpoint", "family"
    quant: str | None  # a quantisation named in the request (an hf.co tag), else None
    query: str

    @property
    def ollama_tag(self) -> OllamaTag | None:
        """The Ollama tag asked for, when the query was one."""
        if self.kind != "ollama":
            return None
        key = _ollama_key(self.query)
        for tag in self.variant.ollama:
            if key in {tag.tag.lower(), *(t.lower() for t in tag.also)}:
                return tag
        return None

    @property
    def quantization(self) -> str:
        if self.quant:
            return self.quant
        if self.kind == "hf-checkpoint":
            return "BF16"  # a transformers checkpoint is loaded as it is published
        tag = self.ollama_tag
        if tag is not None:
            return tag.quant
        return self.variant.default_quant


def _norm_alias(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def _ollama_key(name: str) -> str | None:
    """``model:tag`` for names in Ollama's default library namespace, else None."""
    from .names import DEFAULT_HOST, DEFAULT_NAMESPACE, parse_name

    try:
        parsed = parse_name(name)
    except Exception:  # not a valid model name: not an Ollama tag
        return None
    if parsed.host != DEFAULT_HOST or parsed.namespace != DEFAULT_NAMESPACE:
        return None
    return f"{parsed.model}:{parsed.tag}".lower()


_HF_PREFIXES = ("https://", "http://", "huggingface.co/", "hf.co/", "www.huggingface.co/")


def _hf_key(name: str) -> tuple[str, str | None] | None:
    """``org/repo`` (lower case) and an optional ``:QUANT`` tag, for Hugging Face names."""
    text = name.strip()
    lowered = text.lower()
    stripped = True
    while stripped:
        stripped = False
        for prefix in _HF_PREFIXES:
            if lowered.startswith(prefix):
                text, lowered = text[len(prefix) :], lowered[len(prefix) :]
                stripped = True
    quant = None
    if ":" in text:
        text, quant = text.rsplit(":", 1)
        quant = quant.upper() if quant and quant.lower() != "latest" else None
    parts = [p for p in text.split("/") if p]
    if len(parts) < 2:
        return None
    return f"{parts[0]}/{parts[1]}".lower(), quant


def _candidate_keys(name: str) -> list[tuple[str, str | None]]:
    keys: list[tuple[str, str | None]] = []
    ollama = _ollama_key(name)
    if ollama:
        keys.append((f"ollama:{ollama}", None))
    hf = _hf_key(name)
    if hf:
        keys.append((f"hf:{hf[0]}", hf[1]))
    alias = _norm_alias(name)
    keys.append((f"alias:{alias}", None))
    if alias.endswith(":latest"):
        keys.append((f"alias:{alias[: -len(':latest')]}", None))
    return keys


def _build_index(catalog: Catalog) -> dict[str, tuple[str, str]]:
    index: dict[str, tuple[str, str]] = {}

    def add(key: str, kind: str, variant_id: str) -> None:
        previous = index.get(key)
        if previous is not None:
            if previous[1] != variant_id:
                raise ValueError(f"catalog.json: {key!r} names both {previous[1]} and {variant_id}")
            return  # the same variant twice (an id repeated as an alias): keep the first kind
        index[key] = (kind, variant_id)

    for model in catalog.models:
        for variant in model.variants:
            for tag in variant.ollama:
                for name in (tag.tag, *tag.also):
                    add(f"ollama:{name.lower()}", "ollama", variant.id)
            for kind, repo in (
                ("hf-checkpoint", variant.hf.checkpoint),
                ("hf-checkpoint", variant.hf.original),
                ("hf-gguf", variant.hf.gguf),
            ):
                if repo:
                    add(f"hf:{repo.lower()}", kind, variant.id)
            add(f"alias:{_norm_alias(variant.id)}", "id", variant.id)
            for alias in variant.aliases:
                add(f"alias:{_norm_alias(alias)}", "alias", variant.id)
    for model in catalog.models:  # families last: a variant alias wins over a family id
        key = f"alias:{_norm_alias(model.id)}"
        if key not in index:
            index[key] = ("family", model.default_variant)
    return index


@lru_cache(maxsize=1)
def load() -> Catalog:
    """The catalog shipped with the package (parsed once)."""
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    return Catalog.model_validate(json.loads(text))


def lookup(name: str) -> Match | None:
    """Find a catalog variant by Ollama tag, alias, catalog id, family id or HF repository."""
    return load().lookup(name)


# -- show ---------------------------------------------------------------------------------------


def _gb(value: float) -> str:
    return f"{value:.1f} GB" if value < 100 else f"{value:.0f} GB"


def describe(match: Match, catalog: Catalog | None = None) -> str:
    """The long text ``imgscribe show`` prints for a model that is not downloaded."""
    from .. import memory  # memory imports this module; import here to keep the order one-way

    catalog = catalog or load()
    v = match.variant
    m = v.family
    lines = [
        f"NOT DOWNLOADED - facts from imgscribe's catalog (as of {catalog.as_of}).",
        f"Get it with: imgscribe pull {v.pull_name}",
        "",
        f"{v.name}  [{m.name}, {m.org}, released {m.released}]",
        m.summary,
        "",
    ]
    source = catalog.sources.get(v.facts_source)
    params = f"{v.parameter_size} (text {v.text_params_b:g}B + vision {v.vision_params_b:g}B"
    params += ", vision size estimated)" if v.vision_params_estimate else ")"
    inputs = ["image"] + (["several images"] if m.inputs.multi_image else []) + (
        ["video (transformers)"] if m.inputs.video else []
    )
    facts = [
        ("parameters", params),
        ("context", f"{v.context_length:,} tokens"),
        ("inputs", ", ".join(inputs) + ("" if m.inputs.multi_image else "; one image per prompt")),
        ("licence", v.license or "-"),
        ("engines", ", ".join(v.run_engines)),
    ]
    if v.ollama:
        tags = []
        for tag in v.ollama:
            size = f", {tag.size_gb:g} GB" if tag.size_gb else ""
            also = f" (also {', '.join(tag.also)})" if tag.also else ""
            tags.append(f"{tag.tag}{also} [{tag.quant}{size}]")
        facts.append(("Ollama", "; ".join(tags)))
    else:
        facts.append(("Ollama", "not in the Ollama library"))
    repos = [f"{k} {r}" for k, r in (("checkpoint", v.hf.checkpoint), ("original", v.hf.original), ("GGUF", v.hf.gguf)) if r]
    facts.append(("Hugging Face", "; ".join(repos) or "-"))
    facts.append(("facts from", (source.title + f" [{source.checked}]") if source else v.facts_source))
    lines += [f"  {key:<13} {value}" for key, value in facts]

    ctx = min(memory.default_ctx(catalog), v.context_length)
    lines += ["", f"Memory needed (estimate, {ctx}-token context):"]
    asked = match.quantization
    rows = []
    if "llamacpp" in v.local_engines:
        first = [] if match.kind == "hf-checkpoint" else [asked]
        for quant in dict.fromkeys([*first, "Q4_K_M", "Q8_0", "F16"]):
            if "llamacpp" not in catalog.quantizations[quant].engines:
                continue
            est = memory.estimate(v, quant=quant, ctx=ctx, engine="llamacpp", catalog=catalog)
            mark = "  <- this name" if quant == asked else ""
            rows.append(f"  llama.cpp    {quant:<7} {est.summary()}{mark}")
    if "transformers" in v.local_engines:
        est = memory.estimate(v, quant="BF16", ctx=ctx, engine="transformers", catalog=catalog)
        mark = "  <- this name" if match.kind == "hf-checkpoint" else ""
        rows.append(f"  transformers BF16    {est.summary()}{mark}")
    if not rows:
        est = memory.estimate(v, quant="Q4_K_M", ctx=ctx, engine="llamacpp", catalog=catalog)
        rows.append(f"  no local engine; a 4-bit build would need {est.summary()}")
    lines += rows

    lines += ["", "Published scores (authors' own harness and FP16/BF16 weights; quantised GGUF scores lower):"]
    if v.scores:
        lines += [f"  {s.text(catalog.sources)}" for s in v.scores]
    else:
        lines.append("  none verified for this catalog")
    lines.append(f"  ranking basis: {m.quality_basis}")
    corrections = catalog.corrections_for(v)
    if corrections:
        lines += ["", "Where the founding survey is wrong about it:"]
        lines += [f"  - (survey section {c.section}) {c.claim} -> {c.correction}" for c in corrections]
    notes = m.limits + v.notes
    if m.superseded_by:
        notes.append(f"Superseded by {catalog.model(m.superseded_by).name}.")
    if notes:
        lines += ["", "Limits and notes:"] + [f"  - {n}" for n in notes]
    return "\n".join(lines)


def catalog_info(name: str) -> ModelInfo | None:
    """A :class:`ModelInfo` for a model that is known to the catalog but not downloaded, else None.

    The info says so three times: ``summary`` starts with "not downloaded", ``model_info``
    carries ``{"downloaded": False}`` and ``description`` opens with "NOT DOWNLOADED".
    """
    match = lookup(name)
    if match is None:
        return None
    catalog = load()
    v = match.variant
    m = v.family
    engine = v.local_engines[0] if v.local_engines else "remote"
    quant = match.quantization
    capabilities = ["completion", "vision"]
    return ModelInfo(
        name=name.strip(),
        engine=engine,
        family=m.family,
        families=list(m.families),
        parameter_size=v.parameter_size,
        quantization_level=quant,
        format="gguf" if engine == "llamacpp" else ("safetensors" if engine == "transformers" else ""),
        capabilities=capabilities,
        is_vlm=True,
        summary=f"{NOT_DOWNLOADED}: {v.name} ({m.org}); get it with 'imgscribe pull {v.pull_name}'",
        description=describe(match, catalog),
        context_length=v.context_length,
        size=0,
        license=v.license,
        model_info={
            "downloaded": False,
            "catalog_id": v.id,
            "catalog_family": m.id,
            "pull": v.pull_name,
            "inputs": m.inputs.model_dump(),
            "params_b": v.params_b,
            "scores": [s.model_dump() for s in v.scores],
        },
    )
