"""``imgscribe create NAME -f Modelfile``, ``--from PATH`` or ``--remote URL``: register a model under a name."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command()
def create(
    name: str = typer.Argument(..., help="The name to give the model, e.g. my-llava or qwen2-vl:2b."),
    modelfile: Path = typer.Option(
        None, "--file", "-f",
        help="A Modelfile (FROM a model or its files, SYSTEM, TEMPLATE, PARAMETER, MESSAGE, LICENSE; "
        "see docs/modelfile.md). Relative paths in it are read from its folder.",
    ),  # fmt: skip
    source: Path = typer.Option(
        None, "--from",
        help="A Hugging Face checkpoint folder (config.json + safetensors; run by transformers) "
        "or a .gguf file (run by llama.cpp).",
    ),  # fmt: skip
    mmproj: Path = typer.Option(None, "--mmproj", help="The vision projector of a GGUF model."),
    remote: str = typer.Option(None, "--remote", help="An Ollama or OpenAI-compatible server's URL."),
    remote_model: str = typer.Option(None, "--remote-model", help="The model's name on that server."),
    api: str = typer.Option(None, "--api", help="ollama or openai (default: asked of the server)."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding its API key."),
) -> None:
    """Register a Modelfile's model, local files (used in place, not copied) or a remote server's
    model, so that run, describe and the API can use it."""
    from ..store import Store
    from ..store.names import parse_name

    parse_name(name)  # a bad name is refused before any file is read or server asked
    given = [flag for flag, value in (("-f/--file", modelfile), ("--from", source), ("--remote", remote)) if value]
    if len(given) != 1:
        raise typer.BadParameter("give one of -f Modelfile, --from PATH or --remote URL", param_hint="-f/--from/--remote")
    if api not in (None, "ollama", "openai"):
        raise typer.BadParameter("expected ollama or openai", param_hint="--api")
    if modelfile is not None and mmproj is not None:
        raise typer.BadParameter("a Modelfile names the projector with a second FROM line", param_hint="--mmproj")
    store = Store()
    if modelfile is not None:
        info = _from_modelfile(store, name, modelfile)
    elif remote:
        from ..store.import_remote import manifest_for_remote

        manifest = manifest_for_remote(name, remote, remote_model, api, api_key_env=api_key_env)
        info = store.create(name, manifest)
    else:
        from ..store.importer import create_from_path

        info = create_from_path(store, name, source, mmproj=mmproj)
    details = ", ".join(x for x in (info.family, info.parameter_size, info.quantization_level) if x)
    typer.echo(f"created {info.name} ({info.engine}: {details})")


def _from_modelfile(store, name: str, path: Path):
    """The Modelfile's model: a derived one shares its parent's files (the same blobs or paths);
    one FROM files uses them in place."""
    from ..store.modelfile import apply, manifest_for_files, read_modelfile

    mf = read_modelfile(path)
    for note in mf.notes:
        typer.echo(f"note: {note}", err=True)
    source = None
    if mf.model is not None:
        manifest = store.resolve(mf.model)
    else:
        manifest, source = manifest_for_files(name, mf.paths)
    return store.create(name, apply(manifest, **mf.request()), source=source)
