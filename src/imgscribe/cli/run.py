"""``imgscribe run MODEL [PROMPT]``: one answer streamed to stdout, or an interactive chat."""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ImgscribeError, ModelNotFound
from .app import app
from .common import connect, parse_format, parse_options, print_stats
from .pull import show_progress

if TYPE_CHECKING:
    from ..client import Client
    from ..types import ChatRequest, Format, Image, Message, Metrics, Options, Video

# The request types, image intake and the client load when a command runs, not when the CLI starts.

HELP = """Commands:
  /bye            leave
  /clear          forget the conversation so far
  /help, /?       this help
Put an image path in a line to attach it, e.g.  What is in /path/to/photo.jpg ?"""


def _load_images(paths: list[Path], clip: Callable[[], dict[str, Any]] | dict[str, Any] | None = None
                 ) -> list[Image | Video]:  # fmt: skip
    """The files, a clip sampled as ``clip`` says (a callable: asked once, only when there are files)."""
    from ..types import Video
    from ..video import read_media

    images = []
    settings = (clip() if callable(clip) else clip or {}) if paths else {}
    for path in paths:
        images.append(read_media(path, **settings))  # a clip: its frames, sampled (imgscribe.video)
        kind = "video" if isinstance(images[-1], Video) else "image"
        print(f"Added {kind} '{path}'", file=sys.stderr)
    return images


def clip_settings_of(client: Client, model: str, options: Options | None) -> dict[str, Any]:
    """``read_media``'s clip arguments: the options, else the model's parameters (its Modelfile's
    ``PARAMETER video_max_tokens``; a server keeps its store to itself), else the defaults."""
    from ..video import read_media_args

    try:
        manifest = client.manifest(model) if hasattr(client, "manifest") else None
    except ImgscribeError:
        manifest = None
    return read_media_args(options, manifest.parameters if manifest is not None else None)


def _user_turn(text: str, extra: list[Path] | None = None,
               clip: Callable[[], dict[str, Any]] | dict[str, Any] | None = None) -> Message:  # fmt: skip
    from ..api import DEFAULT_PROMPT
    from ..types import Message
    from .prompt_paths import extract_image_paths

    extracted = extract_image_paths(text)
    images = _load_images([*(extra or []), *extracted.paths], clip)
    prompt = extracted.prompt or (DEFAULT_PROMPT if images else "")
    return Message.with_media("user", prompt, images)


def _stream(client: Client, request: ChatRequest, write: Callable[[str], None]) -> tuple[str, Metrics]:
    from ..engines.frames import flatten
    from ..types import Metrics

    if request.videos and getattr(client, "where", "in-process") != "in-process":
        request = flatten(request)  # a server takes images over Ollama's API: a clip as its frames and their times
    parts: list[str] = []
    metrics = Metrics()
    for chunk in client.chat(request):
        if chunk.text:
            write(chunk.text)
            parts.append(chunk.text)
        if chunk.done:
            metrics = chunk.metrics or metrics
    write("\n")
    return "".join(parts), metrics


def chat_loop(
    client: Client,
    model: str,
    read_line: Callable[[str], str],
    write: Callable[[str], None],
    options: Options | None = None,
    format: Format = None,
    system: str | None = None,
    verbose: bool = False,
) -> None:
    """The interactive chat. ``read_line`` raises EOFError at the end of input."""
    from ..types import ChatRequest, Message, Options

    history: list[Message] = [Message("system", system)] if system else []
    clip = functools.cache(lambda: clip_settings_of(client, model, options))  # read with the first file
    while True:
        try:
            line = read_line(">>> ").strip()
        except EOFError:
            write("\n")
            return
        if not line:
            continue
        if line in ("/bye", "/exit", "/quit"):
            return
        if line in ("/help", "/?"):
            write(HELP + "\n")
            continue
        if line == "/clear":
            history = history[:1] if system else []
            write("Cleared the conversation.\n")
            continue
        try:
            turn = _user_turn(line, clip=clip)
            request = ChatRequest(model, [*history, turn], options or Options(), format)
            answer, metrics = _stream(client, request, write)
        except ImgscribeError as exc:  # one bad line never ends the session
            write(f"Error: {exc}\n")
            continue
        history += [turn, Message("assistant", answer)]
        if verbose:
            print_stats(metrics)


def _text(raw: str) -> str:
    """Input as valid text: bytes that are not UTF-8 become U+FFFD instead of failing later."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_line(prompt: str) -> str:
    return _text(input(prompt))


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def ensure_model(client: Client, model: str, insecure: bool = False) -> None:
    """``ollama run``'s first step: a model that is not here is pulled (through the same client,
    with ``imgscribe pull``'s progress). One that the registry lacks too is a ModelNotFound that
    says so and names the closest models here. Ctrl-C stops the transfers (what arrived is kept
    for the next pull)."""
    try:
        client.info(model)
        return
    except ModelNotFound:
        pass
    try:
        show_progress(client.pull(model, insecure=insecure))
    except ModelNotFound as exc:
        raise _nowhere(client, model, exc) from None


def _nowhere(client: Client, model: str, exc: ModelNotFound) -> ModelNotFound:
    """Ollama's "pull model manifest: file does not exist", with the registry's reason and the
    closest local names."""
    reason = exc.message
    prefix = f"model '{model}' not found"
    if reason.startswith(prefix):
        reason = reason[len(prefix) :].lstrip(", ")
    why = f": {reason}" if reason else ""
    sentence = f"model '{model}' is neither here nor in the registry (pull model manifest: file does not exist{why})"
    close = _closest(client, model)
    if close:
        sentence += f"; models here with a similar name: {', '.join(close)}"
    err = ModelNotFound(model)
    err.args = (sentence,)
    return err


def _short(name: str) -> str:
    return name.removesuffix(":latest")


def _closest(client: Client, model: str) -> list[str]:
    """Local names close to ``model`` (compared without host, namespace and ':latest')."""
    try:
        names = [_short(info.name) for info in client.list()]
    except ImgscribeError:
        return []
    by_key = {name.rsplit("/", 1)[-1]: name for name in names}
    by_key.update({name: name for name in names})
    wanted = _short(model).rsplit("/", 1)[-1]
    matches = difflib.get_close_matches(wanted, list(by_key), n=6, cutoff=0.6)
    return list(dict.fromkeys(by_key[key] for key in matches))[:3]


@app.command()
def run(
    model: str = typer.Argument(..., help="Model name, e.g. builtin or llava:7b."),
    prompt: list[str] = typer.Argument(None, help="Prompt; image paths inside it are attached."),
    image: list[Path] = typer.Option(None, "--image", "-i", help="Attach an image (repeatable)."),
    format: str = typer.Option(None, "--format", help="'json' or a JSON schema (inline or a file)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Model option KEY=VALUE (repeatable)."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    verbose: bool = typer.Option(False, "--verbose", help="Print timings and token rates."),
    host: str = typer.Option(None, "--host", help="Server to use (default: IMGSCRIBE_HOST if one answers)."),
    local: bool = typer.Option(False, "--local", help="Run in this process even if a server answers."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a registry that speaks plain http (for a pull)."),
    video_sampling: str = typer.Option(None, "--video-sampling", help="A clip's frames: uniform (default) or scenes "
                                       "(at its scene changes); the video_sampling option."),
) -> None:
    """Answer one prompt (streamed), or chat interactively when no prompt is given. A model that
    is not here is pulled first, as ``ollama run`` does."""
    from ..types import ChatRequest, Message

    client = connect(host, local)
    options, fmt = parse_options([*(option or []), *_sampling(video_sampling)]), parse_format(format)
    text = " ".join(prompt or [])
    if not text and not image and sys.stdin is None:  # started with stdin closed (``<&-``)
        raise typer.BadParameter("no prompt, and stdin is closed: give a PROMPT or --image", param_hint="PROMPT")
    ensure_model(client, model, insecure)  # usage errors first, then the pull (as ollama run)
    if not text and sys.stdin is not None:
        if not image and sys.stdin.isatty():
            chat_loop(client, model, _read_line, _stdout, options, fmt, system, verbose)
            return
        if not sys.stdin.isatty():
            text = _text(sys.stdin.read())
    messages = [Message("system", system)] if system else []
    request = ChatRequest(model, [*messages, _user_turn(text, image, lambda: clip_settings_of(client, model, options))], options, fmt)
    _, metrics = _stream(client, request, _stdout)
    if verbose:
        print_stats(metrics)


def _sampling(value: str | None) -> list[str]:
    """``--video-sampling`` as the option it sets (a bad word is a usage error naming the choices)."""
    from ..video import SAMPLINGS

    if value is None:
        return []
    if value not in SAMPLINGS:
        raise typer.BadParameter(f"{value!r}: use uniform or scenes", param_hint="--video-sampling")
    return [f"video_sampling={value}"]
