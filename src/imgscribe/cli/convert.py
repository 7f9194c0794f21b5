"""``imgscribe convert CHECKPOINT``: GGUF + mmproj from a Hugging Face checkpoint folder, with
llama.cpp's own converter (it ships in the same source as the llama-server binary)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import app


@app.command("convert")
def convert_command(
    src: Path = typer.Argument(..., help="A Hugging Face checkpoint folder (config.json + safetensors)."),
    out: Path = typer.Option(None, "--out", "-O", help="Folder for the GGUF files (default: SRC-gguf beside SRC)."),
    outtype: str = typer.Option("f16", "--outtype", help="f32, f16, bf16 or q8_0."),
    quantize: str = typer.Option(None, "--quantize", "-q",
                                 help="Then quantize the model with llama-quantize (e.g. Q4_K_M)."),  # fmt: skip
    create: str = typer.Option(None, "--create", help="Also register the result as model NAME (llamacpp engine)."),
) -> None:
    """Convert a checkpoint to GGUF (model + mmproj projector) for the llamacpp engine."""
    from ..engines.llamacpp.convert import OUTTYPES, convert

    _check(src, outtype.lower(), OUTTYPES)
    print(f"converting {src} with llama.cpp's convert_hf_to_gguf.py ...", file=sys.stderr)
    result = convert(src, out, outtype=outtype.lower(), quantize_to=quantize)
    typer.echo(f"model      {result.model}")
    if result.mmproj:
        typer.echo(f"projector  {result.mmproj}")
    if create:
        from ..store import Store
        from ..store.importer import create_from_path

        info = create_from_path(Store(), create, result.model, mmproj=result.mmproj)
        typer.echo(f"created    {info.name}")


def _check(src: Path, outtype: str, outtypes: tuple[str, ...]) -> None:
    """Say what is wrong with the arguments before announcing a conversion."""
    if not src.exists():
        raise typer.BadParameter(f"no such folder: {src}", param_hint="SRC")
    if not (src / "config.json").is_file():
        raise typer.BadParameter(
            f"{src} is not a Hugging Face checkpoint folder (no config.json); give the folder holding "
            "config.json and the .safetensors files", param_hint="SRC",
        )  # fmt: skip
    if outtype not in outtypes:
        raise typer.BadParameter(f"expected one of {', '.join(outtypes)}, got {outtype!r}", param_hint="--outtype")
