"""The text ``imgscribe show`` prints for a model known to the catalog but not downloaded."""

from __future__ import annotations

from .. import memory
from ..store.catalog import NOT_DOWNLOADED, Catalog, Match, load, lookup
from ..types import ModelInfo


def _gb(value: float) -> str:
    return f"{value:.1f} GB" if value < 100 else f"{value:.0f} GB"


def describe(match: Match, catalog: Catalog | None = None) -> str:
    """The long text ``imgscribe show`` prints for a model that is not downloaded."""
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
