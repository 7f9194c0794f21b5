"""Structured output: ``format`` ("json" or a JSON schema) as a constrained-decoding logits processor.

The grammar engine is llguidance (guidance-ai, the library behind llama.cpp's and vLLM's
``--grammar llguidance`` backends): it compiles a JSON schema into a token-level matcher over the
model's own tokenizer and gives, at each step, the bitmask of tokens that keep the output valid.
Here it is applied as a transformers ``LogitsProcessor``, before temperature / top-k / top-p, so the
sampler only ever sees valid tokens; when the JSON is complete only end-of-sequence stays allowed.
"""

from __future__ import annotations

import threading
from typing import Any

from ...errors import Unsupported
from ..schema import compile_json_schema

# Compact separators and no free whitespace: a model cannot wander into endless blank lines.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}  # Ollama's format "json" is an object


def schema_of(format: Any) -> dict[str, Any] | None:
    """The schema to constrain to: ``format`` is None, "json" or a schema (ChatRequest checked it)."""
    if format is None:
        return None
    return ANY_JSON_OBJECT if format == "json" else format


class GrammarCompiler:
    """Per loaded model: the llguidance view of its tokenizer (about a second to build, so built once)."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: list[int]):
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._eos_ids = [i for i in eos_ids if i is not None]
        self._ll = None
        self._lock = threading.Lock()

    def _ll_tokenizer(self):
        with self._lock:
            if self._ll is None:
                try:
                    import llguidance.hf
                except ImportError as exc:
                    raise Unsupported(
                        "structured output (format) needs the llguidance package: pip install llguidance"
                    ) from exc
                try:
                    self._ll = llguidance.hf.from_tokenizer(
                        self._tokenizer, n_vocab=self._vocab_size, eos_token=self._eos_ids or None
                    )
                except ValueError as exc:  # a slow (Python) tokenizer
                    raise Unsupported(f"structured output needs a fast tokenizer: {exc}") from exc
            return self._ll

    def processor(self, schema: dict[str, Any]) -> JsonLogitsProcessor:
        import llguidance

        tokenizer = self._ll_tokenizer()
        grammar = compile_json_schema(schema, tokenizer, defaults=_JSON_OPTIONS)
        return JsonLogitsProcessor(llguidance.LLMatcher(tokenizer, grammar, log_level=0), self._vocab_size)


class JsonLogitsProcessor:
    """A transformers LogitsProcessor (batch of one) that lets through only grammar-valid tokens."""

    def __init__(self, matcher, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._prompt_len: int | None = None

    def __call__(self, input_ids, scores):
        import numpy as np
        import torch

        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        elif input_ids.shape[1] > self._prompt_len:
            self.matcher.consume_token(int(input_ids[0, -1]))
        if self.matcher.is_error():
            raise RuntimeError(f"structured output: {self.matcher.get_error()}")
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = np.zeros(scores.shape[-1], dtype=bool)
        n = min(len(bits), scores.shape[-1])
        allowed[:n] = bits[:n].astype(bool)
        blocked = torch.from_numpy(~allowed).to(scores.device)
        return scores.masked_fill(blocked, float("-inf"))

    @property
    def accepting(self) -> bool:
        return self.matcher.is_accepting()
