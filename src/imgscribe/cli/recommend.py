"""``imgscribe recommend``: which model to pull for this machine, and why."""

from __future__ import annotations

import json
import math
from enum import Enum

import typer

from .app import app


class Priority(str, Enum):
    performance = "performance"
    balanced = "balanced"
    ease = "ease"


class Task(str, Enum):
    describe = "describe"
    ocr = "ocr"
    documents = "documents"
    video = "video"
    multi_image = "multi-image"


_MARK = {
    "agrees": "✓",
    "also-picked": "✓",
    "ranked-lower": "~",
    "too-slow": "~",
    "does-not-fit": "✗",
    "not-local": "✗",
    "wrong-task": "✗",
    "differs": "✗",
}


def _hardware(ram: float | None, vram: float | None):
    from ..hardware import GPU, Hardware, probe

    if ram is not None and not (0 < ram < math.inf):
        raise typer.BadParameter(f"must be a number of GB more than 0, got {ram:g}", param_hint="--ram")
    if vram is not None and not (0 <= vram < math.inf):
        raise typer.BadParameter(f"must be a number of GB, 0 (no GPU) or more, got {vram:g}", param_hint="--vram")
    if ram is not None and vram is not None:
        return Hardware.given(ram, vram)
    hw = probe()
    if ram is not None:
        hw.ram_total = hw.ram_available = int(ram * 1e9)
        hw.ram_source = "given"
    if vram is not None:
        hw.gpus = [GPU(0, f"GPU with {vram:g} GB", int(vram * 1e9), int(vram * 1e9))] if vram > 0 else []
        hw.gpu_source = "given"
        hw.notes = [n for n in hw.notes if "nvidia-smi" not in n and "NVIDIA" not in n]
    return hw


def _hardware_line(rec) -> str:
    hw, budget = rec.hardware, rec.budget
    ram = f"{hw.ram_total / 1e9:.1f} GB RAM ({budget.ram / 1e9:.1f} GB usable for a model, {hw.ram_source})"
    if hw.gpus:
        gpus = ", ".join(f"{g.name} {g.memory_total / 1e9:.0f} GB" for g in hw.gpus)
        gpu = f"GPU: {gpus} ({budget.vram / 1e9:.1f} GB usable, {hw.gpu_source})"
    else:
        gpu = "no NVIDIA GPU" + (" (given)" if hw.gpu_source == "given" else "")
    cpu = f"{hw.cpu_count} CPU threads" + (f" ({hw.cpu_model})" if hw.cpu_model else "")
    return f"{ram}; {gpu}; {cpu}"


@app.command()
def recommend(
    priority: Priority = typer.Option(Priority.balanced, "--priority", "-p", help="What matters most."),
    task: Task = typer.Option(Task.describe, "--task", "-t", help="What the model will do."),
    ram: float = typer.Option(None, "--ram", help="RAM in GB (default: probed)."),
    vram: float = typer.Option(None, "--vram", help="GPU memory in GB; 0 = no GPU (default: probed NVIDIA GPUs)."),
    ctx: int = typer.Option(None, "--ctx", min=1, help="Context length to plan the KV cache for (default: by task)."),
    limit: int = typer.Option(5, "--limit", "-n", min=1, help="How many models to list."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recommend vision models that fit this machine, with reasons and the command to get them."""
    from ..recommend import recommend as rank

    rec = rank(_hardware(ram, vram), priority.value, task.value, ctx=ctx, limit=limit)
    if as_json:
        typer.echo(json.dumps(rec.to_dict(), indent=2, ensure_ascii=False))
        return
    _print(rec)


def _print(rec) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    console.print(Text(_hardware_line(rec)))
    tier = f"; nearest survey tier: {rec.tier}" if rec.tier else ""
    console.print(Text(f"priority: {rec.priority}; task: {rec.task}{tier}", style="dim"))
    if not rec.picks:
        console.print(Text("\nNo catalog model fits this machine for this task.", style="bold red"))
    else:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("#", "MODEL", "RUNS ON", "MEMORY", "SPEED (est.)", "QUALITY", "imgscribe pull ..."):
            table.add_column(column, overflow="fold")
        for pick in rec.picks:
            plan = pick.plan
            table.add_row(
                str(pick.rank),
                plan.variant.name,
                f"{plan.where()}, {plan.engine} {plan.quant}",
                f"{plan.estimate.total / 1e9:.1f} of {plan.budget / 1e9:.1f} GB",
                f"~{plan.tok_s:.0f} tok/s, {plan.speed}" if plan.tok_s >= 1 else f"~{plan.tok_s:.1f} tok/s, {plan.speed}",
                str(pick.quality),
                plan.command.removeprefix("imgscribe pull "),
            )
        console.print()
        console.print(table)
        console.print(Text("\nWhy:", style="bold"))
        for pick in rec.picks:
            console.print(Text(f" {pick.rank}. {pick.plan.variant.name}", style="bold"))
            for reason in pick.why:
                console.print(Text(f"    - {reason}"))
    bigger = sorted((p for p in rec.unfit if p.problem.startswith("needs")), key=lambda p: -p.variant.quality)[:3]
    if bigger:
        console.print(Text("\nWould need more memory: ", style="bold"), end="")
        console.print(Text("; ".join(f"{p.variant.name} ({p.estimate.total / 1e9:.0f} GB)" for p in bigger)))
    if rec.survey:
        console.print(Text("\nThe founding survey (sections 2.3 and 4) on this machine:", style="bold"))
        for line in rec.survey:
            mark = _MARK.get(line.status, "-")
            console.print(Text(f" {mark} §{line.section} {line.name}: {line.status.replace('-', ' ')}; {line.detail}"))
            if line.section == "4" and line.status not in ("agrees", "also-picked") and line.our_view:
                console.print(Text(f"      why we differ: {line.our_view}", style="dim"))
    if rec.summary:
        console.print(Text(f"\n{rec.summary}"))
    if rec.picks:
        console.print(Text(f"\nGet the first: {rec.picks[0].plan.command}", style="bold green"))
    for note in rec.notes:
        console.print(Text(f"note: {note}", style="dim"))
