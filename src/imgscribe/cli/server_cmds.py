"""``imgscribe serve``, ``imgscribe ps`` and ``imgscribe stop MODEL``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from ..client import connect
from ..config import help_table
from .app import app
from .models import human_size


@app.command("serve", epilog="Environment variables:\n\n" + help_table())
def serve_command(
    host: str = typer.Option(
        None, "--host", help="Address to listen on (default: IMGSCRIBE_HOST, or 127.0.0.1:11434)."
    ),
) -> None:
    """Serve Ollama's API (and an OpenAI-compatible one) so Ollama's clients work unchanged."""
    from .serve import serve

    serve(host)


@app.command("ps")
def ps(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """List the models a running server holds in memory."""
    client = connect(host)
    rows = client.ps()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if client.where == "in-process":
        typer.echo("No server is running, so no model stays loaded between commands (start one: imgscribe serve).")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "SIZE", "PROCESSOR", "UNTIL"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"], human_size(row.get("size") or 0), row.get("processor", "CPU"), until(row.get("expires_at"))
        )
    Console().print(table)


@app.command("stop")
def stop(
    model: str = typer.Argument(..., help="Model to unload."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """Unload a model from a running server now (it loads again on its next use)."""
    connect(host).stop(model)


def until(expires_at: str | None) -> str:
    """'Forever', 'Stopping...' or 'in 4 minutes', like ``ollama ps``."""
    if not expires_at:
        return "Forever"
    left = (datetime.fromisoformat(expires_at.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return "Stopping..."
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if left >= size:
            n = int(left // size)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "in a moment"
