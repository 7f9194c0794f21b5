"""A loaded Hugging Face VLM answering ChatRequests as a stream of Chunks.

``chat`` does the prompt work at once (so a refused request fails before any chunk), then runs
``model.generate`` in a thread with a streamer; the iterator turns tokens into text as they come.

Metrics, in nanoseconds:

- ``prompt_eval_count``: the prompt's tokens as the processor made them (image tokens included);
  ``prompt_eval_duration``: from the start of ``generate`` to the first new token (the prefill,
  vision encoder included).
- ``eval_count``: tokens generated; ``eval_duration``: from the first new token to the last.
- ``image_encode_duration``: image preprocessing (the processor) plus the vision tower's forward pass.

Images first fit the request's token budget (:mod:`..image_budget`; what an image costs, from the
family's processor: :mod:`.image_tokens`): one over it is scaled down, aspect kept, before the
processor sees it, and the final chunk's ``images`` says what each became. A prompt over the context
is a 400 with its numbers (``context_error``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from ...errors import EngineFailed, ImgscribeError
from ...types import ChatRequest, Chunk, Metrics, ModelInfo, ModelManifest
from ..image_budget import ImageCost, cost_of, decode_side, model_budget, resized
from . import generation, prompt
from .families import context_length
from .grammar import GrammarCompiler, schema_of
from .image_tokens import counter_for, image_token_id
from .loading import Loaded

# Modules that turn pixels into the language model's embeddings, by attribute name across families.
_VISION_MODULES = ("vision_tower", "visual", "vision_model", "image_embed", "multi_modal_projector", "aligner")


class TransformersRunner:
    parallel = 1  # one generate at a time per model

    def __init__(self, manifest: ModelManifest, loaded: Loaded):
        self.info: ModelInfo = manifest.info
        self.manifest = manifest
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = loaded.family
        self.device = loaded.device
        self.context_length = context_length(loaded.config) or self.info.context_length
        self.memory = sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self._lock = threading.Lock()
        self._vision_ns = 0
        self._hooks = _time_vision(self.model, self)
        self._grammar = GrammarCompiler(self.tokenizer, _vocab_size(self.model, self.tokenizer), self.eos_ids)
        self._closed = False
        self.counter = counter_for(self.processor, self.family)  # an image's prompt tokens (None: unknown)
        #: a family whose processor takes video (Qwen2-VL / Qwen2.5-VL: temporal patches; LLaVA-OneVision:
        #: pooled frames; SmolVLM: frames with their times) gets a clip as video; others its frames (engines/frames.py)
        self.native_video = getattr(self.processor, "video_processor", None) is not None

    # -- the Runner interface ----------------------------------------------------------------------

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        if self._closed:
            raise EngineFailed(f"model '{self.info.name}' was unloaded")
        start = time.perf_counter_ns()
        options = _options(self.manifest, request)
        request = request.with_history(self.manifest.messages)
        pils, costs = self._budget(request)
        messages, n_images = prompt.conversation(request, self.manifest.system, system_text=self.family.system_text,
                                                 pils=pils)  # fmt: skip
        inputs = prompt.encode(self.processor, messages, request.videos)
        preprocess_ns = time.perf_counter_ns() - start
        prompt_tokens = int(inputs["input_ids"].shape[1])
        image_tokens = (sum(c.tokens for c in costs) if costs is not None else
                        self._image_tokens_in(inputs) if request.images else 0)  # fmt: skip
        video_tokens = self._video_tokens_in(inputs, image_tokens) if request.videos else 0
        n_images += sum(len(v.frames) for v in request.videos)
        plan = generation.plan(options, prompt_tokens, self.context_length, self.model.generation_config,
                               image_tokens=image_tokens + video_tokens, images=n_images)  # fmt: skip
        plan.images = [c.as_dict() for c in costs] if costs else None
        if request.videos:  # what each clip became, after the images (native video: frames, tokens)
            plan.images = [*(plan.images or []), *_video_costs(request.videos, inputs, video_tokens, self._merge(),
                                                               getattr(self.processor, "video_token_id", None))]  # fmt: skip
        processors = [p for p in (plan.penalty,) if p is not None]
        schema = schema_of(request.format)
        if schema is not None:
            processors.append(self._grammar.processor(schema))
        if plan.max_new_tokens == 0:  # num_predict 0: nothing to generate (generate() refuses 0 new tokens)
            return self._nothing(start, prompt_tokens, plan.images)
        return self._stream(inputs, plan, processors, cancel, start, preprocess_ns if n_images else 0, prompt_tokens)

    # -- the image budget --------------------------------------------------------------------------

    def _budget(self, request: ChatRequest) -> tuple[list[Any] | None, list[ImageCost] | None]:
        """Each image of ``request`` as the processor gets it (scaled down, aspect kept, to the request's
        token budget) and what it costs; (None, None) without images or without a counter."""
        images = request.images
        if not images or self.counter is None:
            return None, None
        budget = model_budget(request.options.image_max_tokens, self.manifest, self.device.startswith("cuda"))
        costs = [cost_of(self.counter, image, budget) for image in images]  # upright: intake applied the EXIF
        return [resized(image.pil, cost.size) for image, cost in zip(images, costs, strict=True)], costs

    def image_side(self, width: int, height: int, options) -> int:
        """The long side an image of this size needs for this request's budget (0: all of it), so that
        the server decodes a large JPEG at a reduced size (``image_budget.decode_side``)."""
        budget = model_budget(options.image_max_tokens, self.manifest, self.device.startswith("cuda"))
        return decode_side(self.counter, width, height, budget)

    def _merge(self) -> int:
        """Patches per video token: the video processor's merge size, squared."""
        return int(getattr(getattr(self.processor, "video_processor", None), "merge_size", 2) or 2) ** 2

    def _video_tokens_in(self, inputs, image_tokens: int) -> int:
        """The video positions in a prompt (Qwen2-VL's ``<|video_pad|>``, LLaVA-OneVision's ``<video>``),
        counted; a family whose clips' frames take image positions (SmolVLM): those beyond the images'."""
        token = getattr(self.processor, "video_token_id", None)
        if token is not None:
            return int((inputs["input_ids"] == token).sum())
        return max(0, self._image_tokens_in(inputs) - image_tokens)

    def _image_tokens_in(self, inputs) -> int:
        """The image positions in a prompt, counted (a family without a counter)."""
        token = image_token_id(self.processor)
        return int((inputs["input_ids"] == token).sum()) if token is not None else 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:  # let a running generate finish first
            for hook in self._hooks:
                hook.remove()
            device = self.device
            self.model = self.loaded.model = None
            gc.collect()
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # -- generation --------------------------------------------------------------------------------

    def _nothing(self, start: int, prompt_tokens: int, images) -> Iterator[Chunk]:
        """The answer to num_predict 0: no tokens (``generate`` refuses max_new_tokens 0)."""
        metrics = Metrics(total_duration=time.perf_counter_ns() - start, prompt_eval_count=prompt_tokens)
        data = {"device": self.device, "dtype": str(self.loaded.dtype).removeprefix("torch.")}
        yield Chunk(done=True, done_reason="length", metrics=metrics, data=data, images=images)

    def _stream(self, inputs, plan, processors, cancel, start, preprocess_ns, prompt_tokens) -> Iterator[Chunk]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        stop_now = threading.Event()  # a stop sequence was seen, or the reader went away
        streamer = generation.TokenQueue()
        stopping = StoppingCriteriaList([generation.StopFlag(cancel, stop_now)])
        kwargs: dict[str, Any] = dict(
            **inputs, **plan.kwargs, **self.family.generate_kwargs, streamer=streamer, stopping_criteria=stopping
        )
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                          else (self.eos_ids[0] if self.eos_ids else None))  # fmt: skip

        timing = {"started": 0}

        def work() -> None:
            try:
                with self._lock:
                    if self.model is None:
                        raise EngineFailed(f"model '{self.info.name}' was unloaded")
                    self._vision_ns = 0
                    moved = _to_device(kwargs, self.model)
                    if plan.seed is not None:
                        torch.manual_seed(plan.seed)
                        if self.device.startswith("cuda"):
                            torch.cuda.manual_seed_all(plan.seed)
                    timing["started"] = time.perf_counter_ns()
                    with torch.inference_mode():
                        self.model.generate(**moved)
                streamer.end()
            except BaseException as exc:  # handed to the reader, which raises it
                streamer.fail(exc)

        thread = threading.Thread(target=work, name=f"imgscribe-generate-{self.info.name}", daemon=True)
        thread.start()
        return self._read(streamer, thread, plan, stop_now, cancel, timing, start, preprocess_ns, prompt_tokens)

    def _read(self, streamer, thread, plan, stop_now, cancel, timing, start, preprocess_ns, prompt_tokens):
        detok = generation.Detokenizer(self.tokenizer)
        pending, count, reason, stopped = "", 0, None, False
        first_ns = last_ns = 0
        try:
            while True:
                item = streamer.queue.get()
                if item is generation.TokenQueue.END:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, ImgscribeError):
                        raise item
                    raise EngineFailed(f"generation failed: {type(item).__name__}: {item}") from item
                if reason is not None:
                    continue  # generated after the end (a stop sequence): drained, not sent
                token, at = item
                count += 1
                first_ns = first_ns or at
                last_ns = at
                if token in self.eos_ids:  # also a tokenizer EOS that generation_config does not list
                    reason = "stop"
                    stop_now.set()
                    continue
                pending += detok.add(token)
                ready, pending, stopped = generation.hold_back(pending, plan.stops)
                if ready:
                    yield Chunk(text=ready)
                if stopped:
                    reason = "stop"
                    stop_now.set()
            thread.join()
            if not stopped:  # what was held back, now that nothing follows it
                ready, rest, stopped = generation.hold_back(pending + detok.flush(), plan.stops)
                tail = ready if stopped else ready + rest
                if tail:
                    yield Chunk(text=tail)
        finally:
            stop_now.set()  # the reader went away (or is done): generate ends at its next token
        if reason is None:
            if cancel is not None and cancel.is_set():
                reason = "cancel"
            elif count >= plan.max_new_tokens:
                reason = "length"
            else:
                reason = "stop"
        end = time.perf_counter_ns()
        began = timing["started"] or end
        metrics = Metrics(
            total_duration=end - start,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=max((first_ns or end) - began, 1),
            eval_count=count,
            eval_duration=max(last_ns - first_ns, 1) if count else 0,
            image_encode_duration=preprocess_ns + self._vision_ns if preprocess_ns else 0,
        )
        data = {"device": self.device, "dtype": str(self.loaded.dtype).removeprefix("torch.")}
        yield Chunk(done=True, done_reason=reason, metrics=metrics, data=data, images=plan.images)


# -- helpers --------------------------------------------------------------------------------------

def _video_costs(videos, inputs, tokens: int, merge: int, token: int | None = None) -> list[dict[str, Any]]:
    """Chunk.images entries for native clips: frames, their times, the size they were sent at, tokens
    (each clip's share of ``video_grid_thw``; else each clip's run of video ``token`` positions;
    else all of ``tokens``)."""
    grids = inputs.get("video_grid_thw")
    runs = _runs(inputs["input_ids"][0].tolist(), token) if token is not None else []
    per = ([int(g.prod()) // merge for g in grids] if grids is not None and len(grids) == len(videos) else
           runs if len(runs) == len(videos) else [tokens])  # fmt: skip
    return [{"video": True, "frames": len(v.frames), "timestamps": list(v.timestamps), "original_size": list(v.size),
             "size": list(v.frames[0].size) if v.frames else list(v.size), "tokens": per[i] if i < len(per) else 0}
            for i, v in enumerate(videos)]  # fmt: skip


def _runs(ids: list[int], token: int) -> list[int]:
    """The lengths of the runs of ``token`` in ``ids`` (one per clip: a clip's positions are contiguous)."""
    runs: list[int] = []
    for i, t in enumerate(ids):
        if t == token:
            if i and ids[i - 1] == token:
                runs[-1] += 1
            else:
                runs.append(1)
    return runs


def _options(manifest: ModelManifest, request: ChatRequest):
    """The request's options over the model's defaults (``manifest.parameters``, as a Modelfile's)."""
    from ...types import Options

    defaults = {k: v for k, v in manifest.parameters.items() if k in Options.model_fields}
    if not defaults:
        return request.options
    given = request.options.model_dump(exclude_none=True)
    return Options(**{**defaults, **given})


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if value is None and source is not None and hasattr(source, "get_text_config"):
            value = getattr(source.get_text_config(), "eos_token_id", None)
        if value is not None:
            ids.extend(value if isinstance(value, (list, tuple)) else [value])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids))


def _vocab_size(model, tokenizer) -> int:
    try:
        return int(model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        return len(tokenizer)


def _to_device(kwargs: dict[str, Any], model) -> dict[str, Any]:
    """Tensors to the model's device; floating ones (pixels) to its dtype too."""
    import torch

    out = {}
    for k, v in kwargs.items():
        if isinstance(v, torch.Tensor):
            v = v.to(model.device, dtype=model.dtype) if v.is_floating_point() else v.to(model.device)
        out[k] = v
    return out


def _time_vision(model, runner: TransformersRunner) -> list:
    """Forward hooks on the outermost vision modules, adding their time to ``runner._vision_ns``."""
    import torch

    found: list[str] = []
    hooks = []
    cuda = str(getattr(model, "device", "cpu")).startswith("cuda")
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in _VISION_MODULES and not any(name.startswith(f + ".") for f in found):
            found.append(name)
            timer = _Timer(runner, torch.cuda.synchronize if cuda else None)
            hooks.append(module.register_forward_pre_hook(timer.before))
            hooks.append(module.register_forward_hook(timer.after))
    return hooks


class _Timer:
    def __init__(self, runner: TransformersRunner, sync):
        self.runner, self.sync, self.began = runner, sync, 0

    def before(self, module, args) -> None:
        if self.sync:
            self.sync()
        self.began = time.perf_counter_ns()

    def after(self, module, args, output) -> None:
        if self.sync:
            self.sync()
        if self.began:
            self.runner._vision_ns += time.perf_counter_ns() - self.began
            self.began = 0
