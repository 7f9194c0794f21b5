"""Writing a GGUF from another one, with edited metadata and renamed, reordered or rewritten tensors.

The reading and writing are gguf-py's (``gguf`` on PyPI: the same package llama.cpp's converter uses,
pinned to the pinned llama.cpp's version). A :class:`FileSpec` says what the new file holds; the source
is memory-mapped and its tensors are streamed to the new file one at a time, so a 15 GB model needs
no more memory than its largest rewritten tensor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FileSpec", "TensorSpec", "Value", "permute_rows", "write_gguf"]


@dataclass(frozen=True)
class Value:
    """A metadata value and its GGUF type names: ``u32``, ``i32``, ``f32``, ``bool``, ``str``, or
    ``array`` with ``item`` one of those."""

    value: Any
    kind: str
    item: str = ""


@dataclass
class TensorSpec:
    """One tensor of the new file: ``source``'s data (None: zeros of ``shape``, float32), through
    ``transform(data, ggml_type)`` if given (``data`` as gguf-py maps it: quantized types as byte rows)."""

    name: str
    source: str | None
    shape: tuple[int, ...] = ()
    transform: Callable[[np.ndarray, int], np.ndarray] | None = None


@dataclass
class FileSpec:
    """What a translated file holds: the source's metadata in order, less ``drop`` and with ``set``
    replacing or adding keys (``truncate``: arrays cut to a length), and ``tensors`` in order."""

    architecture: str
    drop: Callable[[str], bool] = lambda key: False
    copy: dict[str, str] = field(default_factory=dict)  # new key -> the source key whose value and type it takes
    set: dict[str, Value] = field(default_factory=dict)
    truncate: dict[str, int] = field(default_factory=dict)
    tensors: list[TensorSpec] = field(default_factory=list)


def permute_rows(n_head: int) -> Callable[[np.ndarray], np.ndarray]:
    """Reorder a Q/K weight's output rows from the Hugging Face order to llama.cpp's RoPE order (what
    ``LlamaModel.permute`` does in the converter): within each head, rows ``[first half | second half]``
    become interleaved pairs. Whole rows move, so any tensor type (quantized too) works."""

    def apply(rows: np.ndarray, _type: int = 0) -> np.ndarray:
        total = rows.shape[0]
        head = total // n_head
        order = np.arange(total).reshape(n_head, 2, head // 2).swapaxes(1, 2).reshape(total)
        return rows[order]

    return apply


def _types():
    import gguf

    t = gguf.GGUFValueType
    return {"u32": t.UINT32, "i32": t.INT32, "f32": t.FLOAT32, "bool": t.BOOL, "str": t.STRING, "array": t.ARRAY,
            "u64": t.UINT64, "i64": t.INT64, "f64": t.FLOAT64, "u8": t.UINT8, "i8": t.INT8, "u16": t.UINT16,
            "i16": t.INT16}  # fmt: skip


def write_gguf(source: str | Path, spec: FileSpec, dest: str | Path, progress: Callable[[int], None] = lambda n: None) -> None:
    """Write ``spec`` of ``source`` to ``dest`` (``progress(bytes)`` after each tensor). The caller
    names ``dest`` so that a half-written file is never taken for a finished one."""
    import gguf

    types = _types()
    reader = gguf.GGUFReader(source, "r")
    writer = gguf.GGUFWriter(os.fspath(dest), spec.architecture, use_temp_file=False)
    try:
        alignment = reader.get_field("general.alignment")
        if alignment is not None:
            writer.add_custom_alignment(int(alignment.contents()))  # the key and the padding it names
        for name, f in reader.fields.items():
            if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
                continue
            if spec.drop(name) or name in spec.set or name in spec.copy:
                continue
            kind = f.types[0]
            item = f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            value = f.contents()
            if name in spec.truncate:
                value = value[: spec.truncate[name]]
            writer.add_key_value(name, value, kind, sub_type=item)
        for name, key in spec.copy.items():
            f = reader.get_field(key)
            if f is not None and name not in spec.set:
                item = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(name, f.contents(), f.types[0], sub_type=item)
        for name, v in spec.set.items():
            writer.add_key_value(name, v.value, types[v.kind], sub_type=types[v.item] if v.item else None)

        tensors = {t.name: t for t in reader.tensors}
        data: list[np.ndarray] = []
        for out in spec.tensors:
            if out.source is None:
                array = np.zeros(out.shape, dtype=np.float32)
                writer.add_tensor_info(out.name, array.shape, array.dtype, array.nbytes)
                data.append(array)
                continue
            t = tensors[out.source]
            array = t.data
            if out.transform is not None:
                array = out.transform(np.asarray(array), int(t.tensor_type))
            raw = t.tensor_type if array.dtype == np.uint8 else None  # quantized: bytes, and the type they hold
            writer.add_tensor_info(out.name, array.shape, array.dtype, array.nbytes, raw)
            data.append(array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for array in data:
            writer.write_tensor_data(array, tensor_endianess=reader.endianess)
            progress(int(array.nbytes))
        if writer.fout:
            for f in writer.fout:
                f.flush()
                os.fsync(f.fileno())
    finally:
        writer.close()
        del reader


def preview(header, spec: FileSpec):
    """The header the file ``write_gguf`` would write (values of copied and set keys, tensor names and
    shapes), to judge a translation before anything is downloaded."""
    from .gguf import GGUFHeader

    out = GGUFHeader(header.version, special_tokens=dict(header.special_tokens))
    out.metadata["general.architecture"] = spec.architecture
    for key, value in header.metadata.items():
        if key != "general.architecture" and not spec.drop(key) and key not in spec.set and key not in spec.copy:
            out.metadata[key] = value
    for key, source in spec.copy.items():
        if source in header.metadata and key not in spec.set:
            out.metadata[key] = header.metadata[source]
    out.metadata.update({key: v.value for key, v in spec.set.items()})
    for t in spec.tensors:
        out.tensors[t.name] = header.tensors[t.source] if t.source else (tuple(reversed(t.shape)), 0)
    return out
