"""``imgscribe list`` and ``imgscribe show``."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from ..errors import ModelNotFound
from .app import app
from .common import connect

if TYPE_CHECKING:
    from rich.console import Console

    from ..types import ModelInfo


def human_size(size: int) -> str:
    if size <= 0:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "-"


def kind(info: ModelInfo) -> str:
    if not info.is_vlm:
        return "not a VLM (labels, OCR, colours)"
    return "vision-language model" if info.vision else "text model"


@app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """List the models available here: NAME, ID, SIZE, MODIFIED, as ``ollama list``."""
    infos = connect(host).list()
    if as_json:
        typer.echo(json.dumps([i.model_dump() for i in infos], indent=2))
        return
    rows = [[info.name, model_id(info), ollama_size(info.size), human_time(info.modified_at, "Never")] for info in infos]
    print_table(["NAME", "ID", "SIZE", "MODIFIED"], rows)
    for info in infos:  # the table stays Ollama's; what cannot load is said under it
        if info.damaged:
            print(f"Warning: {info.damaged}", file=sys.stderr)


def model_id(info: ModelInfo) -> str:
    """The first 12 hex digits of the model's digest, as ``ollama list`` shows (and the server's)."""
    digest = info.digest or hashlib.sha256(info.model_dump_json().encode()).hexdigest()
    return digest.removeprefix("sha256:")[:12]


def ollama_size(size: int) -> str:
    """Bytes as Ollama's ``format.HumanBytes`` writes them: "4.7 GB", "12 MB", "512 B"."""
    if size <= 0:
        return "-"
    for unit, scale in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= scale:
            value = size / scale
            return f"{int(value)} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def _duration(seconds: float) -> str:
    """Ollama's ``humanDuration``: "About a minute", "4 hours", "3 weeks"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    for limit, unit, size in ((48, "hours", 1), (24 * 14, "days", 24), (24 * 60, "weeks", 24 * 7),
                              (24 * 730, "months", 24 * 30)):  # fmt: skip
        if hours < limit:
            return f"{hours // size} {unit}"
    return f"{int(seconds // 3600) // 24 // 365} years"


def human_time(when: str | None, zero: str, now: datetime | None = None) -> str:
    """Ollama's ``format.HumanTime``: "2 minutes ago", "4 minutes from now", "Forever" (20 years on)."""
    if not when:
        return zero
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return when
    if moment.tzinfo is None:
        moment = moment.astimezone()
    delta = ((now or datetime.now(UTC)) - moment).total_seconds()
    if delta / 86400 / 365 < -20:
        return "Forever"
    return _duration(-delta) + " from now" if delta < 0 else _duration(delta) + " ago"


def print_table(headers: list[str], rows: list[list[str]], console: Console | None = None) -> None:
    """A table that never cuts a value: on a terminal Rich's, its columns as wide as their longest
    value (a narrow terminal folds a line, never a name); otherwise plain text, columns padded with
    spaces as Ollama's tabwriter pads them, so ``awk '{print $1}'`` reads names whole."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows, strict=True)]
        for line in [headers, *rows]:
            typer.echo("   ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    widths = [max([len(header)] + [len(str(row[i])) for row in rows]) for i, header in enumerate(headers)]
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, overflow="fold", min_width=width)
    for row in rows:
        table.add_row(*row)
    # As wide as it needs: wider than the terminal, the terminal wraps the line (Rich would drop
    # columns that do not fit, and cannot print wider than its console).
    need = sum(widths) + 2 * (len(widths) - 1)
    if need > console.width:
        console = Console(file=console.file, width=need, force_terminal=True, color_system=console.color_system)
    console.print(table, crop=False)


@app.command()
def show(
    model: str = typer.Argument(..., help="Model name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    modelfile: bool = typer.Option(False, "--modelfile", help="The model as a Modelfile (create -f reads it)."),
    template: bool = typer.Option(False, "--template", help="Its prompt template."),
    system: bool = typer.Option(False, "--system", help="Its system prompt."),
    parameters: bool = typer.Option(False, "--parameters", help="Its default options."),
    license: bool = typer.Option(False, "--license", help="Its licence."),
    host: str = typer.Option(None, "--host"),
) -> None:
    """Show what a model is, what it can do, and what it cannot (from the catalog when it is not
    downloaded yet)."""
    parts = [flag for flag, on in (("modelfile", modelfile), ("template", template), ("system", system),
                                   ("parameters", parameters), ("license", license)) if on]  # fmt: skip
    if len(parts) > 1 or (parts and as_json):
        raise typer.BadParameter("give one of --modelfile, --template, --system, --parameters, --license")
    if parts:
        typer.echo(_part(connect(host), model, parts[0]))
        return
    try:
        info = connect(host).info(model)
    except ModelNotFound:
        from .catalog_show import catalog_info

        info = catalog_info(model)
        if info is None:
            raise
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{info.name}[/bold]  ({kind(info)})")
    facts = {
        "engine": info.engine,
        "family": info.family,
        "parameters": info.parameter_size,
        "quantization": info.quantization_level,
        "context length": str(info.context_length or ""),
        "capabilities": ", ".join(info.capabilities),
        "license": info.license,
        "size": human_size(info.size) if info.size else "",
    }
    for key, value in facts.items():
        if value:
            console.print(f"  {key:<15} {value}")
    if info.summary:
        console.print(f"\n{info.summary}")
    if info.description:
        console.print(f"\n{info.description}", markup=False)


def _part(client, model: str, part: str) -> str:
    """One part of a model, as ``ollama show --modelfile`` (and the others) print it: from the
    manifest in process, from ``/api/show`` when a server answers."""
    from ..store.modelfile import parameters_text, to_modelfile

    manifest = client.manifest(model)
    if manifest is None:  # a server: Ollama's fields of /api/show
        shown = client._call("POST", "/api/show", {"model": model}, model).json()
        return str(shown.get(part) or "").rstrip("\n")
    if part == "modelfile":
        return to_modelfile(manifest).rstrip("\n")
    if part == "parameters":
        return parameters_text(manifest.parameters)
    if part == "license":
        return manifest.info.license
    return manifest.template if part == "template" else manifest.system
