"""Small helpers shared by the commands: option parsing and message rendering."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..client import Client
    from ..types import Format, Metrics, Options

# The client and the request types (pydantic, Pillow) load when a command runs, not when the CLI starts.


def connect(host: str | None = None, local: bool = False) -> Client:
    """:func:`imgscribe.client.connect`, imported on the first call."""
    from ..client import connect as _connect

    return _connect(host, local)


def parse_format(value: str | None) -> Format:
    """``json``, a JSON schema given inline, or the path of a .json file holding one."""
    if not value:
        return None
    if value.strip() == "json":
        return "json"
    text = value if value.lstrip().startswith(("{", "[")) else _read_schema_file(value)
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--format: expected 'json' or a JSON schema ({exc.msg} at char {exc.pos})") from None
    if not isinstance(schema, dict):
        raise InvalidRequest("--format: a JSON schema must be an object")
    from ..types import check_format

    try:
        return check_format(schema)  # what every door checks: refused before any image is read
    except InvalidRequest as exc:
        raise InvalidRequest(f"--format: {exc}") from None


def _read_schema_file(value: str) -> str:
    """The text of a schema file; a value that is neither JSON nor a readable file is an error."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise InvalidRequest(f"--format: {value} is a folder; give 'json', a JSON schema or a .json file")
    if not path.is_file():
        if path.suffix or "/" in value or "\\" in value:
            raise InvalidRequest(f"--format: no such file: {value}")
        return value  # not a path: let the JSON parser say what is wrong with it
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidRequest(f"--format: cannot read {value}: {reason}") from None


def parse_options(pairs: list[str] | None) -> Options:
    """``-o temperature=0.2 -o stop=END`` to :class:`Options` (values parsed as JSON when they can
    be), checked as every door checks options; a name that is no option is refused (a typing mistake)."""
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        values[key.strip()] = value
    from ..types import options_from

    try:
        return options_from(values, unknown="refuse")
    except InvalidRequest as exc:
        raise InvalidRequest(f"--option: {exc}") from None


def print_stats(metrics: Metrics) -> None:
    """Timings like ``ollama run --verbose``, on stderr."""
    def secs(ns: int) -> str:
        return f"{ns / 1e9:.3f}s"

    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns else "n/a"

    lines = [
        ("total duration", secs(metrics.total_duration)),
        ("load duration", secs(metrics.load_duration)),
        ("image encode duration", secs(metrics.image_encode_duration)),
        ("prompt eval count", f"{metrics.prompt_eval_count} token(s)"),
        ("prompt eval duration", secs(metrics.prompt_eval_duration)),
        ("prompt eval rate", rate(metrics.prompt_eval_count, metrics.prompt_eval_duration)),
        ("eval count", f"{metrics.eval_count} token(s)"),
        ("eval duration", secs(metrics.eval_duration)),
        ("eval rate", rate(metrics.eval_count, metrics.eval_duration)),
    ]
    for label, value in lines:
        if label == "image encode duration" and not metrics.image_encode_duration:
            continue  # not reported separately by this engine (llama.cpp counts it in the prompt)
        print(f"{label + ':':<22} {value}", file=sys.stderr)
