"""Which catalog model to use on this machine, and why (``imgscribe recommend``).

For every catalog variant that can do the task, it plans how the variant would run here: the
engine (llama.cpp with a GGUF first, else transformers; video needs transformers), the
quantisation, the memory estimate (``memory.py``) and where it would sit: on the GPU, split between
GPU and RAM (llama.cpp offloads layers), or in RAM. Variants that fit are ranked by priority:

- ``performance``: the quality index for the task, nothing else (a model must still reach
  ``policy.ranking.min_tok_s.performance`` tokens/s to be usable at all);
- ``balanced``: quality plus ``speed_weight x log2(speed / target speed)`` (capped), minus a
  penalty when the model would take more than ``tight_fraction`` of the memory;
- ``ease``: quality plus bonuses for one-command llama.cpp models and the Ollama library, minus a
  penalty for transformers-only models and for big downloads, plus a smaller speed term.

Quality = the variant's editorial ``quality`` index + the family's ``task_adjust`` for the task
(both in ``catalog.json``, with the published scores they rest on). How a variant would run and
its expected speed are planned in :mod:`.plan`; the ranking, its reasons and the survey's own
recommendations are here.

No hardware number is written here: reserves, bandwidths, weights of the ranking and the survey's
own recommendations all come from ``store/catalog.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..hardware import Hardware
from ..memory import GB, gb
from ..store.catalog import Catalog, Variant, load
from .plan import Budget, Plan, budget_for, plan_variant

__all__ = [
    "PRIORITIES",
    "TASKS",
    "Budget",
    "Plan",
    "Pick",
    "SurveyLine",
    "Recommendation",
    "budget_for",
    "plan_variant",
    "recommend",
]

PRIORITIES = ("performance", "balanced", "ease")
TASKS = ("describe", "ocr", "documents", "video", "multi-image")

#: Which published benchmarks to quote first for a task (substrings of the benchmark names).
_TASK_BENCHMARKS = {
    "describe": ("MMMU", "MMBench", "POPE", "MM-Vet", "VQAv2"),
    "ocr": ("TextVQA", "OCRBench", "DocVQA"),
    "documents": ("DocVQA", "InfoVQA", "ChartQA", "TextVQA"),
    "video": ("MMMU", "MMBench"),
    "multi-image": ("MMMU", "MMBench", "MMStar"),
}


@dataclass
class Pick:
    rank: int
    plan: Plan
    score: float
    quality: int
    why: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = self.plan.to_dict()
        data.update(rank=self.rank, score=round(self.score, 1), quality=self.quality, why=self.why)
        data["scores"] = [s.model_dump() for s in self.plan.variant.scores]
        return data


@dataclass
class SurveyLine:
    """One of the survey's recommendations, checked against this machine and our ranking."""

    section: str
    name: str
    variant_id: str
    #: 2.3: "agrees" / "differs"; 4: "agrees" (our #1), "also-picked" (in our list), "ranked-lower",
    #: "too-slow", "does-not-fit", "not-local" (remote only), "wrong-task"
    status: str
    detail: str
    our_view: str = ""
    our_rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Recommendation:
    hardware: Hardware
    budget: Budget
    priority: str
    task: str
    picks: list[Pick]
    plans: list[Plan]  # every candidate, ranked or not
    survey: list[SurveyLine]
    tier: str | None
    notes: list[str]
    summary: str = ""

    @property
    def unfit(self) -> list[Plan]:
        return [p for p in self.plans if not p.fits]

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "task": self.task,
            "hardware": self.hardware.to_dict(),
            "budget": self.budget.to_dict(),
            "tier": self.tier,
            "picks": [p.to_dict() for p in self.picks],
            "not_fitting": [
                {"id": p.variant.id, "name": p.variant.name, "needs_gb": round(p.estimate.total / GB, 2), "problem": p.problem}
                for p in sorted(self.unfit, key=lambda p: -p.variant.quality)
            ],
            "survey": [s.to_dict() for s in self.survey],
            "summary": self.summary,
            "notes": self.notes,
        }


def _score(plan: Plan, priority: str, task: str, policy: dict[str, Any]) -> tuple[float, int]:
    ranking = policy["ranking"]
    v = plan.variant
    quality = v.quality_for(task)
    score = float(quality)
    target, cap = ranking["speed_target_tok_s"], ranking["speed_cap_tok_s"]
    weight = ranking["speed_weight"][priority]
    if weight:
        score += weight * math.log2(min(max(plan.tok_s, 0.01), cap) / target)
    if plan.estimate.total > ranking["tight_fraction"] * plan.budget:
        score -= ranking["tight_penalty"][priority]
    if priority == "ease":
        ease = ranking["ease"]
        if plan.engine == "llamacpp":
            score += ease["one_command_gguf"]
        if v.in_ollama_library:
            score += ease["ollama_library"]
        if plan.engine == "transformers":
            score += ease["transformers_only"]
        score += ease["per_download_gb"] * (plan.estimate.weights + plan.estimate.vision) / GB
    return score, quality


def _key_scores(variant: Variant, task: str, catalog: Catalog, limit: int = 3) -> list[str]:
    chosen = []
    for wanted in _TASK_BENCHMARKS.get(task, ()):
        for score in variant.scores:
            if wanted.lower() in score.benchmark.lower() and score not in chosen:
                chosen.append(score)
                break
        if len(chosen) >= limit:
            break
    return [s.text(catalog.sources) for s in chosen]


def _explain(plan: Plan, quality: int, task: str, budget: Budget, catalog: Catalog) -> list[str]:
    v = plan.variant
    m = v.family
    why = []
    scores = _key_scores(v, task, catalog)
    adj = m.task_adjust.get(task, 0)
    basis = f"quality index {quality} (editorial, not a benchmark"
    basis += f"; {task} {adj:+d})" if adj else ")"
    why.append(basis + (": " + "; ".join(scores) if scores else f": {m.quality_basis}"))
    est = plan.estimate
    where = {"gpu": "GPU memory", "gpu+cpu": "GPU + RAM", "cpu": "RAM"}[plan.placement or "cpu"]
    why.append(
        f"memory: needs {gb(est.total)} ({est.engine}, {est.quant}: weights {gb(est.weights)}"
        f" + vision {gb(est.vision)} + KV {gb(est.kv_cache)} for {est.ctx} tokens + overhead {gb(est.overhead)})"
        f" of {gb(plan.budget)} usable {where}"
    )
    bw = budget.gpu_gbs if plan.placement == "gpu" else budget.cpu_gbs
    bw_text = f"{bw:g} GB/s" if plan.placement != "gpu+cpu" else f"{budget.gpu_gbs:g} and {budget.cpu_gbs:g} GB/s"
    why.append(
        f"speed: about {plan.tok_s:.0f} tokens/s when writing ({plan.speed}; estimate from {bw_text} memory"
        " bandwidth, not measured)" if plan.tok_s >= 1 else
        f"speed: about {plan.tok_s:.1f} tokens/s when writing ({plan.speed}; estimate from {bw_text}, not measured)"
    )
    inputs = ["image"] + (["several images"] if m.inputs.multi_image else []) + (["video"] if m.inputs.video else [])
    extra = f"; licence {v.license}" if v.license else ""
    why.append(f"inputs: {', '.join(inputs)}{extra}")
    if v.in_ollama_library:
        why.append(f"also in the Ollama library as {v.ollama[0].tag}")
    if m.superseded_by:
        why.append(f"superseded by {catalog.model(m.superseded_by).name} (ranked on its own merits here)")
    return why


def _tier(hardware: Hardware, catalog: Catalog) -> str | None:
    ram_gb, vram_gb = hardware.ram_total / GB, hardware.vram_total / GB
    best = None
    for tier in catalog.tiers:
        if tier.vram_gb > 0 and vram_gb + 0.5 >= tier.vram_gb:
            best = tier if best is None or tier.vram_gb >= best.vram_gb else best
        elif tier.vram_gb == 0 and vram_gb == 0 and ram_gb + 0.5 >= tier.ram_gb:
            best = tier if best is None or tier.ram_gb >= best.ram_gb else best
    return best.id if best else None


def _survey(
    rec_picks: list[Pick],
    plans: dict[str, Plan],
    priority: str,
    task: str,
    hardware: Hardware,
    catalog: Catalog,
    min_tok_s: float,
) -> list[SurveyLine]:
    lines: list[SurveyLine] = []
    ranked = {p.plan.variant.id: p.rank for p in rec_picks}
    survey = catalog.survey
    # section 2.3: the largest LLaVA size the survey allows for this much RAM, and the next one up
    ram_gb = hardware.ram_total / GB
    reqs = sorted(survey.system_requirements, key=lambda r: r.ram_gb)
    allowed = [r for r in reqs if ram_gb + 0.5 >= r.ram_gb]
    shown = [(allowed[-1], True)] if allowed else []
    above = [r for r in reqs if r not in allowed]
    if above:
        shown.append((above[0], False))
    for req, expected in shown:
        plan = plans[req.variant]
        if plan.fits:
            detail = f"fits here: needs {gb(plan.estimate.total)} of {gb(plan.budget)} usable ({plan.where()})"
        else:
            detail = f"does not fit here: {plan.problem}"
        said = f"'{req.text}'" + ("" if expected else " (the next size up, so not for this machine)")
        lines.append(
            SurveyLine(
                "2.3",
                f"{req.params} LLaVA ({plan.variant.pull_name})",
                req.variant,
                "agrees" if plan.fits == expected else "differs",
                f"survey: {said}; {detail}",
                survey.system_requirements_view,
                ranked.get(req.variant),
            )
        )
    for pick in survey.recommendations.get(priority, []):
        plan = plans.get(pick.variant)
        if plan is None:
            continue
        rank = ranked.get(pick.variant)
        if task != "describe" and not plan.variant.supports(task):
            status, detail = "wrong-task", f"cannot do '{task}' (inputs: {plan.variant.inputs.model_dump()})"
        elif rank == 1:
            status, detail = "agrees", "our first choice here too"
        elif rank is not None:
            status, detail = "also-picked", f"our #{rank} here"
        elif plan.problem.startswith("no local engine"):
            status, detail = "not-local", plan.problem
        elif not plan.fits:
            status, detail = "does-not-fit", plan.problem
        elif plan.tok_s < min_tok_s:
            status, detail = "too-slow", f"fits, but about {plan.tok_s:.1f} tokens/s here (below {min_tok_s:g})"
        else:
            status, detail = "ranked-lower", "fits here, ranked below our picks"
        lines.append(SurveyLine("4", pick.name, pick.variant, status, detail, pick.our_view, rank))
    return lines


def recommend(
    hardware: Hardware,
    priority: str = "balanced",
    task: str = "describe",
    ctx: int | None = None,
    limit: int = 5,
    catalog: Catalog | None = None,
) -> Recommendation:
    """Rank the catalog for this machine. ``hardware``: :func:`hardware.probe` or ``Hardware.given``."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}")
    catalog = catalog or load()
    policy = catalog.policy
    budget = budget_for(hardware, catalog)
    min_tok_s = policy["ranking"]["min_tok_s"][priority]
    plans: dict[str, Plan] = {}
    candidates: list[tuple[float, int, Plan]] = []
    for variant in catalog.variants():
        plan = plan_variant(variant, budget, task, ctx, catalog)
        plans[variant.id] = plan
        if not variant.supports(task):
            plan.problem = plan.problem or f"does not take {task.replace('-', ' ')} input"
            continue
        if not plan.fits or plan.tok_s < min_tok_s:
            continue
        score, quality = _score(plan, priority, task, policy)
        candidates.append((score, quality, plan))
    candidates.sort(key=lambda c: (-c[0], -c[1], -c[2].tok_s))
    picks = []
    for rank, (score, quality, plan) in enumerate(candidates[:limit], start=1):
        picks.append(Pick(rank, plan, score, quality, _explain(plan, quality, task, budget, catalog)))
    survey = _survey(picks, plans, priority, task, hardware, catalog, min_tok_s)
    notes = list(hardware.notes) + list(budget.notes)
    notes.append(
        "Memory and speed are estimates (store/catalog.json policy); quality indices are editorial"
        " rankings built on the published scores shown, which come from each author's own harness at"
        " full precision."
    )
    if task != "describe":
        notes.append("The survey's recommendations were made for image description, not for this task.")
    summary = _summary(picks, survey, priority, catalog)
    return Recommendation(hardware, budget, priority, task, picks, list(plans.values()), survey, _tier(hardware, catalog), notes, summary)


def _summary(picks: list[Pick], survey: list[SurveyLine], priority: str, catalog: Catalog) -> str:
    if not picks:
        return "No catalog model fits this machine for this task; see the models that need more memory."
    top = picks[0].plan.variant
    section4 = [s for s in survey if s.section == "4"]
    if not section4:
        return f"Recommended: {top.name}."
    first = section4[0]
    if first.variant_id == top.id:
        return f"Recommended: {top.name}, which is also the survey's first choice for '{priority}'."
    return (
        f"Recommended: {top.name}. The survey's first choice for '{priority}' is {first.name}"
        f" ({first.status.replace('-', ' ')}: {first.detail}). {first.our_view}"
    )
