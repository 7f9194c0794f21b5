"""``imgscribe describe PATH...``: one JSON line per image; a bad image never stops the run."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..api import DEFAULT_PROMPT
from ..batch.records import describe_record, new_record
from ..batch.sources import Missing, expand
from . import app
from .backend import get_backend
from .common import parse_format, parse_options


def _progress(total: int) -> Progress | None:
    if not sys.stderr.isatty():
        return None
    return Progress(
        TextColumn("[bold]describing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=Console(stderr=True), transient=True,
    )


@app.command()
def describe(
    paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or globs."),
    model: str = typer.Option("builtin", "--model", "-m", help="Model name."),
    prompt: str = typer.Option(DEFAULT_PROMPT, "--prompt", "-p", help="What to ask about each image."),
    out: Path = typer.Option(None, "--out", "-O", help="Write JSON lines here instead of stdout."),
    format: str = typer.Option(None, "--format", help="'json' or a JSON schema (inline or a file)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Model option KEY=VALUE (repeatable)."),
    host: str = typer.Option(None, "--host", help="Server to use (default: IMGSCRIBE_HOST if one answers)."),
    local: bool = typer.Option(False, "--local", help="Run in this process even if a server answers."),
) -> None:
    """Describe every image and write one JSON object per image (path, sha256, response, timings, error)."""
    options, fmt = parse_options(option), parse_format(format)
    backend = get_backend(host, local)
    backend.show(model)  # an unknown model is one clear error, not one per image
    items = list(expand(paths))
    failed = 0
    progress = _progress(len(items))
    sink = open(out, "a", encoding="utf-8") if out else nullcontext(sys.stdout)
    with sink as stream, (progress or nullcontext()):
        task = progress.add_task("", total=len(items)) if progress else None
        for item in items:
            if isinstance(item, Missing):
                record = new_record(item.source, model, prompt, error=item.reason)
            else:
                if progress:
                    progress.update(task, description=item.name)
                record = describe_record(backend.chat, item, model, prompt, options, fmt)
            if record["error"]:
                failed += 1
                print(f"error: {record['path']}: {record['error']}", file=sys.stderr)
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            stream.flush()
            if progress:
                progress.advance(task)
    done = len(items) - failed
    print(f"described {done} image(s), {failed} failed" + (f"; results in {out}" if out else ""), file=sys.stderr)
    if failed:
        raise typer.Exit(1)
