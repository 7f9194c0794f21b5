"""``imgscribe describe PATH...``: describe many images; resumable; a bad image never stops the run.

The work happens in :mod:`imgscribe.batch` (docs/batch.md); this module turns options into a
:class:`~imgscribe.batch.job.Job`, shows progress and prints the summary.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

from typing import TYPE_CHECKING

import typer

from .app import app

if TYPE_CHECKING:
    from rich.progress import Progress

# The batch, the client and Rich load when the command runs, not when the CLI starts.

_RAY = "Scale-out on Ray"
_OUT = "Outputs"
_IN = "Inputs and prompts"


def _progress() -> Progress | None:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]describing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=Console(stderr=True), transient=True,
    )  # fmt: skip


def _choice(value: str | None, choices: tuple[str, ...], flag: str) -> str | None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}, got {value!r}", param_hint=flag)
    return value


@app.command()
def describe(
    paths: list[str] = typer.Argument(None, help="Image files, folders (recursive), globs, URLs; '-' reads a list from stdin."),
    model: str = typer.Option("builtin", "--model", "-m", help="Model name."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="What to ask; placeholders {filename} {stem} {folder} {path} {exif.TAG} {sidecar}.", rich_help_panel=_IN),
    prompts: str = typer.Option(None, "--prompts", "-P", help="A TOML/JSON/YAML file of named prompts (caption, tags, alt...): one field each.", rich_help_panel=_IN),
    format: str = typer.Option(None, "--format", help="'json' or a JSON schema (inline or a file): structured fields.", rich_help_panel=_IN),
    option: list[str] = typer.Option(None, "--option", "-o", help="Model option KEY=VALUE (repeatable).", rich_help_panel=_IN),
    video_sampling: str = typer.Option(None, "--video-sampling", help="A clip's frames: uniform (default) or scenes (at its scene changes).", rich_help_panel=_IN),
    lists: list[str] = typer.Option(None, "--list", "-l", help="A text or CSV file listing paths or URLs ('-': stdin). Repeatable.", rich_help_panel=_IN),
    out: list[str] = typer.Option(None, "--out", "-O", help="Output file: .jsonl (default: stdout), .csv, .parquet; '-' is stdout. Repeatable.", rich_help_panel=_OUT),
    text: bool = typer.Option(False, "--text", help="On stdout, print each path and answer as text instead of JSON records.", rich_help_panel=_OUT),
    manifest: str = typer.Option(None, "--manifest", help="Resume file (default: the .jsonl output, or NAME.manifest.jsonl next to --out).", rich_help_panel=_OUT),
    sidecar: str = typer.Option(None, "--sidecar", help="Write FIELD (a prompt name, a structured field, or a '{a}, {b}' template) to a .txt next to each image.", rich_help_panel=_OUT),
    sidecar_ext: str = typer.Option(".txt", "--sidecar-ext", help="Sidecar extension.", rich_help_panel=_OUT),
    sidecar_existing: str = typer.Option("keep", "--sidecar-existing", help="An existing sidecar: keep, replace, append, prepend.", rich_help_panel=_OUT),
    xmp: str = typer.Option(None, "--xmp", help="Write description and keywords as XMP/EXIF: 'embed' (JPEG, PNG; others get a sidecar) or 'sidecar' (.xmp).", rich_help_panel=_OUT),
    xmp_description: str = typer.Option(None, "--xmp-description", help="Field for dc:description and EXIF ImageDescription.", rich_help_panel=_OUT),
    xmp_keywords: str = typer.Option(None, "--xmp-keywords", help="Field for dc:subject (a list, or text split on commas).", rich_help_panel=_OUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images that the manifest says are done."),
    parallel: int = typer.Option(None, "--parallel", "-j", min=1, help="Requests in flight (default: the model's slots + 1; 4 per server). In process, the model also opens up to N slots, as many as the memory allows (default: 4 for llama.cpp); IMGSCRIBE_NUM_PARALLEL sets the slots instead."),
    read_ahead: int = typer.Option(4, "--read-ahead", min=1, help="Images decoded ahead of the model."),
    host: list[str] = typer.Option(None, "--host", help="Server to use (repeatable: requests are spread over them)."),
    local: bool = typer.Option(False, "--local", help="Run in this process even if a server answers."),
    ray: bool = typer.Option(False, "--ray", help="Run on Ray Data (a private local instance unless --ray-address/RAY_ADDRESS).", rich_help_panel=_RAY),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster to join (default: RAY_ADDRESS).", rich_help_panel=_RAY),
    ray_actors: int = typer.Option(1, "--ray-actors", min=1, help="Actors, each holding one loaded model (or server clients).", rich_help_panel=_RAY),
    ray_cpus: float = typer.Option(None, "--ray-cpus", min=0, help="CPUs per actor (default: a share that leaves Ray one CPU).", rich_help_panel=_RAY),
    ray_gpus: float = typer.Option(0, "--ray-gpus", min=0, help="GPUs per actor.", rich_help_panel=_RAY),
    ray_batch: int = typer.Option(16, "--ray-batch-size", min=1, help="Images per actor call.", rich_help_panel=_RAY),
) -> None:
    """Describe every image: one record per image (path, sha256, answers, timings, error).

    A rerun skips what is done (by image content, model, prompt and options); kill it at any
    moment and rerun. CSV and Parquet are written when the run ends.
    """
    from ..api import DEFAULT_PROMPT
    from ..batch.job import Job, execute
    from ..batch.prompts import DEFAULT_NAME, Prompt, load_prompt_file
    from ..batch.writers.sidecar import MODES as SIDECAR_MODES
    from ..batch.writers.xmp import MODES as XMP_MODES
    from .common import connect, parse_format, parse_options
    from .run import _sampling

    fmt = parse_format(format)
    if prompts:
        if prompt:
            raise typer.BadParameter("use --prompt or --prompts, not both", param_hint="--prompts")
        prompt_list = load_prompt_file(prompts, fmt)
    else:
        prompt_list = [Prompt(DEFAULT_NAME, prompt or DEFAULT_PROMPT, fmt)]
    if not paths and not lists:
        raise typer.BadParameter("give image paths, folders, globs, --list FILE or '-'", param_hint="PATHS")
    job = Job(
        sources=list(paths or []), model=model, prompts=prompt_list,
        options=parse_options([*(option or []), *_sampling(video_sampling)]),
        lists=list(lists or []), outputs=list(out or []), manifest=manifest,
        sidecar=sidecar, sidecar_ext=sidecar_ext,
        sidecar_existing=_choice(sidecar_existing, SIDECAR_MODES, "--sidecar-existing"),
        xmp=_choice(xmp, XMP_MODES, "--xmp"), xmp_description=xmp_description, xmp_keywords=xmp_keywords,
        overwrite=overwrite, parallel=parallel, read_ahead=read_ahead, hosts=list(host or []), local=local, text=text,
    )  # fmt: skip
    clients = [connect(h) for h in job.hosts] if job.hosts else [connect(None, local)]
    ray_options = None
    if ray or ray_address:
        ray_options = {"address": ray_address, "actors": ray_actors, "cpus": ray_cpus, "gpus": ray_gpus,
                       "batch_size": ray_batch}  # fmt: skip

    progress = _progress()
    task = None

    def on_total(total: int) -> None:
        nonlocal task
        if progress:
            task = progress.add_task("", total=total)

    def on_record(record: dict) -> None:
        if record.get("error"):
            line = f"error: {record['path']}: {record['error']}"
            progress.console.print(line, markup=False, highlight=False) if progress else print(line, file=sys.stderr)
        if progress and task is not None:
            progress.update(task, advance=1, description=str(record["path"]).rsplit("/", 1)[-1])

    def on_note(line: str) -> None:
        progress.console.print(line, markup=False, highlight=False) if progress else print(line, file=sys.stderr)

    try:
        with progress or nullcontext():
            stats, sink = execute(job, clients, ray=ray_options, on_record=on_record, on_total=on_total,
                                  on_note=on_note)  # fmt: skip
    except KeyboardInterrupt:
        print("Stopped: the images finished so far are saved; run the same command again to resume.", file=sys.stderr)
        raise
    where = sink.where
    print(stats.summary() + (f"; results in {where}" if where else ""), file=sys.stderr)
    for writer in sink.effects:
        kept = getattr(writer, "kept", 0)
        if kept:
            print(f"{kept} existing sidecar(s) kept (--sidecar-existing replace to replace them)", file=sys.stderr)
        instead = getattr(writer, "sidecars_instead", 0)
        if instead:
            print(f"{instead} image(s) got a .xmp sidecar: their format cannot hold XMP in place", file=sys.stderr)
    if stats.failed:
        raise typer.Exit(1)
