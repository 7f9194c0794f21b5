"""Shared by the llama.cpp tests: the built binary (or a clear failure in CI), tiny checkpoints of
every family converted to GGUF once per session, a live imgscribe server, and request helpers.

Conversion runs once per test session for every family (one converter process), so the per-family
tests only start llama-server (about 0.5 s) and send requests.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from imgscribe.errors import EngineFailed

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Every family of imgscribe.testing, and what llama.cpp b11434 does with it (checked by the tests).
#: "serves": converts and answers an image request; otherwise the exact reason it does not.
LLAMA_FAMILIES: dict[str, str] = {
    "llava15": "serves",
    "llava_llama3": "serves",
    "llava_phi3": "serves",
    "llava_next": "serves",
    "llava_onevision": "unsupported",  # projector: "LlavaOnevisionForConditionalGeneration is not supported"
    "qwen2_vl": "serves",
    "qwen2_5_vl": "serves",
    "gemma3": "serves",
    "pixtral": "serves",
    "mistral3": "serves",
    "llama4": "serves",  # with 4 layers: 2 give no full-attention layer and llama-server aborts at load
    "phi4mm": "unsupported",  # the converter registers only Phi4ForCausalLMV
    "janus": "serves",
    "idefics3": "serves",
    "smolvlm": "serves",
    "mllama": "unsupported",  # both halves: "Model MllamaForConditionalGeneration is not supported"
}
SERVES = [f for f, what in LLAMA_FAMILIES.items() if what == "serves"]


def _missing(what: str) -> None:
    message = f"{what}: run scripts/build-llama-server.sh (20-30 min once; cached) or set IMGSCRIBE_LLAMA_SERVER"
    if IN_CI:
        pytest.fail(message + " - CI must build it before the tests", pytrace=False)
    pytest.skip(message)


def llama_server_binary() -> Path:
    from imgscribe.engines.llamacpp.binary import server_binary

    try:
        return server_binary()
    except EngineFailed as exc:
        _missing(f"llama-server is not built ({exc})")
        raise AssertionError("unreachable")


def llama_cpp_source() -> Path:
    from imgscribe.engines.llamacpp.binary import llama_cpp_dir

    try:
        return llama_cpp_dir()
    except EngineFailed as exc:
        _missing(f"llama.cpp's converter is not in the cache ({exc})")
        raise AssertionError("unreachable")


# -- tiny checkpoints, converted once per session -----------------------------------------------------

_ROOT = Path(tempfile.mkdtemp(prefix="imgscribe-llamacpp-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)
_lock = threading.Lock()
_checkpoints: dict[str, Path | BaseException] = {}
_converted: dict[str, object] = {}


def checkpoint(family: str) -> Path:
    """The tiny Hugging Face checkpoint of ``family`` (built once per session)."""
    with _lock:
        if family not in _checkpoints:
            from imgscribe import testing

            if testing.needs_torchvision(family) and not testing.has_torchvision():
                _checkpoints[family] = _NeedsTorchvision(f"{family} needs torchvision to build its processor")
            else:
                try:
                    _checkpoints[family] = testing.build(family, _ROOT / "hf" / family)
                except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
                    _checkpoints[family] = exc
        found = _checkpoints[family]
    if isinstance(found, BaseException):
        if isinstance(found, _NeedsTorchvision):
            pytest.skip(str(found))  # declared by imgscribe.testing: Llama 4, Phi-4-multimodal
        raise found
    return found


class _NeedsTorchvision(RuntimeError):
    pass


def converted(family: str):
    """ConvertResult (or the conversion error) for ``family``; every buildable family is converted
    together, in one converter process, the first time any is asked for."""
    with _lock:
        done = family in _converted
    if not done:
        llama = llama_cpp_source()
        from imgscribe.engines.llamacpp.convert import convert_many

        items = []
        for name in LLAMA_FAMILIES:
            try:
                items.append((name, checkpoint(name)))
            except BaseException:  # noqa: BLE001 - that family's test reports it
                continue
        results = convert_many([(path, _ROOT / "gguf" / name) for name, path in items], outtype="f32",
                               llama_dir=llama)  # fmt: skip
        with _lock:
            for (name, _), result in zip(items, results):
                _converted[name] = result
    checkpoint(family)  # skips (torchvision) the same way
    return _converted[family]


def gguf_pair(family: str) -> tuple[Path, Path | None]:
    result = converted(family)
    if isinstance(result, BaseException):
        raise result
    return result.model, result.mmproj


# -- a live imgscribe server ----------------------------------------------------------------------------


# the same live server the server tests use: imgscribe's app on a free loopback port, in a thread
from server.conftest import live_server  # noqa: E402,F401


def photo_b64(name: str = "chelsea") -> str:
    from imgscribe import testing

    return base64.b64encode(testing.photo(name)).decode()


def ollama_chat(url: str, model: str, prompt: str = "Describe this image.", image: str | None = None,
                options: dict | None = None, timeout: float = 120, **extra) -> tuple[list[dict], float]:  # fmt: skip
    """POST /api/chat, streamed: every NDJSON object, and the seconds until the first one."""
    message = {"role": "user", "content": prompt}
    if image is not None:
        message["images"] = [image]
    body = {"model": model, "messages": [message], "stream": True, "options": options or {}, **extra}
    lines, first = [], 0.0
    start = time.monotonic()
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        with client.stream("POST", url + "/api/chat", json=body) as r:
            for line in r.iter_lines():
                if line.strip():
                    first = first or time.monotonic() - start
                    lines.append(json.loads(line))
    return lines, first


def child_pids(parent: int) -> list[int]:
    """PIDs whose parent is ``parent`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
