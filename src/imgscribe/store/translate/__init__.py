"""Ollama's published GGUFs, translated once at pull time into files the pinned llama-server loads.

Ollama runs upstream llama-server too, but patched with an in-memory translation of its own published
blobs (``llama/compat/`` at ollama/ollama fb30760). imgscribe runs llama.cpp unpatched, so it writes
the same translation to disk once, after the download:

- single-file vision models (gemma3, qwen25vl, mistral3, llama4: the vision tower inside the model
  GGUF) -> a text model GGUF plus an ``mmproj`` projector GGUF, with llama.cpp's keys and names;
- old LLaVA/BakLLaVA projectors -> the same projector with ``clip.projector_type = mlp``;
- Llama 3 instruct models that stop at ``<|end_of_text|>`` -> ``<|eot_id|>`` as the end of a turn;
- gemma3 blobs without the keys llama.cpp requires -> those keys, with Gemma 3's values.

:func:`plan` decides from a header alone, so the pull can judge the result before downloading (the
previewed headers go through the same inspection as any blob). :func:`apply` writes the files into the
blob store under their own digests; a record under ``translations/`` maps the published blob to them,
so a second pull of the same blob neither downloads nor translates again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ImgscribeError
from ...formats.gguf import GGUFHeader, read_gguf
from ...formats.gguf_write import FileSpec, preview, write_gguf
from ..blobs import check_digest, sha256_file, write_atomic
from ..pull.errors import DiskError
from .clip import CLIP_HANDLERS, llava_projector
from .text import TEXT_HANDLERS, is_vision_tensor

log = logging.getLogger("imgscribe.store")

__all__ = ["SPLIT_ARCHITECTURES", "VERSION", "Translation", "TranslationFailed", "apply", "ensure", "plan", "recorded"]


class TranslationFailed(ImgscribeError):
    """A blob whose headers promised a translation that its data did not allow (a bug to report)."""

    status = 500

#: the single-file layouts (vision tower inside) that are split into a model and a projector
SPLIT_ARCHITECTURES = tuple(CLIP_HANDLERS)

#: Bumped whenever a handler's output changes, so older records are not reused.
VERSION = 1


@dataclass
class Translation:
    """How one published layer becomes the files llama-server loads (``outputs``: role -> file)."""

    family: str
    outputs: dict[str, FileSpec]
    changes: list[str] = field(default_factory=list)

    def previews(self, header: GGUFHeader) -> dict[str, GGUFHeader]:
        return {role: preview(header, spec) for role, spec in self.outputs.items()}

    @property
    def summary(self) -> str:
        if "projector" in self.outputs and "model" in self.outputs:
            return f"{self.family}: one GGUF with the vision encoder inside, split into a model and an mmproj projector"
        return f"{self.family}: " + "; ".join(self.changes)


def plan(header: GGUFHeader, role: str, split: bool = True) -> Translation | None:
    """The translation a published ``model`` or ``projector`` layer needs, or None. ``split=False``:
    the model comes with a projector layer of its own, so a vision tower inside it is not split out."""
    if role == "projector":
        found = llava_projector(header)
        return Translation("llava", {"projector": found[0]}, found[1]) if found else None
    arch = header.architecture
    inside = any(is_vision_tensor(t) for t in header.tensors)
    text = TEXT_HANDLERS.get(arch)
    found = text(header) if text else None
    if split and inside and arch in CLIP_HANDLERS:
        clip_spec, clip_changes = CLIP_HANDLERS[arch](header)
        model_spec, model_changes = found or (None, [])
        assert model_spec is not None  # every single-file family has a text handler
        return Translation(arch, {"model": model_spec, "projector": clip_spec}, clip_changes + model_changes)
    if found is None:
        return None
    spec, changes = found
    return Translation(arch, {"model": spec}, changes) if changes or inside else None


# -- writing ------------------------------------------------------------------------------------------


def _record_path(store, digest: str) -> Path:
    return store.root / "translations" / (check_digest(digest).replace(":", "-") + ".json")


def recorded(store, digest: str) -> dict[str, Any] | None:
    """What an earlier pull made of the published blob ``digest`` (``{"outputs": {role: digest},
    "changes": [...]}``), if its files are all still in the store."""
    try:
        record = json.loads(_record_path(store, digest).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not all(isinstance(d, str) and store.blobs.has(d) for d in outputs.values()):
        return None
    return record


def ensure(store, digest: str, translation: Translation) -> Generator[dict[str, Any], None, dict[str, str]]:
    """The translated files of the published blob ``digest`` (role -> blob): an earlier pull's when
    they are recorded and still here, else written now by :func:`apply` (whose progress it yields)."""
    record = recorded(store, digest)
    if record is not None:
        return dict(record["outputs"])
    return (yield from apply(store, digest, translation))


def apply(store, digest: str, translation: Translation) -> Generator[dict[str, Any], None, dict[str, str]]:
    """Write the translated files of the published blob ``digest`` (already in the store) and record
    them; yields Ollama-style progress objects and returns role -> translated blob. Each file is
    written under a temporary name and moved into place only when complete: an interrupted translation
    leaves no file that passes for a finished one, and a rerun starts it again from the kept download."""
    source = store.blobs.path(digest)
    header = read_gguf(source)
    total = sum(_nbytes(spec, header) for spec in translation.outputs.values())
    shown = f"translating {digest.removeprefix('sha256:')[:12]} for llama.cpp"
    done = 0
    outputs: dict[str, str] = {}
    store.blobs.dir.mkdir(parents=True, exist_ok=True)
    yield {"status": shown, "total": total, "completed": 0}
    for role, spec in translation.outputs.items():
        fd, tmp = tempfile.mkstemp(dir=store.blobs.dir, prefix=".tmp-translate-")
        os.close(fd)
        progressed: list[int] = []
        try:
            write_gguf(source, spec, tmp, progress=progressed.append)
            new = sha256_file(Path(tmp))
            if store.blobs.has(new):
                Path(tmp).unlink()
            else:
                store.blobs.commit(Path(tmp), new)
        except OSError as exc:  # the disk: the download is kept, so that the next pull only translates
            Path(tmp).unlink(missing_ok=True)
            raise DiskError(f"cannot write the translation of {digest[:19]} for llama.cpp ({exc.strerror or exc}); "
                            "free some space and pull again: the download is kept") from None  # fmt: skip
        except (ValueError, KeyError) as exc:
            Path(tmp).unlink(missing_ok=True)
            raise TranslationFailed(f"cannot translate {digest[:19]} for llama.cpp: {exc} (the download is kept)") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        done += sum(progressed)
        outputs[role] = new
        yield {"status": shown, "total": total, "completed": min(done, total)}
    record = {"version": VERSION, "source": digest, "family": translation.family, "outputs": outputs,
              "changes": translation.changes}  # fmt: skip
    path = _record_path(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1))
    log.info("translated %s (%s) into %s", digest, translation.family, outputs)
    return outputs


def _nbytes(spec: FileSpec, header: GGUFHeader) -> int:
    """The tensor bytes a file will hold, from the source's header (for the progress total)."""
    total = 0
    for t in spec.tensors:
        if t.source is None or t.source not in header.tensors:
            continue
        shape, kind = header.tensors[t.source]
        total += _bytes_of(shape, kind)
    return total


def _bytes_of(shape: tuple[int, ...], kind: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    n = 1
    for d in shape:
        n *= d
    return n // block * size
