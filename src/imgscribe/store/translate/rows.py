"""Tensor data rewritten on the way: one row of the token embeddings, as float32."""

from __future__ import annotations

import numpy as np

__all__ = ["TokenRow"]


class TokenRow:
    """The embedding row of one token (any tensor type, dequantized with gguf-py), or zeros when the
    vocabulary has no such token (what Ollama's compatibility layer always writes)."""

    def __init__(self, token: int | None):
        self.token = token

    def __call__(self, data: np.ndarray, ggml_type: int) -> np.ndarray:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        if self.token is None:
            width = data.shape[-1] if data.dtype != np.uint8 else dequantize(data[:1], GGMLQuantizationType(ggml_type)).shape[-1]
            return np.zeros(width, dtype=np.float32)
        row = data[self.token : self.token + 1]
        if data.dtype == np.uint8:
            row = dequantize(row, GGMLQuantizationType(ggml_type))
        return np.ascontiguousarray(row.reshape(-1), dtype=np.float32)
