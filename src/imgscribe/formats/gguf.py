"""GGUF headers: the metadata and tensor list of a GGUF file, read without touching its weights.

Format knowledge shared by the store (which describes a GGUF as a model manifest) and the llamacpp
engine (which reads a model's own chat template and trained context).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidRequest

__all__ = ["FILE_TYPES", "GGUFHeader", "RangeReader", "read_gguf", "read_gguf_header"]

#: llama.cpp's ``llama_ftype`` (include/llama.h): ``general.file_type`` -> Ollama's quantization names.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}  # fmt: skip

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY = 64  # longer arrays (vocabularies) are skipped, only their length kept


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[tuple[int, ...], int]] = field(default_factory=dict)  # name -> (shape, type)
    #: ids of the vocabulary's control-like tokens (``<|eot_id|>``, ``<end_of_turn>``...), kept from the
    #: long ``tokenizer.ggml.tokens`` array, which is otherwise skipped
    special_tokens: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def parameters(self) -> int:
        total = 0
        for shape, _ in self.tensors.values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    @property
    def quantization(self) -> str:
        ft = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ft, f"type {ft}") if isinstance(ft, int) else ""

    @property
    def context_length(self) -> int:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else 0

    def length(self, key: str) -> int:
        """The number of items of an array value (kept or skipped); 0 for anything else."""
        value = self.metadata.get(key)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, str) and value.startswith("<array of "):
            return int(value[10:-1])
        return 0

    @property
    def is_projector(self) -> bool:
        return self.architecture == "clip"


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("the file ends inside its header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > 1 << 24:
        raise ValueError("implausible string length")
    return _read(f, n).decode("utf-8", "replace")


def _special(token: str) -> bool:
    return len(token) < 48 and (token[:1], token[-1:]) in (("<", ">"), ("[", "]"))


def _value(f: BinaryIO, kind: int, keep: bool = False) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALARS and n > _KEEP_ARRAY:
            f.seek(n * struct.calcsize(_SCALARS[item]), 1)
            return f"<array of {n}>"
        values = [_value(f, item) for _ in range(n)]
        return values if n <= _KEEP_ARRAY or keep else f"<array of {n}>"
    raise ValueError(f"unknown metadata type {kind}")


def _parse(f: BinaryIO, where: str) -> GGUFHeader:
    if f.read(4) != b"GGUF":
        raise InvalidRequest(f"{where} is not a GGUF file (it does not start with 'GGUF')")
    version, n_tensors, n_kv = struct.unpack("<IQQ", _read(f, 20))
    if version < 2:
        raise InvalidRequest(f"{where}: GGUF version {version} is too old (llama.cpp reads 2 and 3)")
    header = GGUFHeader(version)
    for _ in range(n_kv):
        key = _string(f)
        (kind,) = struct.unpack("<I", _read(f, 4))
        value = _value(f, kind, keep=key == "tokenizer.ggml.tokens")
        if isinstance(value, list) and len(value) > _KEEP_ARRAY:
            header.special_tokens = {t: i for i, t in enumerate(value) if isinstance(t, str) and _special(t)}
            value = f"<array of {len(value)}>"
        header.metadata[key] = value
    for _ in range(n_tensors):
        name = _string(f)
        (n_dims,) = struct.unpack("<I", _read(f, 4))
        shape = struct.unpack(f"<{n_dims}Q", _read(f, 8 * n_dims))
        kind, _offset = struct.unpack("<IQ", _read(f, 12))
        header.tensors[name] = (shape, kind)
    return header


def read_gguf(path: str | Path) -> GGUFHeader:
    """The metadata and tensor list of a GGUF file (the weights are not read)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _parse(f, str(path))
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a valid GGUF file: {exc}") from None


class RangeReader:
    """A forward-only file over ``fetch(offset, size) -> bytes`` (an HTTP Range request, say), for a
    source of unknown total length: it asks for ``first`` bytes, then for twice as many each time the
    header reads past what arrived, and never for more than ``limit`` bytes in all. Skipped arrays
    (token scores) are not fetched unless a later read needs the bytes after them.

    ``fetch`` may return fewer bytes than asked (the end of the file) and must return ``b""`` past it.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], first: int = 1 << 20, limit: int = 256 << 20):
        self._fetch = fetch
        self._next = first
        self.limit = limit
        self.pos = 0
        self.fetched = 0  # bytes asked of the source, in all
        self._buf = b""
        self._buf_start = 0
        self._eof = False

    def read(self, n: int) -> bytes:
        end = self.pos + n
        while end > self._buf_start + len(self._buf) and not self._eof:
            self._more(end)
        start = self.pos - self._buf_start
        data = self._buf[start : start + n]
        self.pos += len(data)
        return data

    def seek(self, n: int, whence: int = 0) -> int:
        self.pos = self.pos + n if whence == 1 else n
        return self.pos

    def _more(self, end: int) -> None:
        have_end = self._buf_start + len(self._buf)
        start = max(have_end, self.pos)
        if start > self._buf_start + len(self._buf):  # a skip past the buffer: start afresh there
            self._buf, self._buf_start = b"", start
        size = max(self._next, end - start)
        if self.fetched + size > self.limit:
            size = self.limit - self.fetched
            if size < end - start:
                raise ValueError(f"its header is larger than {self.limit >> 20} MiB")
        data = self._fetch(start, size)
        self.fetched += size
        self._next = min(self._next * 2, 64 << 20)
        if len(data) < size:
            self._eof = True
        keep = max(0, self.pos - self._buf_start)  # what is behind the reader is never read again
        self._buf = self._buf[keep:] + data
        self._buf_start += keep


def read_gguf_header(fetch: Callable[[int, int], bytes], where: str = "the file", **kw: int) -> GGUFHeader:
    """The metadata and tensor list of a GGUF read through ``fetch(offset, size)`` (see
    :class:`RangeReader`), fetching only as much of the file as its header takes."""
    try:
        return _parse(RangeReader(fetch, **kw), where)  # type: ignore[arg-type]
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{where} is not a valid GGUF file: {exc}") from None
