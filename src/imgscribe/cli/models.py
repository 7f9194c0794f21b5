"""``imgscribe list`` and ``imgscribe show``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from ..client import connect
from ..errors import ModelNotFound
from ..types import ModelInfo
from .app import app


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
    """List the models available here."""
    infos = connect(host).list()
    if as_json:
        typer.echo(json.dumps([i.model_dump() for i in infos], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "ENGINE", "KIND", "SIZE", "MODIFIED"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.name, info.engine, kind(info), human_size(info.size), info.modified_at[:19] or "-")
    Console().print(table)


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
