"""Ollama's Modelfile: reading one into what ``create`` needs, and writing a model back as one.

Instructions (names without case, as Ollama reads them)::

    FROM llava                      an existing model; or a GGUF file, a folder (a Hugging Face
    FROM ./model.gguf               checkpoint, or GGUF files); two FROM files: a model GGUF and
    FROM ./mmproj.gguf              its projector (the headers tell which is which)
    SYSTEM / TEMPLATE               text
    PARAMETER name value            an option of :data:`~imgscribe.types.MODEL_PARAMETERS`, typed;
                                    ``stop`` may be repeated and accumulates
    MESSAGE role content            role: system, user or assistant
    LICENSE text                    repeatable
    ADAPTER                         refused: LoRA adapters are not supported

Values are the rest of the line (trimmed), a ``"double-quoted"`` string or a triple-quoted one
(three double quotes on each side); both kinds of quotes may span lines, and, as in Ollama, a quoted value ends at the first line
end where the text so far ends with its closing quotes (so a value may hold quotes). There are no
escapes. ``#`` starts a comment line. Relative paths are resolved against the Modelfile's folder.
Every mistake is an :class:`~imgscribe.errors.InvalidRequest` that names the line.

``RENDERER``, ``PARSER`` and ``REQUIRES`` (Ollama's own) are accepted and ignored with a note.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from ..errors import InvalidRequest
from ..types import (
    MODEL_PARAMETERS,
    ModelManifest,
    ModelParameters,
    check_model_parameters,
    check_option,
)

__all__ = ["Command", "Modelfile", "apply", "manifest_for_files", "parse_commands", "parse_modelfile", "read_modelfile", "to_modelfile"]

INSTRUCTIONS = ("from", "system", "template", "parameter", "message", "license", "adapter",
                "draft", "renderer", "parser", "requires")  # fmt: skip
MESSAGE_ROLES = ("system", "user", "assistant")
_IGNORED = ("renderer", "parser", "requires")
_TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, which Ollama uses, without case
_FALSE = ("0", "f", "false")


@dataclass
class Command:
    """One instruction: its name (lower case), its argument(s), the line it starts on."""

    name: str
    value: str
    line: int
    key: str = ""  # PARAMETER's name, MESSAGE's role


@dataclass
class Modelfile:
    """What a Modelfile asks for. ``model``: the existing model ``FROM`` names; ``paths``: the
    files or folders ``FROM`` names, absolute (one of the two is set)."""

    model: str | None = None
    paths: list[Path] = field(default_factory=list)
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was ignored, for the user

    def request(self) -> dict[str, Any]:
        """The ``/api/create`` fields besides ``model``/``from``/``files`` (the ones that are set)."""
        out: dict[str, Any] = {}
        if self.system is not None:
            out["system"] = self.system
        if self.template is not None:
            out["template"] = self.template
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.messages:
            out["messages"] = [dict(m) for m in self.messages]
        if self.license:
            out["license"] = list(self.license)
        return out


def _error(line: int, message: str) -> InvalidRequest:
    return InvalidRequest(f"Modelfile line {line}: {message}")


# -- reading -------------------------------------------------------------------------------------


class _Scanner:
    def __init__(self, text: str):
        text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        self.text, self.pos, self.line = text, 0, 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        ch = self.peek()
        self.pos += 1
        if ch == "\n":
            self.line += 1
        return ch

    def skip_blank(self) -> None:
        """Spaces, newlines and comment lines."""
        while self.peek():
            if self.peek() in " \t\n":
                self.advance()
            elif self.peek() == "#":
                while self.peek() and self.peek() != "\n":
                    self.advance()
            else:
                return

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.advance()

    def word(self, allowed) -> str:
        start = self.pos
        while self.peek() and allowed(self.peek()):
            self.advance()
        return self.text[start : self.pos]

    def value(self, what: str) -> str:
        """The rest of the line, or a quoted value (Ollama's rule: it ends at the first line end
        where the text so far ends with its closing quotes)."""
        line = self.line
        self.skip_spaces()
        rest = self.text[self.pos :]
        quote = '"""' if rest.startswith('"""') else '"' if rest.startswith('"') else ""
        if not quote:
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            value = self.text[self.pos : end].strip()
            self.pos = end
            if not value:
                raise _error(line, f"{what} needs a value")
            return value
        search = self.pos
        while True:
            end = self.text.find("\n", search)
            end = len(self.text) if end < 0 else end
            so_far = self.text[self.pos : end].rstrip()
            if len(so_far) >= 2 * len(quote) and so_far.endswith(quote):
                value = so_far[len(quote) : -len(quote)]
                while self.pos < end:
                    self.advance()
                return value
            if end >= len(self.text):
                raise _error(line, f"{what}: the {quote} string that starts here is never closed")
            search = end + 1


def parse_commands(text: str) -> list[Command]:
    """The instructions of a Modelfile, in order, checked for form (not meaning)."""
    scan = _Scanner(text)
    commands: list[Command] = []
    while True:
        scan.skip_blank()
        if not scan.peek():
            break
        line = scan.line
        name = scan.word(lambda c: c.isascii() and c.isalpha())
        if not name or scan.peek() not in (" ", "\t", "\n", ""):
            bad = name + scan.word(lambda c: not c.isspace())
            raise _error(line, f"unknown instruction {bad!r}: use {', '.join(i.upper() for i in INSTRUCTIONS)}")
        lower = name.lower()
        if lower not in INSTRUCTIONS:
            raise _error(line, f"unknown instruction {name!r}: use {', '.join(i.upper() for i in INSTRUCTIONS)}")
        if scan.peek() in ("\n", ""):
            raise _error(line, f"{name.upper()} needs a value")
        key = ""
        if lower in ("parameter", "message"):
            scan.skip_spaces()
            key = scan.word(lambda c: c.isascii() and (c.isalnum() or c == "_"))
            what = "PARAMETER needs a name and a value" if lower == "parameter" else "MESSAGE needs a role and a text"
            if not key or scan.peek() not in (" ", "\t"):
                if lower == "message" and key and scan.peek() not in ("\n", ""):
                    raise _error(line, f"invalid MESSAGE role {key + scan.word(lambda c: not c.isspace())!r}: "
                                       "use system, user or assistant")  # fmt: skip
                raise _error(line, what)
            key = key.lower()
            if lower == "message" and key not in MESSAGE_ROLES:
                raise _error(line, f"invalid MESSAGE role {key!r}: use system, user or assistant")
        value = scan.value(f"{name.upper()} {key}".strip())
        commands.append(Command(lower, value, line, key))
    return commands


def parse_value(name: str, text: str, line: int) -> Any:
    """A PARAMETER's text as its option's type (as Ollama's ``FormatParams``), checked."""
    if name not in MODEL_PARAMETERS:
        raise _error(line, f"unknown parameter {name!r}: a PARAMETER is one of Ollama's options "
                           "(temperature, num_ctx, stop, seed, top_p...)")  # fmt: skip
    kinds = get_args(ModelParameters.model_fields[name].annotation)
    value: Any = text
    try:
        if bool in kinds:
            word = text.lower()
            if word not in _TRUE + _FALSE:
                raise ValueError
            value = word in _TRUE
        elif int in kinds:
            value = int(text, 10)
        elif float in kinds:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
    except ValueError:
        kind = "true or false" if bool in kinds else "a whole number" if int in kinds else "a number"
        raise _error(line, f"PARAMETER {name}: {text!r} is not {kind}") from None
    try:
        value = check_option(name, value)
        check_model_parameters({name: value})
    except (InvalidRequest, ValueError) as exc:
        raise _error(line, f"PARAMETER {name}: {exc}") from None
    return value


def parse_modelfile(text: str, base: str | os.PathLike | None = None) -> Modelfile:
    """A Modelfile's meaning. ``base``: the folder relative ``FROM`` paths are resolved against
    (the Modelfile's own; default: the current folder)."""
    folder = Path(base) if base is not None else Path.cwd()
    out = Modelfile()
    froms: list[Command] = []
    for cmd in parse_commands(text):
        if cmd.name == "from":
            froms.append(cmd)
        elif cmd.name in ("system", "template"):
            if cmd.name == "template":
                _check_template(cmd.value, cmd.line)
            setattr(out, cmd.name, cmd.value)
        elif cmd.name == "parameter":
            value = parse_value(cmd.key, cmd.value, cmd.line)
            if cmd.key == "stop":
                out.parameters["stop"] = [*out.parameters.get("stop", []), *value]
            else:
                out.parameters[cmd.key] = value
        elif cmd.name == "message":
            out.messages.append({"role": cmd.key, "content": cmd.value})
        elif cmd.name == "license":
            out.license.append(cmd.value)
        elif cmd.name == "adapter":
            raise _error(cmd.line, "ADAPTER is not supported: imgscribe does not apply LoRA adapters; "
                                   "merge the adapter into the model's weights and import the result")  # fmt: skip
        elif cmd.name == "draft":
            raise _error(cmd.line, "DRAFT is not supported: imgscribe does not run draft models")
        else:
            out.notes.append(f"line {cmd.line}: {cmd.name.upper()} ignored (imgscribe uses the model's own chat template)"
                             if cmd.name != "requires" else f"line {cmd.line}: REQUIRES ignored")  # fmt: skip
    if not froms:
        raise InvalidRequest("Modelfile: no FROM line: name the model (FROM llava) or its files (FROM ./model.gguf)")
    for cmd in froms:
        path = _path(cmd.value, folder)
        if path is not None:
            out.paths.append(path)
        elif _looks_like_path(cmd.value):
            raise _error(cmd.line, f"FROM {cmd.value}: no such file or folder ({_resolve(cmd.value, folder)})")
        elif out.model is not None:
            raise _error(cmd.line, f"FROM {cmd.value}: only one FROM may name a model (the first named {out.model!r})")
        else:
            out.model = cmd.value
    if out.model is not None and out.paths:
        raise _error(froms[-1].line, "FROM names both a model and files: start from one or the other")
    if len(out.paths) > 2:
        raise _error(froms[2].line, "at most two FROM files: a model GGUF and its projector (mmproj) GGUF")
    if len(out.paths) == 2 and not all(p.is_file() for p in out.paths):
        raise _error(froms[1].line, "two FROM lines must both be GGUF files: a model and its projector")
    return out


def read_modelfile(path: str | os.PathLike) -> Modelfile:
    """A Modelfile from disk, its relative paths resolved against its folder."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read the Modelfile {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Windows tools write UTF-16 with a byte-order mark
            text = raw.decode("utf-16")
        else:
            raise InvalidRequest(f"the Modelfile {path} is not UTF-8 text") from None
    return parse_modelfile(text, path.resolve().parent)


def _resolve(value: str, folder: Path) -> Path:
    return (folder / Path(value).expanduser()).resolve()


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", ".\\", "..\\")) or value in (".", "..") or \
        value.lower().endswith((".gguf", ".bin", ".safetensors"))  # fmt: skip


def _path(value: str, folder: Path) -> Path | None:
    """The file or folder ``FROM value`` names, when there is one (Ollama: a model name otherwise)."""
    if "\0" in value:
        return None
    path = _resolve(value, folder)
    return path if path.exists() else None


# -- applying --------------------------------------------------------------------------------------


def apply(manifest: ModelManifest, *, system: str | None = None, template: str | None = None,
          parameters: dict[str, Any] | None = None, messages: list[dict[str, str]] | None = None,
          license: str | list[str] | None = None) -> ModelManifest:  # fmt: skip
    """``manifest`` with a Modelfile's (or /api/create's) settings over its own: SYSTEM and TEMPLATE
    replace, PARAMETERs are added (a name given replaces the parent's), MESSAGEs and LICENSE replace
    when given. ``parameters`` are taken as checked."""
    out = manifest.model_copy(deep=True)
    if system is not None:
        out.system = system
    if template is not None:
        out.template = template
    if parameters:
        out.parameters.update(parameters)
    if messages:
        out.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if license:
        out.info.license = "\n".join(license) if isinstance(license, list) else license
    return out


def manifest_for_files(name: str, paths: list[Path]) -> tuple[ModelManifest, dict[str, Any] | None]:
    """The manifest of the model ``FROM`` files make (and the ``source`` the store records): one
    GGUF, or a folder (a Hugging Face checkpoint, or GGUF files), or two GGUF files, a model and its
    projector in either order: ``general.architecture == "clip"`` is the projector."""
    from .import_gguf import manifest_for_gguf, read_gguf
    from .importer import describe_hf_folder

    ggufs = [p for p in paths if p.is_file() and _is_gguf(p)]
    if len(paths) == 1 and paths[0].is_dir() and (paths[0] / "config.json").is_file():
        manifest = describe_hf_folder(paths[0])
        return manifest, {"kind": "local", "path": str(paths[0]), "digest": manifest.info.digest}
    if len(paths) == 1 and paths[0].is_dir():
        return manifest_for_gguf(name, paths[0]), None
    if len(ggufs) != len(paths):
        bad = next(p for p in paths if p not in ggufs)
        raise InvalidRequest(f"{bad.name} is not a GGUF file: FROM a file takes a .gguf (a model or its projector)")
    projectors = [p for p in ggufs if read_gguf(p).is_projector]
    models = [p for p in ggufs if p not in projectors]
    if len(projectors) > 1:
        raise InvalidRequest("the files hold several projectors (mmproj): give one model and at most one projector")
    if len(models) != 1:
        raise InvalidRequest("the files hold no model GGUF, only projectors (mmproj)" if not models
                             else "the files hold two model GGUFs: give one model and at most one projector")  # fmt: skip
    return manifest_for_gguf(name, models[0], projectors[0] if projectors else None), None


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


# -- writing ---------------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A value as a Modelfile holds it: bare when it can be, else in quotes (as Ollama writes)."""
    lines = "\n" in value or "\r" in value  # a bare \r ends a line too (the scanner reads it as \n)
    if value and value == value.strip() and not lines and not value.startswith('"'):
        return value
    return f'"""{value}"""' if '"' in value or lines or not value else f'"{value}"'


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_template(text: str, line: int) -> None:
    from ..prompts import Template, TemplateError

    try:
        Template.parse(text)
    except TemplateError as exc:
        raise InvalidRequest(f"Modelfile line {line}: TEMPLATE: {exc.message}") from None


def to_modelfile(manifest: ModelManifest, source: str | None = None) -> str:
    """The model as a Modelfile, as ``ollama show --modelfile`` prints one: a header comment, FROM
    (``source``, default the model's own name, so that ``create`` with it derives a copy), TEMPLATE,
    SYSTEM, PARAMETER lines, MESSAGE lines, LICENSE. :func:`parse_modelfile` reads it back."""
    name = manifest.info.name or manifest.name
    lines = [
        '# Modelfile generated by "imgscribe show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {name}",
        "",
        f"FROM {source or name}",
    ]
    if manifest.template:
        lines.append(f"TEMPLATE {quote(manifest.template)}")
    if manifest.system:
        lines.append(f"SYSTEM {quote(manifest.system)}")
    for key, value in manifest.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {quote(_parameter_text(item))}")
    for message in manifest.messages:
        lines.append(f"MESSAGE {message['role']} {quote(message['content'])}")
    if manifest.info.license:
        lines.append(f"LICENSE {quote(manifest.info.license)}")
    return "\n".join(lines) + "\n"


def parameters_text(parameters: dict[str, Any]) -> str:
    """``show --parameters``: one ``name value`` line per value, as Ollama prints them."""
    out = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            shown = json.dumps(item) if isinstance(item, str) else _parameter_text(item)
            out.append(f"{key:<30} {shown}")
    return "\n".join(out)
