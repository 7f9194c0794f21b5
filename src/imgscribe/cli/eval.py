"""``imgscribe eval``: measure models on data sets; ``imgscribe eval --compare DIR...``: the table again."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import app
from .common import parse_options

_DATASETS_HELP = (
    "Data set (repeatable or comma-separated): built-in docs, easyvqa, photos, photos-detail, photos-pope; "
    "or a path, or FORMAT:PATH with FORMAT vqav2, textvqa, docvqa, coco, pope, jsonl."
)


@app.command("eval")
def eval_command(
    dirs: list[str] = typer.Argument(None, help="With --compare: result folders to show side by side."),
    models: str = typer.Option(None, "--models", "-m", help="Models to compare, comma-separated."),
    dataset: list[str] = typer.Option(None, "--dataset", "-d", help=_DATASETS_HELP),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Only the first N samples of each data set."),
    out: Path = typer.Option(Path("eval-results"), "--out", "-O",
                             help="Folder for results.json, samples.jsonl, report.html and the answer cache "
                             "(run again with the same folder to resume)."),  # fmt: skip
    prompt: str = typer.Option(None, "--prompt", "-p", help="Replace every task's prompt ({question} = the question)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Model option KEY=VALUE for every task (repeatable)."),
    images: Path = typer.Option(None, "--images", help="Folder holding the data set's images."),
    meteor: bool = typer.Option(None, "--meteor/--no-meteor",
                                help="METEOR needs Java and ~30 s to start (default: when Java runs)."),  # fmt: skip
    compare: bool = typer.Option(False, "--compare", help="Print the results of earlier runs (folders as arguments)."),
    list_datasets: bool = typer.Option(False, "--list-datasets", help="List the built-in data sets and formats."),
) -> None:
    """Run every model on every sample through the scheduler, score, and write an HTML report."""
    from ..evaluate.report import load_results, print_table

    if list_datasets:
        _print_datasets()
        return
    if compare:
        if not dirs:
            raise typer.BadParameter("--compare needs one or more result folders", param_hint="DIRS")
        print_table([(d, load_results(Path(d))) for d in dirs])
        return
    if dirs:
        raise typer.BadParameter(f"unexpected argument {dirs[0]!r} (result folders go with --compare)")
    names = [m.strip() for m in (models or "").split(",") if m.strip()]
    sets = [d.strip() for spec in dataset or [] for d in _split(spec) if d.strip()]
    if not names:
        raise typer.BadParameter("give the models to compare: --models A,B", param_hint="--models")
    if not sets:
        raise typer.BadParameter("give at least one --dataset (see --list-datasets)", param_hint="--dataset")
    options = parse_options(option).model_dump(exclude_none=True) if option else None
    _check_folders(out, images)

    from ..evaluate import evaluate

    outcome = evaluate(names, sets, out, limit=limit, options=options, prompt=prompt, images=images, meteor=meteor,
                       progress=_Progress(), command=sys.argv)  # fmt: skip
    print_table([(str(out), outcome["results"])])
    paths = outcome["paths"]
    print(f"report: {paths['html']}\nresults: {paths['results']}\nper sample: {paths['samples']}", file=sys.stderr)


def _check_folders(out: Path, images: Path | None) -> None:
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; give a folder for the results", param_hint="--out")
    if images is not None and not images.expanduser().is_dir():
        raise typer.BadParameter(f"no such folder: {images}", param_hint="--images")


def _split(spec: str) -> list[str]:
    """Comma-separated data sets, but a path may contain commas: split only where each part is known."""
    parts = spec.split(",")
    return parts if len(parts) > 1 and not Path(spec).exists() else [spec]


def _print_datasets() -> None:
    from ..evaluate.datasets import BUILTIN
    from ..evaluate.datasets.formats import LOADERS

    for name, about in BUILTIN.items():
        print(f"{name:<15} {about}")
    print("\nLocal files: " + ", ".join(f"{f}:PATH" for f in LOADERS) + " (or a path: the format is recognised).")


class _Progress:
    """One line per model and task on stderr (a live counter when stderr is a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.current: tuple[str, str] | None = None

    def __call__(self, model: str, task: str, done: int, total: int, cached: int) -> None:
        if self.tty:
            end = "\n" if done == total else ""
            print(f"\r{model} · {task}: {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total:
            print(f"{model} · {task}: {total} answers", file=sys.stderr, flush=True)
