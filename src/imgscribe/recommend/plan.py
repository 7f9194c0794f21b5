"""How a catalog variant would run on this machine: its engine, quantisation, memory estimate
(``memory.py``), placement (on the GPU, split between GPU and RAM, or in RAM) and expected speed.

Expected speed is an estimate: decode tokens/s is about effective memory bandwidth / bytes read per
token (active weights + KV cache), with bandwidths from the catalog's ``policy.bandwidth`` (GPU
model table, or a class default by VRAM; 50 GB/s for CPU RAM). Image encoding and prompt processing
add seconds per image on CPUs. Every number comes from ``store/catalog.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import memory
from ..hardware import Hardware
from ..memory import GB, MemoryEstimate, gb
from ..store.catalog import Catalog, Variant, load

__all__ = ["Budget", "Plan", "budget_for", "plan_variant"]


@dataclass(frozen=True)
class Budget:
    """Memory a model may plan to use here, and how fast that memory is."""

    ram: int
    vram: int
    cpu_gbs: float
    gpu_gbs: float
    gpu_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ram_gb": round(self.ram / GB, 2),
            "vram_gb": round(self.vram / GB, 2),
            "cpu_bandwidth_gbs": self.cpu_gbs,
            "gpu_bandwidth_gbs": self.gpu_gbs,
            "gpus": list(self.gpu_names),
            "notes": list(self.notes),
        }


def _gpu_bandwidth(name: str, vram: int, policy: dict[str, Any]) -> tuple[float, str]:
    table = policy["bandwidth"]
    upper = name.upper()
    for row in table["gpus"]:
        if all(part in upper for part in row["match"]):
            return float(row["gbs"]), f"{name}: {row['gbs']} GB/s (spec sheet)"
    best = table["gpu_default_by_vram"][0]
    for row in table["gpu_default_by_vram"]:
        if vram / GB >= row["min_vram_gb"]:
            best = row
    return float(best["gbs"]), f"{name}: assumed {best['gbs']} GB/s ({best['example']})"


def budget_for(hardware: Hardware, catalog: Catalog | None = None) -> Budget:
    catalog = catalog or load()
    policy = catalog.policy
    notes = []
    vram = sum(memory.vram_budget(g.memory_total, catalog) for g in hardware.gpus)
    gpu_gbs = 0.0
    for gpu in hardware.gpus:
        gbs, note = _gpu_bandwidth(gpu.name, gpu.memory_total, policy)
        gpu_gbs = gbs if gpu_gbs == 0 else min(gpu_gbs, gbs)
        notes.append(note)
    if len(hardware.gpus) > 1:
        notes.append(f"{len(hardware.gpus)} GPUs: memory added up (llama.cpp splits layers), speed of the slowest")
    return Budget(
        ram=memory.ram_budget(hardware.ram_total, catalog),
        vram=vram,
        cpu_gbs=float(policy["bandwidth"]["cpu_gbs"]),
        gpu_gbs=gpu_gbs,
        gpu_names=tuple(g.name for g in hardware.gpus),
        notes=tuple(notes),
    )


@dataclass
class Plan:
    """How one variant would run on this machine (or why it cannot)."""

    variant: Variant
    engine: str
    quant: str
    estimate: MemoryEstimate
    placement: str | None  # "gpu", "gpu+cpu", "cpu"; None when it does not fit
    budget: int  # the memory it was measured against
    tok_s: float = 0.0
    speed: str = ""
    problem: str = ""  # why it cannot run here
    command: str = ""

    @property
    def fits(self) -> bool:
        return self.placement is not None and not self.problem

    def where(self) -> str:
        return {"gpu": "GPU", "gpu+cpu": "GPU + RAM (layers split)", "cpu": "CPU (RAM)"}.get(self.placement or "", "-")

    def _memory(self) -> dict[str, Any]:
        est = self.estimate
        sizes = {k: round(getattr(est, k) / GB, 2) for k in ("weights", "vision", "kv_cache", "overhead", "total")}
        return {"unit": "GB", **sizes, "ctx": est.ctx, "engine": est.engine, "quant": est.quant, "notes": list(est.notes)}

    def to_dict(self) -> dict[str, Any]:
        v = self.variant
        return {
            "id": v.id,
            "name": v.name,
            "family": v.family.id,
            "engine": self.engine,
            "quant": self.quant,
            "placement": self.placement,
            "memory": self._memory(),
            "budget_gb": round(self.budget / GB, 2),
            "tok_s_estimate": round(self.tok_s, 1),
            "speed": self.speed,
            "problem": self.problem,
            "command": self.command,
            "pull": self.command.removeprefix("imgscribe pull ") if self.command else "",
            "license": v.license,
            "inputs": v.inputs.model_dump(),
            "in_ollama_library": v.in_ollama_library,
        }


def _speed_label(tok_s: float, policy: dict[str, Any]) -> str:
    for row in policy["speed_classes"]:
        if tok_s >= row["min_tok_s"]:
            return row["label"]
    return "very slow"


def _tok_s(est: MemoryEstimate, placement: str, budget: Budget, policy: dict[str, Any]) -> float:
    eff = policy["bandwidth"]["efficiency"].get(est.engine, 0.5)
    per_token = max(est.per_token_read, 1)
    gpu_bps = budget.gpu_gbs * GB * eff
    cpu_bps = budget.cpu_gbs * GB * eff
    if placement == "gpu":
        return gpu_bps / per_token
    if placement == "cpu":
        return cpu_bps / per_token
    on_gpu = min(1.0, budget.vram / max(est.total, 1))
    seconds = per_token * (on_gpu / gpu_bps + (1 - on_gpu) / cpu_bps)
    return 1.0 / seconds


def _command(variant: Variant, engine: str) -> str:
    if engine == "transformers" and variant.hf.checkpoint:
        name = variant.pull_name if variant.pull_name.endswith(variant.hf.checkpoint) else f"hf.co/{variant.hf.checkpoint}"
        return f"imgscribe pull {name}"
    return f"imgscribe pull {variant.pull_name}"


def plan_variant(
    variant: Variant,
    budget: Budget,
    task: str = "describe",
    ctx: int | None = None,
    catalog: Catalog | None = None,
) -> Plan:
    """The first engine that fits here, in imgscribe's order of preference (llama.cpp, transformers)."""
    catalog = catalog or load()
    policy = catalog.policy
    if ctx is None:
        ctx = int(policy.get("task_ctx", {}).get(task, memory.default_ctx(catalog)))
    ctx = min(ctx, variant.context_length)
    engines = variant.local_engines
    if task == "video":
        engines = [e for e in engines if e == "transformers"]
    if not engines:
        # what a local 4-bit build would need, for the explanation
        est = memory.estimate(variant, quant="Q4_K_M", ctx=ctx, engine="llamacpp", catalog=catalog)
        why = "no local engine: imgscribe reaches it only through a remote server"
        if task == "video" and variant.local_engines:
            why = "video needs the transformers engine, and this model has no transformers checkpoint"
        return Plan(variant, "remote", est.quant, est, None, budget.ram, problem=why)
    first: Plan | None = None
    for engine in engines:
        quant = variant.default_quant if engine == "llamacpp" else "BF16"
        if engine == "llamacpp" and quant not in catalog.quantizations:
            quant = "Q4_K_M"
        est = memory.estimate(variant, quant=quant, ctx=ctx, engine=engine, catalog=catalog)
        placement = None
        measured = budget.ram
        if budget.vram and est.total <= budget.vram:
            placement, measured = "gpu", budget.vram
        elif budget.vram and engine == "llamacpp" and est.total <= budget.vram + budget.ram:
            placement, measured = "gpu+cpu", budget.vram + budget.ram
        elif est.total <= budget.ram:
            placement, measured = "cpu", budget.ram
        plan = Plan(variant, engine, est.quant, est, placement, measured, command=_command(variant, engine))
        if placement is not None:
            plan.tok_s = _tok_s(est, placement, budget, policy)
            plan.speed = _speed_label(plan.tok_s, policy)
            return plan
        if first is None:
            where = "GPU + RAM" if budget.vram and engine == "llamacpp" else "RAM"
            limit = budget.vram + budget.ram if where == "GPU + RAM" else max(budget.ram, budget.vram)
            plan.budget = limit
            plan.problem = f"needs {gb(est.total)} ({engine}, {est.quant}) but {gb(limit)} of {where} is usable"
            first = plan
    assert first is not None
    return first
