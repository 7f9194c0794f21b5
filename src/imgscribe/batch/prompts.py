"""Prompts for a batch: placeholders filled per image, and several named prompts from a small file.

Placeholders (anything else in braces, such as a JSON example, is left alone):

``{filename}`` ``photo.jpg``  ``{stem}`` ``photo``  ``{folder}`` the parent folder's name
``{path}`` the path as given  ``{exif.NAME}`` an EXIF tag by name (``{exif.Make}``,
``{exif.DateTimeOriginal}``; empty when absent)  ``{sidecar}`` the text of ``photo.txt`` next to
the image, ``{sidecar.EXT}`` of ``photo.EXT`` (empty when absent). ``{{filename}}`` is a literal
``{filename}``.

A prompt file (TOML, JSON, or YAML when PyYAML is installed) names one prompt per table::

    [caption]
    prompt = "Describe {filename} in one sentence."

    [tags]
    prompt = "List 5 to 10 keywords, comma-separated."
    options = { temperature = 0.2 }

    [meta]
    prompt = "Describe the photo."
    format = "schema.json"      # or "json", or an inline table holding a JSON schema

``name = "text"`` is short for a table with only ``prompt``. The name becomes the record's field.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from ..types import Format, options_from
from .sources import printable

DEFAULT_NAME = "response"
#: record keys a prompt may not be named after
RESERVED = frozenset({
    "id", "key", "path", "sha256", "model", "model_digest", "prompt", "fields", "options",
    "done_reason", "timings", "error", "written",
})  # fmt: skip
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][\w.\-]*)\}\}|(?<!\{)\{([A-Za-z_][\w.\-]*)\}(?!\})")
_SIMPLE = ("filename", "stem", "folder", "path", "sidecar")
_NAME = re.compile(r"^[A-Za-z_][\w\-]*$")


@dataclass(frozen=True)
class Prompt:
    name: str
    template: str
    format: Format = None
    options: dict[str, Any] = field(default_factory=dict)  # over the run's options
    system: str = ""

    def placeholders(self) -> set[str]:
        return {m.group(2) for m in _PLACEHOLDER.finditer(self.template) if m.group(2)} | {
            m.group(2) for m in _PLACEHOLDER.finditer(self.system) if m.group(2)
        }


def check(prompts: list[Prompt]) -> None:
    """Refuse unknown placeholders, bad or duplicate names, before any image is read."""
    if not prompts:
        raise InvalidRequest("no prompt to ask")
    names = [p.name for p in prompts]
    for p in prompts:
        if not _NAME.match(p.name) or p.name in RESERVED:
            raise InvalidRequest(
                f"prompt name {p.name!r} cannot be used: names are letters, digits, '_' and '-', "
                f"and not one of {', '.join(sorted(RESERVED))}"
            )
        if names.count(p.name) > 1:
            raise InvalidRequest(f"two prompts are named {p.name!r}")
        for name in p.placeholders():
            if name not in _SIMPLE and not name.startswith(("exif.", "sidecar.")):
                raise InvalidRequest(
                    f"unknown placeholder {{{name}}} in prompt {p.name!r}: use {{filename}}, {{stem}}, "
                    "{folder}, {path}, {exif.TAG}, {sidecar} or {sidecar.EXT} ({{name}} for literal braces)"
                )


def check_field(spec: str, prompts: list[Prompt], flag: str) -> None:
    """Refuse a ``--sidecar``/``--xmp-*`` field (or ``{field}`` template) that no record will have."""
    names = [m.group(2) for m in _PLACEHOLDER.finditer(spec) if m.group(2)] if "{" in spec else [spec]
    if not names:
        raise InvalidRequest(f"{flag} {spec!r}: a template needs at least one {{field}}, e.g. '{{{prompts[0].name}}}'")
    known = {p.name for p in prompts} | RESERVED
    for p in prompts:
        if isinstance(p.format, dict) and isinstance(p.format.get("properties"), dict):
            known |= set(p.format["properties"])
        elif p.format is not None:
            return  # free-form JSON answers: any field may appear
    for name in names:
        if name.removeprefix("fields.") not in known:
            fields = ", ".join(p.name for p in prompts)
            raise InvalidRequest(f"{flag}: no field {name!r} in the records; use a prompt's name ({fields}) "
                                 "or a field of its --format schema")  # fmt: skip


def render(template: str, lookup: Callable[[str], str]) -> str:
    def one(match: re.Match) -> str:
        if match.group(1):
            return "{" + match.group(1) + "}"
        return lookup(match.group(2))

    return _PLACEHOLDER.sub(one, template)


class Context:
    """The values of an image's placeholders, computed only when a prompt asks for them."""

    def __init__(self, path: str, local: Path | None, data: bytes):
        self.path, self.local, self.data = path, local, data
        self._exif: dict[str, str] | None = None

    def __call__(self, name: str) -> str:
        path = self.local or Path(self.path.split("?", 1)[0])
        if name == "filename":
            return printable(path.name)
        if name == "stem":
            return printable(path.stem)
        if name == "folder":
            return printable(path.parent.name)
        if name == "path":
            return self.path
        if name == "sidecar" or name.startswith("sidecar."):
            return self._sidecar(name.partition(".")[2] or "txt")
        if name.startswith("exif."):
            return self.exif().get(name[5:], "")
        return ""

    def _sidecar(self, ext: str) -> str:
        if self.local is None:
            return ""
        try:
            return self.local.with_suffix("." + ext).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def exif(self) -> dict[str, str]:
        if self._exif is None:
            self._exif = read_exif(self.data)
        return self._exif


def read_exif(data: bytes) -> dict[str, str]:
    """EXIF tags by name (IFD0, the Exif IFD and GPS), as text; {} when there is none."""
    from PIL import ExifTags
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            exif = im.getexif()
    except Exception:  # an unreadable image fails later, with a proper message
        return {}
    out: dict[str, str] = {}
    tables = [(exif, ExifTags.TAGS)]
    for ifd, names in ((ExifTags.IFD.Exif, ExifTags.TAGS), (ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS)):
        try:
            tables.append((exif.get_ifd(ifd), names))
        except Exception:
            pass
    for table, names in tables:
        for tag, value in table.items():
            name = names.get(tag)
            if name and not isinstance(value, dict):
                out[name] = _text(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, tuple):
        return ", ".join(_text(v) for v in value)
    return str(value).strip("\x00 ").strip()


# -- prompt files ----------------------------------------------------------------------------------


def load_prompt_file(path: str | Path, default_format: Format = None) -> list[Prompt]:
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"--prompts: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"--prompts: cannot read {path}: not UTF-8 text (give TOML, JSON or YAML)") from None
    data = _parse(text, path)
    if not isinstance(data, Mapping) or not data:
        raise InvalidRequest(f"--prompts: {path} must name at least one prompt (name = \"text\" or a table)")
    prompts = []
    for name, spec in data.items():
        if isinstance(spec, str):
            spec = {"prompt": spec}
        if not isinstance(spec, Mapping) or not isinstance(spec.get("prompt"), str):
            raise InvalidRequest(f"--prompts: {path}: prompt {name!r} needs a 'prompt' text")
        unknown = set(spec) - {"prompt", "format", "options", "system"}
        if unknown:
            raise InvalidRequest(f"--prompts: {path}: prompt {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
        fmt = _format(spec["format"], path.parent, name) if "format" in spec else default_format
        options = dict(spec.get("options") or {})
        try:
            options_from(options)
        except InvalidRequest as exc:
            raise InvalidRequest(f"--prompts: {path}: prompt {name!r}: {exc}") from None
        prompts.append(Prompt(str(name), spec["prompt"], fmt, options, str(spec.get("system") or "")))
    return prompts


def _parse(text: str, path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".json" or (suffix not in (".toml", ".yaml", ".yml") and text.lstrip().startswith("{")):
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise InvalidRequest("--prompts: YAML files need PyYAML (pip install pyyaml); or use TOML") from None
            return yaml.safe_load(text)
        import tomllib

        return tomllib.loads(text)
    except InvalidRequest:
        raise
    except Exception as exc:
        raise InvalidRequest(f"--prompts: cannot parse {path}: {_parse_error(exc)}") from None


def _parse_error(exc: Exception) -> str:
    """One line: YAML's own messages span several lines and quote the source."""
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:
        return f"{exc.problem} (at line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _format(value: Any, base: Path, name: str) -> Format:
    if value in (None, "", False):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    if isinstance(value, str):
        schema_path = Path(value).expanduser()
        schema_path = schema_path if schema_path.is_absolute() else base / schema_path
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"--prompts: prompt {name!r}: cannot read the schema {value}: {exc}") from None
        if isinstance(schema, dict):
            return schema
    raise InvalidRequest(f"--prompts: prompt {name!r}: format must be 'json', a schema, or a schema file")
