"""``imgscribe pull``, ``imgscribe rm`` and ``imgscribe cp``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer

from .app import app
from .common import connect

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from ..client import Events


@app.command()
def pull(
    model: str = typer.Argument(..., help="llava:7b, HOST[:PORT]/namespace/model:tag, or hf.co/ORG/REPO[:QUANT]."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a registry that speaks plain http."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """Download a model from Ollama's registry or the Hugging Face Hub (resumes if interrupted)."""
    show_progress(connect(host).pull(model, insecure=insecure))


@app.command("rm")
def remove(
    models: list[str] = typer.Argument(..., help="Models to delete."),  # noqa: B008
    host: str = typer.Option(None, "--host"),
) -> None:
    """Delete models; files no other model uses are freed."""
    client = connect(host)
    for model in models:
        client.delete(model)
        typer.echo(f"deleted '{model}'")


@app.command("cp")
def copy(
    source: str = typer.Argument(..., help="An existing model."),
    destination: str = typer.Argument(..., help="The new name."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """Copy a model under another name (its files are shared, not duplicated)."""
    connect(host).copy(source, destination)
    typer.echo(f"copied '{source}' to '{destination}'")


def show_progress(events: Events, console: Console | None = None) -> None:
    """Ollama's progress objects as a bar per file on a terminal, else as plain lines."""
    from rich.console import Console

    console = console or Console(stderr=True)
    try:
        if console.is_terminal:
            _bars(events, console)
        else:
            _lines(events, console)
    finally:
        events.close()  # Ctrl-C: stop the transfers now (what arrived is kept for next time)


def _bars(events: Iterable[dict[str, Any]], console: Console) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        for event in events:
            key = event.get("digest") or (event["status"] if "total" in event else "")
            if key:
                total = event.get("total") or None
                if key not in tasks:
                    tasks[key] = progress.add_task(event["status"], total=total)
                progress.update(tasks[key], total=total, completed=event.get("completed", 0))
            else:
                progress.console.print(event.get("status", ""))


def _lines(events: Iterable[dict[str, Any]], console: Console) -> None:
    last: dict[str, str] = {}
    for event in events:
        status = event.get("status", "")
        key = event.get("digest") or (status if "total" in event else "")
        if not key:
            console.print(status, markup=False, highlight=False)
            continue
        total, done = event.get("total") or 0, event.get("completed") or 0
        state = "done" if total and done >= total else "started"
        if last.get(key) != state:  # a line when a file starts and when it is complete
            last[key] = state
            size = f" {done:,}/{total:,} bytes" if total else ""
            console.print(f"{status}{size}{' done' if state == 'done' else ''}", markup=False, highlight=False)
