"""Ollama's options as transformers ``generate`` arguments, and the pieces of a streamed answer.

- temperature 0: greedy; > 0: sampling at that temperature (at least MIN_TEMPERATURE), with
  top_k / top_p / min_p (top_p 0: the top token only); unset: the checkpoint's own
  generation_config.json (its authors' choice, as a Modelfile's parameters are Ollama's defaults).
- num_predict: max_new_tokens (unset or negative: up to the context length); num_ctx: the context.
- repeat_penalty over the last repeat_last_n tokens (Ollama's default window 64; -1 the whole
  context), presence_penalty and frequency_penalty (OpenAI's): one processor, applied as llama.cpp does.
- stop: text is held back while it could still become a stop sequence, and never sent past one.
- seed: seeds torch's generator right before generating (negative: random, as Ollama's -1).
- num_predict 0: no generation at all (an empty answer, done_reason "length").
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from ...types import Options
from ..image_budget import context_error

DEFAULT_REPEAT_LAST_N = 64
#: the lowest sampling temperature used: logits divided by less overflow float32 (inf, then NaN in softmax);
#: at 1e-4 sampling is already greedy in all but exact ties
MIN_TEMPERATURE = 1e-4
#: penalised logits are kept within +-LOGIT_LIMIT (finite even after division by MIN_TEMPERATURE)
LOGIT_LIMIT = 1e30


@dataclass
class Plan:
    kwargs: dict[str, Any]  # for generate(): sampling settings and max_new_tokens
    max_new_tokens: int
    stops: list[str]
    seed: int | None
    penalty: RepeatPenalty | None
    images: list[dict[str, Any]] | None = None  # what each image became (Chunk.images), set by the runner


def plan(
    options: Options, prompt_tokens: int, context_length: int, generation_config, *, image_tokens: int = 0,
    images: int = 0,
) -> Plan:
    """``image_tokens``: how many of the ``prompt_tokens`` are the ``images``' (for the context error)."""
    ctx = options.num_ctx if options.num_ctx and options.num_ctx > 0 else context_length
    if context_length and ctx > context_length:
        ctx = context_length
    room = ctx - prompt_tokens if ctx else 1 << 30
    if room <= 0:  # a 400 with the numbers (InvalidRequest)
        error = context_error(image_tokens, images, prompt_tokens - image_tokens, ctx)
        if context_length and ctx < context_length:  # the request's num_ctx is what is short
            error = InvalidRequest(f"{error.message}; or ask for a larger num_ctx (the model's context is "
                                   f"{context_length:,})")  # fmt: skip
        raise error
    n = options.num_predict
    max_new = room if n is None or n < 0 else min(n, room)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new}
    t = options.temperature
    if t is not None and t <= 0:
        kwargs["do_sample"] = False
    elif t is not None:
        kwargs["do_sample"] = True
        kwargs["temperature"] = max(float(t), MIN_TEMPERATURE)
    sampling = kwargs.get("do_sample", bool(getattr(generation_config, "do_sample", False)))
    if sampling:
        if options.top_k is not None:
            kwargs["top_k"] = max(options.top_k, 0)  # 0: no top-k, as in Ollama
        if options.top_p is not None:
            kwargs["top_p"] = float(options.top_p)  # 0: the most likely token only, as in llama.cpp
        if options.min_p is not None and options.min_p > 0:
            kwargs["min_p"] = options.min_p
    elif t is not None:  # greedy: no sampling knobs, so transformers has nothing to warn about
        kwargs.update(temperature=None, top_k=None, top_p=None)
    penalty = None
    rp, pp, fp = options.repeat_penalty, options.presence_penalty, options.frequency_penalty
    if (rp is not None and rp != 1.0) or pp or fp:
        last_n = options.repeat_last_n if options.repeat_last_n is not None else DEFAULT_REPEAT_LAST_N
        if last_n < 0:
            last_n = ctx or 1 << 30
        penalty = RepeatPenalty(rp if rp else 1.0, last_n, pp or 0.0, fp or 0.0, prompt_tokens)
    stops = [s for s in options.stop or [] if s]
    return Plan(kwargs, max_new, stops, torch_seed(options.seed), penalty)


def torch_seed(seed: int | None) -> int | None:
    """The seed for torch's generator: None (random) for a negative seed, as Ollama's -1 and llama.cpp
    mean; others wrapped into torch's unsigned 64-bit range (larger ones overflow it)."""
    if seed is None or seed < 0:
        return None
    return seed % (1 << 64)


class RepeatPenalty:
    """llama.cpp's penalties over the last ``last_n`` tokens of the answer and prompt together: logits of
    tokens seen there are divided (if positive) or multiplied (if negative) by ``repeat``, then lowered
    by ``presence`` once and ``frequency`` per occurrence."""

    def __init__(self, repeat: float, last_n: int, presence: float, frequency: float, prompt_tokens: int):
        self.repeat, self.last_n, self.presence, self.frequency = repeat, last_n, presence, frequency

    def __call__(self, input_ids, scores):
        import torch

        if self.last_n == 0:
            return scores
        window = input_ids[:, -self.last_n :]
        scores = scores.clone()
        for row in range(scores.shape[0]):
            ids, counts = torch.unique(window[row], return_counts=True)
            ids = ids[ids < scores.shape[-1]]
            counts = counts[: ids.numel()]
            logits = original = scores[row, ids]
            if self.repeat != 1.0:
                logits = torch.where(logits > 0, logits / self.repeat, logits * self.repeat)
            logits = logits - self.presence - self.frequency * counts.to(logits.dtype)
            # extreme penalties (1e-40, 1e300) overflow float32: keep the logits finite, or sampling fails
            logits = torch.nan_to_num(logits, nan=-LOGIT_LIMIT, posinf=LOGIT_LIMIT, neginf=-LOGIT_LIMIT)
            masked = original == float("-inf")  # a token already ruled out stays out
            scores[row, ids] = torch.where(masked, original, logits.clamp(-LOGIT_LIMIT, LOGIT_LIMIT))
        return scores


class Detokenizer:
    """Token ids to text, incrementally: a piece is released once it decodes to whole characters
    (byte-level BPE splits UTF-8 characters across tokens), and special tokens are left out."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] is context for decoding what follows read
        self.read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :] if len(after) > len(before) else ""


def hold_back(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split text into (what can be sent, what must wait, whether a stop sequence ended it)."""
    hits = [text.find(s) for s in stops if s in text]
    if hits:
        return text[: min(hits)], "", True
    keep = max((n for s in stops for n in range(len(s) - 1, 0, -1) if text.endswith(s[:n])), default=0)
    return text[: len(text) - keep], text[len(text) - keep :], False


class TokenQueue:
    """A transformers streamer: ``generate`` (in its thread) puts each new token with the time it came;
    the answer's iterator takes them. The first ``put`` is the prompt, which is skipped."""

    END = object()

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = time.perf_counter_ns()
        for token in value.reshape(-1).tolist():
            self.queue.put((int(token), now))

    def end(self) -> None:
        self.queue.put(self.END)

    def fail(self, exc: BaseException) -> None:
        self.queue.put(exc)


class StopFlag:
    """A transformers StoppingCriteria: generation ends at the next token once ``set``."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
