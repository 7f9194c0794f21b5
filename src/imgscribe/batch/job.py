"""A describe job from start to end: what to do (:class:`Job`), and the driver's half of a run
(:class:`Sink`): side effects, then the manifest commit, then the outputs, for each record.

The local runner and the Ray runner both produce records; the sink treats them the same, so the
outputs and the resume semantics do not depend on where the model ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..client import Client
from ..errors import ImgscribeError, InvalidRequest
from ..types import Options
from .manifest import Manifest
from .prompts import Prompt, check, check_field
from .ray_runner import actor_recipes, ray_pipeline
from .records import Describer, Index, Spec, display_path
from .runner import chosen_slots, default_parallel, pipeline, slots_applied
from .sources import Item, Missing, expand, printable
from .writers import Writer, check_target, open_output, output_format
from .writers.jsonl import JsonlStreamWriter, TextStreamWriter
from .writers.sidecar import SidecarWriter
from .writers.table import columns
from .writers.xmp import XmpWriter

CLIP_PARAMETERS = ("video_max_tokens", "video_sampling")  # a model's parameters that decide how clips are read

STDOUT = "-"
MANIFEST_NAME = ".imgscribe-manifest.jsonl"


@dataclass
class Job:
    sources: list[str]
    model: str
    prompts: list[Prompt]
    options: Options = field(default_factory=Options)
    lists: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # paths, or "-" for stdout
    manifest: str | None = None
    sidecar: str | None = None  # field or template
    sidecar_ext: str = ".txt"
    sidecar_existing: str = "keep"
    xmp: str | None = None  # "sidecar" | "embed"
    xmp_description: str | None = None
    xmp_keywords: str | None = None
    overwrite: bool = False
    parallel: int | None = None  # requests in flight (None: the model's slots + 1, or 4 for a server);
    # in process also the most slots the model opens, unless IMGSCRIBE_NUM_PARALLEL says (runner.chosen_slots)
    read_ahead: int = 4
    readers: int = 2
    hosts: list[str] = field(default_factory=list)
    local: bool = False
    text: bool = False  # stdout shows answers as text, not JSON records
    stdin: TextIO | None = None

    def __post_init__(self) -> None:
        check(self.prompts)
        for out in self.outputs:
            if out != STDOUT:
                check_target(out, "--out")
                output_format(out)
        if self.manifest:
            check_target(self.manifest, "--manifest")
        fields = (("--sidecar", self.sidecar), ("--xmp-description", self.xmp_description),
                  ("--xmp-keywords", self.xmp_keywords))  # fmt: skip
        for flag, spec in fields:
            if spec:
                check_field(spec, self.prompts, flag)


def model_digest(client: Client, model: str) -> str:
    """``ModelInfo.digest`` when set, else the SHA-256 of the model's manifest JSON (in-process) or
    of its description (from a server's ``/api/show``, or the digest ``/api/tags`` lists)."""
    manifest = client.manifest(model)
    if manifest is not None:
        return _prefixed(manifest.info.digest) or "sha256:" + _sha(manifest.model_dump_json())
    info = client.info(model)
    if info.digest:
        return _prefixed(info.digest)
    try:
        listed = next((m.digest for m in client.list() if m.name == info.name and m.digest), "")
    except Exception:
        listed = ""
    return _prefixed(listed) or "sha256:" + _sha(info.model_dump_json(exclude={"modified_at"}))


def _prefixed(digest: str) -> str:
    return digest if not digest or ":" in digest else "sha256:" + digest


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_path(job: Job, items: list[Item]) -> Path | None:
    """The explicit ``--manifest``; the first ``.jsonl`` output; next to another output file;
    for sidecar/XMP-only runs, in the folder of the first image; None for stdout-only runs."""
    if job.manifest:
        return Path(job.manifest)
    files = [Path(o) for o in job.outputs if o != STDOUT]
    jsonl = next((f for f in files if output_format(f) == "jsonl"), None)
    if jsonl:
        return jsonl
    if files:
        return files[0].with_name(files[0].stem + ".manifest.jsonl")
    if job.sidecar or job.xmp:
        first = next((i for i in items if isinstance(i, Path)), None)
        if first is not None:
            return first.parent / MANIFEST_NAME
    return None


@dataclass
class Stats:
    done: int = 0
    reused: int = 0
    skipped: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    walls: list[float] = field(default_factory=list)  # seconds per described image
    at_once: int | None = None  # the model's slots, when describe chose them (in process)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        elapsed = self.elapsed
        described = self.done - self.reused
        parts = [f"described {self.done} image(s), {self.failed} failed, {self.skipped} skipped (done before)"]
        if self.reused:
            parts[0] += f", {self.reused} of them reused from identical images"
        rate = described / elapsed if elapsed > 0 else 0.0
        timing = f"in {elapsed:.1f}s: {rate:.2f} images/s"
        if self.walls:
            timing += f", p50 {statistics.median(self.walls):.2f}s per image"
        if self.at_once:
            timing += f", {self.at_once} at a time"
        return parts[0] + "; " + timing


class Sink:
    """Commits records: side effects first, then the manifest line, then the outputs."""

    def __init__(self, job: Job, spec: Spec, items: list[Item], on_record: Callable[[dict], None] | None = None):
        self.job, self.spec = job, spec
        self.stats = Stats()
        self._seen: set[str] = set()  # ids written by this run, when there is no manifest
        self.on_record = on_record
        self.manifest: Manifest | None = None
        path = manifest_path(job, items)
        redo = {display_path(i) for i in items if not isinstance(i, Missing)} if job.overwrite else set()
        self.index = Index()
        if path is not None:
            self.manifest = Manifest(path)
            self.index = self.manifest.open(redo)
        self.effects: list[Writer] = []
        self.outputs: list[Writer] = []
        try:
            self._open_writers(path)
        except BaseException:
            self.close()
            raise

    def _open_writers(self, manifest: Path | None) -> None:
        job = self.job
        if job.sidecar:
            existing = "replace" if job.overwrite and job.sidecar_existing == "keep" else job.sidecar_existing
            self.effects.append(SidecarWriter(job.sidecar, job.sidecar_ext, existing))
        if job.xmp:
            description, keywords = xmp_fields(job)
            self.effects.append(XmpWriter(job.xmp, description, keywords, self.index.aliases))
        if STDOUT in job.outputs or not (job.outputs or job.sidecar or job.xmp):
            if job.text:
                self.outputs.append(TextStreamWriter(sys.stdout, [p.name for p in job.prompts]))
            else:
                self.outputs.append(JsonlStreamWriter(sys.stdout))
        cols = columns(job.prompts)
        for out in job.outputs:
            if out != STDOUT and (manifest is None or Path(out).resolve() != manifest.resolve()):
                self.outputs.append(open_output(out, cols))
        replaying = [w for w in self.outputs if w.replays]
        if replaying and self.manifest is not None:
            for record in self.manifest.records():
                for writer in replaying:
                    writer.write(record)

    @property
    def where(self) -> str:
        files = [o for o in self.job.outputs if o != STDOUT]
        return ", ".join(files) if files else (str(self.manifest.path) if self.manifest else "")

    def handle(self, result: dict[str, Any]) -> None:
        status = result.pop("_status", None)
        committed = self.manifest.ids if self.manifest is not None else self._seen
        if status is None and result["id"] in committed:
            return  # delivered twice (a retried Ray task): it is in the output already
        if status == "skipped":
            error = self._effects_again(result["id"])
            if error:
                result["error"] = error
                self.stats.failed += 1
            else:
                self.stats.skipped += 1
            if self.on_record:
                self.on_record(result)
            return
        if status == "reuse":
            result = self._reuse(result)
        record = result
        if not record.get("error"):
            for writer in self.effects:
                writer.write(record)
        if self.manifest is not None:
            self.manifest.append(record)
        else:
            self._seen.add(record["id"])
        for writer in self.outputs:
            writer.write(record)
        if record.get("error"):
            self.stats.failed += 1
        else:
            self.stats.done += 1
            self.stats.reused += status == "reuse"
            wall = (record.get("timings") or {}).get("wall_duration")
            if status != "reuse" and isinstance(wall, int):
                self.stats.walls.append(wall / 1e9)
        if self.on_record:
            self.on_record(record)

    def _effects_again(self, rid: str) -> str | None:
        """A record done before gets this run's sidecar/XMP too (``--sidecar`` added on a rerun);
        the manifest is updated when that wrote something new."""
        if not self.effects or self.manifest is None:
            return None
        record = self.manifest.get(rid)
        if record is None or record.get("error"):
            return None
        before = dict(record.get("written") or {})
        for writer in self.effects:
            writer.write(record)
        if record.get("error"):  # writing failed: the image stays described; the rerun tries again
            return record["error"]
        if (record.get("written") or {}) != before:
            self.manifest.append(record)
        return None

    def _reuse(self, stub: dict[str, Any]) -> dict[str, Any]:
        cached = self.manifest.get_key(stub["key"]) if self.manifest is not None else None
        if cached is None:  # cannot happen with a consistent manifest; say so rather than guess
            return Describer(self.spec).error_record(stub["path"], "internal: cached result not found")
        record = {k: v for k, v in cached.items() if k != "written"}
        record.update(id=stub["id"], path=stub["path"], sha256=stub["sha256"], model=self.spec.model)
        return record

    def close(self) -> None:
        errors = []
        for writer in self.effects + self.outputs:
            try:
                writer.close()
            except Exception as exc:  # close the others, then report
                errors.append(exc)
        if self.manifest is not None:
            self.manifest.close()
        if errors:
            raise errors[0]


def xmp_fields(job: Job) -> tuple[str | None, str | None]:
    """Which fields become the description and the keywords: as given, else by common names."""
    names = [p.name for p in job.prompts]
    for p in job.prompts:
        if isinstance(p.format, dict) and isinstance(p.format.get("properties"), dict):
            names += list(p.format["properties"])
    description = job.xmp_description or next(
        (n for n in ("description", "caption", "alt", "alt_text") if n in names), job.prompts[0].name
    )
    keywords = job.xmp_keywords or next((n for n in ("keywords", "tags", "subject") if n in names), None)
    return description, keywords


def execute(
    job: Job,
    clients: list[Client],
    *,
    ray: dict[str, Any] | None = None,
    on_record: Callable[[dict], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> tuple[Stats, Sink]:
    """Run ``job`` with ``clients`` (in-process or servers) or, with ``ray`` options, on Ray;
    ``on_note`` gets a line to show the user (the slots describe chose)."""
    items = list(expand(job.sources, job.lists, job.stdin))
    if on_total:
        on_total(len(items))
    info = clients[0].info(job.model)  # an unknown model is one clear error, not one per image
    if not info.vision:
        raise InvalidRequest(f"model '{job.model}' does not support images: describe needs a vision model")
    manifest = clients[0].manifest(job.model)  # None for a server: it keeps its models' parameters
    clip = {k: v for k in CLIP_PARAMETERS if manifest and (v := manifest.parameters.get(k)) is not None}
    spec = Spec(job.model, model_digest(clients[0], job.model), job.prompts, job.options, job.overwrite,
                clip_parameters=clip)
    sink = Sink(job, spec, items, on_record)
    try:
        _run(job, clients, spec, sink, items, ray, on_note)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # (a full disk fails the outputs too: the first error is the one to show)
            sink.close()
        if isinstance(exc, OSError):
            raise _write_error(exc, sink) from None
        raise
    try:
        sink.close()
    except OSError as exc:
        raise _write_error(exc, sink) from None
    return sink.stats, sink


def _write_error(exc: OSError, sink: Sink) -> ImgscribeError:
    """An output that could not be written (a full disk): one clear line; what is done is kept."""
    where = f" ({exc.filename})" if exc.filename else ""
    manifest = sink.manifest
    kept = f"; the {len(manifest.ids)} record(s) done so far are saved in {manifest.path}" if manifest is not None else ""
    return ImgscribeError(f"cannot write the results{where}: {exc.strerror or exc}{kept}; "
                          "free some space and run the same command again: it resumes")  # fmt: skip


def _run(job: Job, clients: list[Client], spec: Spec, sink: Sink, items: list[Item], ray: dict[str, Any] | None,
         on_note: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Describe every item into ``sink`` (which the caller closes)."""
    for item in items:
        if isinstance(item, Missing):
            sink.handle(Describer(spec).error_record(printable(item.source), item.reason))
    work = [i for i in items if not isinstance(i, Missing)]
    with contextlib.ExitStack() as stack:
        if ray is not None:
            recipes = actor_recipes(clients, servers=bool(job.hosts))
            results = ray_pipeline(work, spec, sink.index, recipes, parallel=job.parallel, **ray)
        else:
            choice = None if job.hosts else chosen_slots(clients, job.model, job.parallel)
            if choice is not None:
                stack.enter_context(slots_applied(clients[0], choice[0]))
            parallel = job.parallel or default_parallel(clients, job.model)
            if choice is not None:
                slots = sink.stats.at_once = clients[0].slots(job.model) or 1  # loaded: default_parallel, or here
                if on_note:
                    on_note(f"describing {slots} image{'s' if slots != 1 else ''} at a time ({choice[1]}; "
                            "IMGSCRIBE_NUM_PARALLEL or --parallel to change)")  # fmt: skip
            describer = Describer(spec, sink.index)
            results = pipeline(work, describer, [c.chat for c in clients], parallel=parallel,
                               read_ahead=job.read_ahead, readers=job.readers)  # fmt: skip
        try:
            for result in results:
                sink.handle(result)
        finally:
            results.close()
