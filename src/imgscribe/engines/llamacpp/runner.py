"""A GGUF model (plus its mmproj projector) served by its own ``llama-server`` child, as Ollama does.

Requests go to the child as Ollama sends them: the model's own chat template (from the GGUF) renders
the messages (``/apply-template``, which puts llama-server's media marker where each image goes),
then ``/completion`` gets that prompt with the images (base64 ``multimodal_data``), streamed.
Sampling options, stop sequences and JSON output (``json_schema``: llama-server turns it into a
grammar) are llama-server's. ``/completion`` rather than ``/v1/chat/completions``: the chat endpoint
parses the output afterwards (for tool calls) and fails an answer whose JSON was cut short by
``num_predict``, where Ollama returns the text with ``done_reason: "length"``. Its timings become
Ollama's metrics (nanoseconds).

Manifest ``files``: ``model`` (the GGUF), ``projector`` (the mmproj GGUF; without it the model is
text-only). Manifest ``parameters`` (all optional): the default options (``temperature``,
``stop``...), of which these shape llama-server's command line (each as an integer):

``num_ctx``           context per slot; default 4096. A request that asks for another ``num_ctx``
                      restarts llama-server with it once the answers in flight are done (Ollama
                      reloads its runner then too); one that does not ask keeps the loaded context.
                      Capped at the context the model was trained for, as Ollama caps it
                      (llama-server itself gives a slot at least 256).
``num_thread``        CPU threads (``-t``); default: llama-server's choice
``num_gpu``           layers to offload to a GPU (``-ngl``); default: llama-server's choice
``image_min_tokens`` / ``image_max_tokens``   for dynamic-resolution projectors (Qwen2-VL...)

Images fit a token budget before llama-server sees them (``budget.py``, issue 14): each image's cost
is llama.cpp's own (``image_tokens.py``); one over the request's ``image_max_tokens`` (else the
model's, the setting's, the hardware's default) is scaled down, aspect kept; a prompt over the slot's
context raises the context up to the trained length when the memory allows, else is refused (400)
with the numbers. The final chunk says what each image became (``Chunk.images``).

Manifest ``engine_settings`` (:class:`LlamaCppSettings`, all optional; written by the importers,
never by a request):

``num_parallel``      llama-server slots (``--parallel``), so that concurrent requests are decoded together
                      in one batch; default ``IMGSCRIBE_NUM_PARALLEL`` (1, as Ollama; 0 means 4), except
                      that ``describe`` in process opens as many as the memory allows when nothing
                      says (``slots.py``). Each slot has ``num_ctx`` tokens of context, so memory grows
                      with it (as Ollama's).
``chat_template``     a Jinja chat template to use instead of the GGUF's
``load_timeout``      seconds to wait for the server to be ready; default 600
``ignore_eos``        keep generating past the end-of-sequence token (tests and benchmarks: a fixed length)
``cache_prompt``      reuse the cached prefix of a slot's last prompt; default true (benchmarks turn it off)

llama-server's command line is built from these typed fields only: nothing in a manifest is passed
through to it as arguments, nor into its requests as extra fields.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field

from ...config import parallel_slots, settings
from ...errors import Cancelled, EngineFailed, Unsupported
from ...types import ChatRequest, Chunk, Metrics, ModelInfo, ModelManifest
from ...wire import openai
from ...wire.common import format_schema, merged_options
from ...wire.transport import DeadlineClient, StreamedPost, error_message, get_json
from ..base import EngineSettings
from ..image_budget import context_error
from ..schema import compile_json_schema
from .binary import server_binary
from .budget import Budget, Plan, kv_allows, raised_ctx, slot_ctx
from .child import Child, child_for, share_key
from .options import DEFAULT_CTX, int_option
from .process import ServerProcess
from .prompt import MEDIA_MARKER, go_template_prompt
from .slots import fit_slots
from .templates import for_llama_cpp, rendered_prompts
from .wire import cancelled, completion_body, completion_chunks, error_from

__all__ = ["LlamaCppEngine", "LlamaCppRunner", "LlamaCppSettings", "server_args"]

log = logging.getLogger("imgscribe.llamacpp")
_PLACEHOLDER = "data:image/png;base64,AAAA"  # /apply-template only places the marker: no pixels needed
class LlamaCppSettings(EngineSettings):
    """The llamacpp engine's settings (``manifest.engine_settings``); see the module's docstring."""

    engine = "llamacpp"

    num_parallel: int | None = Field(None, ge=0)  # slots; None/0: IMGSCRIBE_NUM_PARALLEL
    chat_template: str | None = None  # Jinja, instead of the GGUF's
    load_timeout: float | None = Field(None, gt=0)  # seconds; default 600
    ignore_eos: bool = False
    cache_prompt: bool = True  # reuse a slot's cached prompt prefix (benchmarks turn it off)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def server_args(manifest: ModelManifest, parallel: int, log_dir: Path, ctx: int | None = None) -> list[str]:
    """llama-server's command line for a manifest (without host and port); ``ctx``: tokens of
    context per slot (default: the manifest's ``num_ctx``, else 4096). Built from typed values only:
    paths from ``files``, integers from ``parameters``, the chat template (as a file) from the settings."""
    s = LlamaCppSettings.of(manifest)
    model = manifest.files.get("model")
    if not model:
        raise EngineFailed(f"model '{manifest.name}' has no GGUF file in its manifest (files.model)")
    if not Path(model).is_file():
        raise EngineFailed(f"model '{manifest.name}': GGUF file {model} is missing")
    ctx = ctx or int_option(manifest, "num_ctx") or DEFAULT_CTX
    args = ["-m", str(model), "-c", str(ctx * parallel), "-np", str(parallel), "--jinja", "--metrics",
            "--no-webui", "--alias", manifest.name]  # fmt: skip
    projector = manifest.files.get("projector")
    if projector:
        if not Path(projector).is_file():
            raise EngineFailed(f"model '{manifest.name}': projector file {projector} is missing")
        args += ["--mmproj", str(projector)]
    threads, gpu_layers = int_option(manifest, "num_thread"), int_option(manifest, "num_gpu")
    if threads:
        args += ["-t", str(threads)]
    if gpu_layers is not None:
        args += ["-ngl", str(gpu_layers)]
    for name, flag in (("image_min_tokens", "--image-min-tokens"), ("image_max_tokens", "--image-max-tokens")):
        if value := int_option(manifest, name):
            args += [flag, str(value)]
    template = s.chat_template or None
    if template is None:  # the GGUF's own, unless llama.cpp's Jinja would refuse it (see templates.py)
        from ...formats.gguf import read_gguf

        own = read_gguf(model).metadata.get("tokenizer.chat_template")
        if isinstance(own, str) and for_llama_cpp(own) != own:
            template = own
    if template is not None:
        path = log_dir / f"{_safe(manifest.name)}.jinja"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(for_llama_cpp(template))
        args += ["--chat-template-file", str(path)]
    return args


class LlamaCppRunner:
    """One model's view of its llama-server child (``child.py``: shared with every model of the same
    weights loaded the same way): its own prompt, system, history and options, the child's slots."""

    def __init__(self, manifest: ModelManifest, *, binary: Path | None = None):
        self.manifest = manifest
        self.info: ModelInfo = manifest.info
        self.engine_settings = LlamaCppSettings.of(manifest)
        self.parallel = self.engine_settings.num_parallel or parallel_slots(settings().num_parallel)
        self.vision = bool(manifest.files.get("projector"))
        self.log_dir = settings().models_dir / "logs"
        self.binary = binary or server_binary()
        ctx = int_option(manifest, "num_ctx") or DEFAULT_CTX  # per slot, as llama-server runs now
        self._budget = Budget(manifest)
        self._files_size = sum(Path(f).stat().st_size for f in manifest.files.values() if f and Path(f).is_file())
        self._closed = False

        def args_for(c: int) -> list[str]:
            return server_args(manifest, self.parallel, self.log_dir, c)

        key = share_key(self.binary, args_for(ctx))
        self._child = child_for(key, lambda: Child(
            key, manifest, self.binary, args_for, ctx, self.log_dir / f"llama-server-{_safe(manifest.name)}.log",
            self.engine_settings.load_timeout or 600))  # fmt: skip

    # what the tests and ps look at: the shared child's
    process = property(lambda self: self._child.process)
    ctx = property(lambda self: self._child.ctx)
    restarts = property(lambda self: self._child.restarts)
    reloads = property(lambda self: self._child.reloads)
    active = property(lambda self: self._child.active)

    # -- Runner ------------------------------------------------------------------------------------

    @property
    def memory(self) -> int:
        """The child's memory, shared out between the models that use it (so the scheduler's sum is
        the machine's)."""
        return max(self._files_size, self._child.process.memory()) // max(self._child.users, 1)

    @property
    def alive(self) -> bool:
        """False once its llama-server has died (killed, or on a damaged file): the scheduler then
        forgets this runner, and the next request loads the model afresh."""
        return not self._closed and not self._child.crashed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._child.release()

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        if request.images and not self.vision:
            raise Unsupported(
                f"model '{self.info.name}' does not support images: it was created without a projector "
                "(recreate it with --mmproj FILE)"
            )
        cancel = cancel or threading.Event()
        options = merged_options(request, self.manifest.parameters)
        schema = format_schema(request.format)
        if schema is not None:
            compile_json_schema(schema)  # refused here if llama-server could not honour it
        process = self._acquire(request.options.num_ctx, cancel)  # holds a slot from here
        try:
            prompt = self._render(process, request, cancel)
            plan = self._budget.plan(process, prompt, self._marker(process), request.images,
                                     request.options.image_max_tokens, slot_ctx(process, self.ctx),
                                     ) if request.images else None  # fmt: skip
            wanted = self._context_for(process, plan, options.num_predict)
        except BaseException:
            self._leave()
            raise
        if wanted:  # a larger context: llama-server restarts with it (once the answers in flight are done)
            self._leave()
            process = self._acquire(wanted, cancel)
            try:
                prompt = self._render(process, request, cancel)  # (a new process: a new media marker)
                if plan.total >= (ctx := slot_ctx(process, self.ctx)):  # another request changed it meanwhile
                    raise context_error(plan.image_tokens, len(plan.costs), plan.text_tokens, ctx)
            except BaseException:
                self._leave()
                raise
        images = plan.images if plan is not None else request.images
        s = self.engine_settings
        body = completion_body(prompt, images, options, ctx=self.ctx, cache_prompt=s.cache_prompt,
                               ignore_eos=s.ignore_eos, schema=schema)  # fmt: skip
        reported = plan.reported() if plan is not None else None
        if options.num_predict == 0:  # llama-server would still generate one token
            self._leave()
            return _nothing(reported)
        return _Answer(self, process, body, cancel, reported)  # gives the slot back when the answer ends

    def image_side(self, width: int, height: int, options) -> int:
        """The long side an image of this size needs under the request's budget (0: all of it), so that
        the server decodes a large JPEG at a reduced size (``image_budget.decode_side``)."""
        if self._closed or not self.vision:
            return 0
        return self._budget.image_side(self.process, width, height, getattr(options, "image_max_tokens", None))

    def _marker(self, process: ServerProcess) -> str:
        """llama-server's media marker (random per start, so that no text can pass for an image)."""
        if not process.media_marker:
            process.media_marker = str(get_json(process.url + "/props", process.headers).get("media_marker") or "")
        return process.media_marker or MEDIA_MARKER

    def _context_for(self, process: ServerProcess, plan: Plan | None, num_predict: int | None) -> int | None:
        """None when the prompt fits the slot's context; else the larger context to restart with (up
        to the trained length, when the memory for its KV cache is free); else the refusal."""
        if plan is None:
            return None
        ctx = slot_ctx(process, self.ctx)
        if plan.total < ctx:
            return None
        wanted = raised_ctx(plan.total, num_predict, self._child.trained_ctx)
        if wanted is None or not kv_allows(self.manifest, self.ctx, wanted, self.parallel):
            raise context_error(plan.image_tokens, len(plan.costs), plan.text_tokens, ctx)
        log.info("'%s': the prompt needs %d tokens, the context is %d: raising it to %d", self.info.name,
                 plan.total, ctx, wanted)  # fmt: skip
        return wanted

    def _render(self, process: ServerProcess, request: ChatRequest, cancel: threading.Event) -> str:
        """The prompt: by the model's Go template (Ollama's, ``prompt.py``), else by the GGUF's own chat
        template, with llama-server's media marker where each image goes (``/apply-template``; the
        images themselves travel once, with the completion). A body this process rendered before is
        not sent again (``templates.RenderedPrompts``)."""
        if request.raw or request.template or self.manifest.template:
            prompt = go_template_prompt(request, self.manifest, self._marker(process))
            assert prompt is not None
            return prompt
        history = request.with_history(self.manifest.messages)
        messages = openai.messages(history, self.manifest.system, image_url=lambda _img: _PLACEHOLDER)
        body = json.dumps({"messages": messages}, ensure_ascii=False, separators=(",", ":"))  # as httpx's json=
        rendered = rendered_prompts(process, lambda: self._chat_template(process))
        if (prompt := rendered.get(body)) is not None:  # this process rendered this very body before (issue 19)
            return prompt
        try:
            with DeadlineClient(60, cancel=cancel, timeout=60, trust_env=False) as client:
                r = client.post(process.url + "/apply-template", content=body.encode(),
                                headers={**process.headers, "Content-Type": "application/json"})  # fmt: skip
        except httpx.HTTPError as exc:
            if not _still_running(process):  # (a connection cut a moment before the exit is seen)
                raise _crashed(self, process, "before it could answer") from None
            raise EngineFailed(f"llama-server for '{self.info.name}' did not render the prompt: {exc}") from None
        if r.status_code != 200:
            raise error_from(r.status_code, error_message(r.text, r.status_code))
        prompt = str(r.json().get("prompt", ""))
        rendered.put(body, prompt)
        return prompt

    def _chat_template(self, process: ServerProcess) -> str | None:
        """The chat template ``process`` runs (its ``/props``); None when it does not say."""
        try:
            template = get_json(process.url + "/props", process.headers).get("chat_template")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return template if isinstance(template, str) else None

    # -- the child ---------------------------------------------------------------------------------

    def _acquire(self, num_ctx: int | None, cancel: threading.Event) -> ServerProcess:
        if self._closed:
            raise EngineFailed(f"model '{self.info.name}' has been unloaded")
        return self._child.acquire(num_ctx, cancel, self.info.name)

    def props(self) -> dict[str, Any]:
        return get_json(self.process.url + "/props", self.process.headers)

    def metrics_text(self) -> str:
        with DeadlineClient(10, timeout=10, trust_env=False) as client:
            r = client.get(self.process.url + "/metrics", headers=self.process.headers)
            r.raise_for_status()
            return r.text

    def _leave(self) -> None:
        self._child.leave()


class _Answer(Iterator[Chunk]):
    """One streamed answer from llama-server's ``/completion``. The request is sent by ``chat()``
    (so a refusal is raised before the first chunk); ``close()`` (the scheduler calls it when the
    client goes) cuts the HTTP stream, which makes llama-server stop working on it."""

    def __init__(self, runner: LlamaCppRunner, process: ServerProcess, body: dict[str, Any],
                 cancel: threading.Event, images: list[dict[str, Any]] | None = None):  # fmt: skip
        self._runner = runner
        self._images = images  # what each image became (image_budget.ImageCost), on the final chunk
        self._process = process
        self._closed = False
        self._post: StreamedPost | None = None
        self._start = time.perf_counter_ns()
        try:  # the slot is already counted (chat() acquired it); every way out below gives it back
            post = StreamedPost(process.url + "/completion", body, cancel, headers=process.headers).open()
        except ConnectionError:
            runner._leave()
            raise _crashed(runner, process, "before it could answer") from None
        except BaseException:  # Cancelled (cancel set before the answer started) passes through
            runner._leave()
            raise
        self._post = post
        try:
            if post.status != 200:
                raise error_from(post.status, post.error_text())
        except BaseException:
            self._finish()
            raise
        self._gen = self._run(post)

    def __next__(self) -> Chunk:
        if self._closed:
            raise StopIteration
        try:
            return next(self._gen)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._gen.close()
            self._finish()  # closes a stream in progress: llama-server stops the slot

    def _finish(self) -> None:
        if self._post is not None:
            self._post.close()
            self._post = None
            self._runner._leave()

    def _run(self, post: StreamedPost) -> Iterator[Chunk]:
        try:
            for chunk in completion_chunks(post.sse(), self._start):
                if chunk.done:
                    self._finish()
                    chunk.images = self._images
                yield chunk
                if chunk.done:
                    return
        except Cancelled:  # the client went (cancel set): the stream is cut, llama-server stops
            self._finish()
            yield cancelled(self._start)
            return
        except ConnectionError:
            raise _crashed(self._runner, self._process, "during the request") from None
        raise _crashed(self._runner, self._process, "before the answer ended")


def _nothing(images: list[dict[str, Any]] | None = None) -> Iterator[Chunk]:
    """The answer to num_predict 0: no tokens, cut by the limit."""
    yield Chunk(done=True, done_reason="length", metrics=Metrics(total_duration=1), images=images)


def _still_running(p: ServerProcess, wait: float = 1.0) -> bool:
    """Whether the process is still running after up to ``wait`` seconds: a broken connection is
    seen a moment before the exit of a killed server."""
    deadline = time.monotonic() + wait
    while p.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return p.running


def _crashed(runner: LlamaCppRunner, p: ServerProcess, during: str) -> EngineFailed:
    if _still_running(p):
        return EngineFailed(f"lost the connection to llama-server for '{runner.info.name}' {during}")
    problem = runner._child.file_problem(runner.info.name)  # a truncated file: SIGBUS
    then = f"; {problem}" if problem else "; it will be restarted by the next request"
    return EngineFailed(
        f"llama runner process has terminated: llama-server for model '{runner.info.name}' "
        f"{p.exit_description()} {during}{then}",
        detail=f"log: {p.log_path}; last lines:\n{p.log_tail(8)}",
    )


class LlamaCppEngine:
    name = "llamacpp"
    settings = LlamaCppSettings
    slot_name = "llama-server slots"  # what describe says it opens

    def load(self, manifest: ModelManifest) -> LlamaCppRunner:
        return LlamaCppRunner(manifest)

    def fit_slots(self, manifest: ModelManifest, offered: int):
        """How many slots of ``offered`` the memory holds now (``slots.py``)."""
        return fit_slots(manifest, offered)
