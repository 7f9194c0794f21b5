"""Run every model on every sample through a client (in process or a server), cache the answers, then score them.

The prediction cache is a JSON-lines file (``<out>/cache/predictions.jsonl``), one answer a line,
appended and flushed as each answer arrives, so an interrupted run loses at most the answer in
flight. An answer is reused only when its key matches: SHA-256 of

* the model's digest (``ModelInfo.digest``, or a hash of its manifest when it has none; for the
  builtin model, with the imgscribe version), so new weights or settings under the same name re-run
  (and two names for the same digest share their answers: they are the same model);
* the exact prompt text, the options (temperature, seed, num_predict...) and the answer format;
* the SHA-256 of the image bytes, so a changed file re-runs even under the same name.

Empty answers and errors are never cached (they are retried on the next run). Models run one
after another, samples one at a time, each model loaded before its first sample (the load is timed
apart from the answers) and unloaded after its last, so latency and memory belong to one model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..api import build_request, collect
from ..client import Client
from ..errors import ImgscribeError, InvalidRequest
from ..images import intake
from ..types import Message, options_from
from .datasets import Task

__all__ = ["CACHE_VERSION", "PredictionCache", "cache_key", "model_digest", "postprocess", "run_predictions"]

CACHE_VERSION = 1
Progress = Callable[[str, str, int, int, int], None]  # model, task, done, total, cached


# --------------------------------------------------------------------------- keys and cache


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(digest: str, prompt: str, options: dict[str, Any], image_sha256: str,
              format: Any = None, system: str = "") -> str:  # fmt: skip
    payload = {"v": CACHE_VERSION, "model": digest, "system": system, "prompt": prompt,
               "options": options, "format": format, "image": image_sha256}  # fmt: skip
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def model_digest(client: Client, model: str) -> str:
    """What identifies the model's weights and settings: its digest, or a hash of its manifest
    (of its description, from a server)."""
    info = client.info(model)
    digest = info.digest
    if not digest:
        described: dict[str, Any]
        try:
            manifest = client.manifest(model)
        except ImgscribeError:
            manifest = None
        if manifest is not None:
            described = manifest.model_dump(mode="json", exclude={"name": True, "info": {"name", "modified_at"}})
        else:
            described = info.model_dump(mode="json", exclude={"name", "modified_at"})
        digest = "sha256:" + hashlib.sha256(_canonical(described).encode()).hexdigest()
    if info.engine == "builtin":  # its weights and pipeline ship with the package: a new release re-runs
        from ..version import __version__

        digest = "sha256:" + hashlib.sha256(f"{digest}|imgscribe {__version__}".encode()).hexdigest()
    return digest


class PredictionCache:
    """Answers by key, in a JSON-lines file; the last line for a key wins; a torn last line is skipped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        self.records[record["key"]] = record
                    except (ValueError, KeyError, TypeError):
                        self.skipped += 1
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.records[record["key"]] = record


# --------------------------------------------------------------------------- answers


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def postprocess(text: str, how: str) -> str:
    """The same answer clean-up for every model, recorded in every report.

    ``short-answer``: the first non-empty line, cut after its first sentence (a ".", "!" or "?"
    followed by a space or the end: "3.5" stays whole), markdown emphasis (``*``, ``_``) and
    surrounding quotes removed, trailing "!" dropped. ``strip``: surrounding whitespace only.
    """
    if how == "strip":
        return text.strip()
    if how != "short-answer":
        return text
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    m = _SENTENCE_END.search(line)
    if m:
        line = line[: m.end()]
    line = line.replace("**", "").replace("__", "").strip().strip("*_").strip().strip("\"'`").strip()
    return line.rstrip("!").strip()


# --------------------------------------------------------------------------- memory


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class _MemoryWatch:
    """The highest resident memory of this process while a model runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.baseline = _rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._gpu = _gpu_reset()

    def __enter__(self) -> _MemoryWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    def gpu_peak(self) -> int:
        return _gpu_peak() if self._gpu else 0


def _gpu_reset() -> bool:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
            return True
    except Exception:  # noqa: BLE001 - a probe: never let it break a run
        pass
    return False


def _gpu_peak() -> int:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
    except Exception:  # noqa: BLE001
        pass
    return 0


# --------------------------------------------------------------------------- the run


@dataclass
class ModelRun:
    name: str
    digest: str
    info: dict[str, Any]
    load_s: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    ran: int = 0
    cached: int = 0
    failed: int = 0


def _options(task: Task, overrides: dict[str, Any] | None) -> dict[str, Any]:
    merged = {**task.options, **(overrides or {})}
    try:
        return options_from(merged).model_dump(exclude_none=True)
    except InvalidRequest as exc:
        raise InvalidRequest(f"options for {task.name}: {exc}") from None


def _ask(client: Client, model: str, prompt: str, image: Any, options: dict[str, Any]) -> tuple[Any, float]:
    request = build_request(model, [Message("user", prompt, [image])], options=options, stream=True)
    start = time.perf_counter()
    with contextlib.closing(client.chat(request)) as answer:
        result = collect(model, answer, request.images)
    return result, time.perf_counter() - start


def _record(key: str, run: ModelRun, task: Task, sample: Any, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "model": run.name, "digest": run.digest, "task": task.name, "sample": sample.id,
            "image": sample.image_name, "image_sha256": sample.image_sha256, "prompt": prompt,
            "options": options, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip


def run_predictions(
    client: Client,
    models: Sequence[str],
    tasks: Sequence[Task],
    cache: PredictionCache,
    *,
    options: dict[str, Any] | None = None,
    model_stats: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
    unload: bool = True,
) -> tuple[dict[str, ModelRun], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Answers for every model x task x sample, from the cache or the model, in sample order.

    ``model_stats`` (digest -> load time and memory from earlier runs) is read when a model needs no
    new answer, and updated when it ran. Raises KeyboardInterrupt as it comes: what was answered
    before is in the cache.
    """
    model_stats = model_stats if model_stats is not None else {}
    runs: dict[str, ModelRun] = {}
    answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for model in models:
        info = client.info(model)
        digest = model_digest(client, model)
        run = runs[model] = ModelRun(model, digest, info.model_dump(mode="json", include=_INFO_FIELDS))
        with contextlib.ExitStack() as stack:
            state = _ModelState(client, model, run, cache, stack, unload)
            for task in tasks:
                opts = _options(task, options)
                records = answers[(model, task.name)] = []
                for done, sample in enumerate(task.samples, 1):
                    records.append(state.answer(task, sample, opts))
                    if progress:
                        progress(model, task.name, done, len(task.samples), run.cached)
        if state.watch is not None:
            watch = state.watch
            run.memory.update({
                "peak_rss_bytes": watch.peak, "rss_growth_bytes": max(0, watch.peak - watch.baseline),
                "gpu_peak_bytes": watch.gpu_peak(),
            })  # fmt: skip
            run.memory["memory_bytes"] = run.memory.get("runner_memory_bytes") or run.memory["rss_growth_bytes"]
            run.memory["measured"] = "this run"
            model_stats[digest] = {"load_s": run.load_s, "memory": run.memory}
        elif digest in model_stats:
            run.load_s = model_stats[digest].get("load_s")
            run.memory = {**model_stats[digest].get("memory", {}), "measured": "an earlier run (all answers cached)"}
    return runs, answers


class _ModelState:
    """One model's run: loads it on the first answer not in the cache, then answers sample by sample."""

    def __init__(self, client: Client, model: str, run: ModelRun, cache: PredictionCache,
                 stack: contextlib.ExitStack, unload: bool):  # fmt: skip
        self.client, self.model, self.run, self.cache = client, model, run, cache
        self.stack, self.unload = stack, unload
        self.watch: _MemoryWatch | None = None
        self.loaded = False

    def _load(self) -> None:
        self.loaded = True
        self.watch = self.stack.enter_context(_MemoryWatch())
        start = time.perf_counter()
        try:
            self.client.load(self.model)
            name = self.client.info(self.model).name
            memory = next((row.get("size") for row in self.client.ps() if row["name"] == name), 0)
        except ImgscribeError as exc:
            self.run.error = f"cannot load {self.model}: {exc}"
            return
        self.run.load_s = time.perf_counter() - start
        self.run.memory["runner_memory_bytes"] = int(memory or 0)
        self.stack.callback(_unload, self.client, self.model, self.unload)

    def answer(self, task: Task, sample: Any, opts: dict[str, Any]) -> dict[str, Any]:
        run = self.run
        prompt = task.prompt_for(sample)
        base = {"model": self.model, "task": task.name, "sample": sample.id, "prompt": prompt, "options": opts}
        try:
            key = cache_key(run.digest, prompt, opts, sample.image_sha256)
        except ImgscribeError as exc:  # the image file is unreadable
            run.failed += 1
            return {**base, "prediction": "", "error": str(exc)}
        hit = self.cache.get(key)
        if hit is not None:
            sample.release()
            run.cached += 1
            return {**hit, **base, "cached": True}
        record = {**_record(key, run, task, sample, prompt, opts), "cached": False}
        if not self.loaded:
            self._load()
        if run.error:
            run.failed += 1
            return {**record, "prediction": "", "error": run.error}
        try:
            image = intake(sample.image_bytes(), source_name=sample.image_name)
            result, latency = _ask(self.client, self.model, prompt, image, opts)
        except ImgscribeError as exc:
            run.failed += 1
            return {**record, "prediction": "", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - an engine bug: record it, go on
            run.failed += 1
            return {**record, "prediction": "", "error": f"unexpected {type(exc).__name__}: {exc}"}
        finally:
            sample.release()
        m = result.metrics
        record.update({
            "prediction": result.text, "done_reason": result.done_reason, "latency_s": latency,
            "prompt_tokens": m.prompt_eval_count, "eval_tokens": m.eval_count,
            "eval_duration_s": m.eval_duration / 1e9, "load_duration_s": m.load_duration / 1e9,
        })  # fmt: skip
        if result.image_costs:  # what the image became: its size as the model saw it, its tokens
            record["images"] = result.image_costs
        run.ran += 1
        if result.text.strip():
            self.cache.put({k: v for k, v in record.items() if k != "cached"})
        return record


_INFO_FIELDS = {"engine", "family", "parameter_size", "quantization_level", "format", "is_vlm", "digest", "size"}


def _unload(client: Client, model: str, wanted: bool) -> None:
    if wanted:
        with contextlib.suppress(ImgscribeError):
            client.stop(model)


def read_model_stats(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: Any) -> None:
    """Atomic: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def iter_lines(records: Iterable[dict[str, Any]]) -> Iterable[str]:
    for r in records:
        yield json.dumps(r, ensure_ascii=False, default=str) + "\n"
