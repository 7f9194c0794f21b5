"""The Typer application every command module adds itself to (``cli/__init__.py`` runs it)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="imgscribe",
    help="Describe and answer questions about images with local vision models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from ..version import __version__

        typer.echo(f"imgscribe version {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and where commands run."),
    force: bool = typer.Option(False, "--force", help="Load models even when the memory estimate says they will not fit."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, expose_value=False,
                                 help="Print imgscribe's version and exit."),
) -> None:
    """imgscribe: local image description, Ollama-compatible."""
    from ..scheduler import configure

    # An override for every scheduler this command makes (in-process loads, serve); a later command
    # in the same process without --force is back to the setting's own value.
    configure(ignore_memory=True if force else None)
