"""``imgscribe serve``, ``imgscribe ps`` and ``imgscribe stop MODEL``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from ..config import help_table
from .app import app
from .common import connect
from .models import human_time, model_id, ollama_size, print_table


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
    """List the models a running server holds in memory: NAME, ID, SIZE, PROCESSOR, UNTIL, as ``ollama ps``."""
    client = connect(host)
    rows = client.ps()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if client.where == "in-process":
        typer.echo("No server is running, so no model stays loaded between commands (start one: imgscribe serve).")
        return
    ids = {info.name: model_id(info) for info in client.list()} if rows else {}
    table = [[row["name"], ids.get(row["name"], "-"), ollama_size(row.get("size") or 0), row.get("processor", "CPU"),
              until(row.get("expires_at"))] for row in rows]  # fmt: skip
    print_table(["NAME", "ID", "SIZE", "PROCESSOR", "UNTIL"], table)


@app.command("stop")
def stop(
    model: str = typer.Argument(..., help="Model to unload."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """Unload a model from a running server now (it loads again on its next use)."""
    connect(host).stop(model)


def until(expires_at: str | None) -> str:
    """'Forever', 'Stopping...' or '4 minutes from now', like ``ollama ps``."""
    if not expires_at:
        return "Forever"
    try:
        left = (datetime.fromisoformat(expires_at.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    except ValueError:
        return expires_at
    if left <= 0:
        return "Stopping..."
    return human_time(expires_at, "Forever")
