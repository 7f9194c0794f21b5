"""``imgscribe create NAME --from PATH``: register local model files under a name."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command()
def create(
    name: str = typer.Argument(..., help="The name to give the model, e.g. my-llava or qwen2-vl:2b."),
    source: Path = typer.Option(
        ..., "--from", "-f",
        help="A Hugging Face checkpoint folder (config.json + safetensors; run by transformers) "
        "or a .gguf file (run by llama.cpp).",
    ),  # fmt: skip
    mmproj: Path = typer.Option(None, "--mmproj", help="The vision projector of a GGUF model."),
) -> None:
    """Register a local model (used in place, not copied) so that run, describe and the API can use it."""
    from ..store import Store
    from ..store.importer import create_from_path

    info = create_from_path(Store(), name, source, mmproj=mmproj)
    details = ", ".join(x for x in (info.family, info.parameter_size, info.quantization_level) if x)
    typer.echo(f"created {info.name} ({info.engine}: {details})")
