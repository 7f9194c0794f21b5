"""Evaluation: choose a model by measuring it on your images and on standard tasks, on your machine.

    >>> from imgscribe.evaluate import evaluate
    >>> out = evaluate(["builtin", "llava:7b"], ["docs", "easyvqa", "photos"], "eval-out", limit=20)
    >>> out["paths"]["html"]          # the report: leaderboard, plots, prompts and settings

Parts: ``datasets`` (built-in offline sets and loaders for VQAv2, TextVQA, DocVQA, COCO captions,
POPE and your own JSONL), ``metrics`` (VQA accuracy, ANLS, exact match, BLEU/METEOR/ROUGE-L/
CIDEr-D, CHAIR, POPE), ``harness`` (models x samples through a client, with a content-keyed
prediction cache, so an interrupted run resumes and a changed model, prompt or option re-runs),
``scoring`` and ``report`` (results.json, samples.jsonl, report.html, the terminal table).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["evaluate"]


def evaluate(
    models: Sequence[str],
    datasets: Sequence[str],
    out: str | Path,
    *,
    limit: int | None = None,
    client: Client | None = None,
    options: dict[str, Any] | None = None,
    prompt: str | None = None,
    images: str | Path | None = None,
    meteor: bool | None = None,
    tokenizer: str = "auto",
    progress: Any = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run, score and report. Returns ``{"results": ..., "paths": {"results", "samples", "html"}}``.

    ``options`` override every task's generation options (Ollama names); ``prompt`` replaces every
    task's prompt template (it must keep ``{question}`` for question-answering sets); ``meteor``
    None computes METEOR when Java runs. Answers are cached under ``out/cache``: run the same command
    again to resume. ``client``: where the models run (default: a scheduler of its own, in process,
    closed at the end).
    """
    from ..client import LocalClient
    from ..scheduler import Scheduler
    from .datasets import load_task

    if not models:
        raise InvalidRequest("no models: give --models A,B,...")
    if not datasets:
        raise InvalidRequest("no data sets: give --dataset NAME_OR_PATH (built-in: docs, easyvqa, photos, ...)")
    out = Path(out)
    image_root = Path(images).expanduser() if images else None
    tasks = [load_task(d, limit=limit, images=image_root) for d in datasets]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"the same data set twice: {', '.join(names)}")
    if prompt is not None:
        for task in tasks:
            if any(s.question for s in task.samples) and "{question}" not in prompt:
                raise InvalidRequest(f"--prompt must contain {{question}} for the question set {task.name}")
            task.prompt = prompt
    own = client is None
    client = client or LocalClient(Scheduler(), own=True)
    try:
        return _run(client, models, tasks, out, options, progress, meteor, tokenizer, command)
    finally:
        if own:
            client.close()


def _run(client, models, tasks, out, options, progress, meteor, tokenizer, command) -> dict[str, Any]:
    from ..version import __version__
    from .harness import PredictionCache, read_model_stats, run_predictions, write_json
    from .report import SCHEMA, host_facts, write_report
    from .scoring import score_task

    for model in models:
        client.info(model)  # an unknown model is one clear error before any work

    cache = PredictionCache(out / "cache" / "predictions.jsonl")
    stats_path = out / "cache" / "models.json"
    stats = read_model_stats(stats_path)
    try:
        runs, answers = run_predictions(client, models, tasks, cache, options=options, model_stats=stats,
                                        progress=progress)  # fmt: skip
    finally:
        write_json(stats_path, stats)

    settings = {"caption": {"meteor": meteor, "tokenizer": tokenizer}}
    results_list, rows = [], []
    for model in models:
        for task in tasks:
            result, task_rows = score_task(task, answers[(model, task.name)], settings)
            results_list.append({"model": model, **result})
            rows.extend(task_rows)
    if any("caption" in t.metrics for t in tasks):
        from .metrics.caption import close_meteor

        close_meteor()
    for task in tasks:
        if options:
            task.options = {**task.options, **options}
    results = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "imgscribe_version": __version__,
        "command": list(command or []),
        "host": host_facts(),
        "models": {name: {"digest": r.digest, "info": r.info, "load_s": r.load_s, "memory": r.memory,
                          "error": r.error, "answers_run": r.ran, "answers_cached": r.cached,
                          "answers_failed": r.failed} for name, r in runs.items()},  # fmt: skip
        "tasks": {t.name: t.settings() for t in tasks},
        "results": results_list,
        "cache": {"path": str(cache.path), "entries": len(cache.records), "unreadable_lines": cache.skipped},
        "notes": _notes(runs),
    }
    paths = write_report(out, results, rows)
    return {"results": results, "paths": paths}


def _notes(runs: dict[str, Any]) -> list[str]:
    notes = [
        "Latency is the wall time of one answer with the model already loaded (load time apart); tokens/s "
        "is generated tokens over generation time as the engine reports them.",
        "Memory: the engine's own figure when it gives one, else the growth of this process's resident "
        "memory while the model ran (remote models use memory elsewhere and show little here).",
        "Cached answers keep the latency measured when they were made.",
    ]
    for name, run in runs.items():
        if run.error:
            notes.append(f"{name}: {run.error}")
    return notes
