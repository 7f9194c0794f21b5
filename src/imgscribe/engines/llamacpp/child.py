"""The llama-server child of one set of weights, shared by every model that loads the same files the
same way: a derived model (``FROM llava`` with its own SYSTEM, TEMPLATE or sampling PARAMETERs) is
answered by its parent's llama-server, never by a second copy of the weights.

What makes two models share a child: the same binary and the same llama-server command line (files,
context, slots, threads, GPU layers, image token limits, chat template text), less the ``--alias``.
What each model keeps of its own (prompt, system, history, sampling options) travels in each request.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from pathlib import Path

from ...errors import Cancelled, EngineFailed
from ...types import ModelManifest
from .process import ServerProcess

__all__ = ["Child", "child_for"]

log = logging.getLogger("imgscribe.llamacpp")

_children: dict[str, Child] = {}
_registry = threading.Lock()


def share_key(binary: Path, args: list[str]) -> str:
    """Two command lines that load the same weights the same way give the same key."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--alias":
            skip = True
        elif i and args[i - 1] == "--chat-template-file":
            out[-1:] = ["--chat-template", hashlib.sha256(Path(arg).read_bytes()).hexdigest()]
        else:
            out.append(arg)
    return json.dumps([str(binary), out])


class Child:
    """One llama-server process (restarted after a crash, or for another ``num_ctx``), its busy
    slots, and how many runners use it."""

    def __init__(self, key: str, manifest: ModelManifest, binary: Path, args_for, ctx: int, log_path: Path,
                 load_timeout: float):  # fmt: skip
        self.key = key
        self.manifest = manifest  # the first model's: its files and load parameters are every user's
        self.binary = binary
        self._args_for = args_for  # ctx -> llama-server's command line
        self.ctx = ctx
        self._args = args_for(ctx)
        self.log_path = log_path
        self.load_timeout = load_timeout
        self.users = 1
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.active = 0
        self.closed = False
        self.broken = False  # a restart after a crash failed
        self.restarts = 0  # after a crash
        self.reloads = 0  # for another num_ctx
        self._sizes = _file_sizes(manifest)  # as loaded: a restart refuses files changed since
        self.process = self._new_process()

    def _new_process(self) -> ServerProcess:
        return ServerProcess(self.binary, self._args, log_path=self.log_path, ready_timeout=self.load_timeout,
                             name=self.manifest.name)  # fmt: skip

    def acquire(self, num_ctx: int | None, cancel: threading.Event, shown: str) -> ServerProcess:
        """The live process, with a slot counted as busy. One that crashed is restarted here (on the
        next request); a request for another ``num_ctx`` restarts it with that context once the
        answers in flight are done."""
        with self._lock:
            if self.closed:
                raise EngineFailed(f"model '{shown}' has been unloaded")
            wanted = min(num_ctx, self.trained_ctx) if num_ctx else self.ctx
            if wanted != self.ctx:
                while self.active and not cancel.is_set():
                    self._idle.wait(0.25)
                if cancel.is_set():
                    raise Cancelled("request canceled")
                log.info("restarting llama-server for '%s' with num_ctx %d (was %d)", shown, wanted, self.ctx)
                self.process.stop()
                self.ctx = wanted
                self._args = self._args_for(self.ctx)
                self.process = self._new_process()
                self.reloads += 1
                self.process.start()
            elif not self.process.running:
                self.process.stop()
                try:
                    self._check_files(shown)
                    self.process = self._new_process()
                    self.restarts += 1
                    self.process.start()
                except BaseException:
                    self.broken = True  # the scheduler drops its runners: the next load starts afresh
                    raise
            self.active += 1
            return self.process

    @property
    def crashed(self) -> bool:
        """Its llama-server ended without being stopped (killed, or died on a damaged file)."""
        return self.broken or self.process.crashed

    def _check_files(self, shown: str) -> None:
        """Refuse to restart on files that are gone or changed size since the load (a blob deleted
        or truncated meanwhile): llama-server would fail on them with a stack of log lines."""
        problem = self.file_problem(shown)
        if problem:
            raise EngineFailed(problem)

    def file_problem(self, shown: str) -> str:
        """What is wrong with the model's files now, compared with the load ("" when nothing)."""
        for role, (path, size) in self._sizes.items():
            try:
                now = Path(path).stat().st_size
            except OSError:
                return (f"model '{shown}': its {role} file {path} is gone since the model was loaded; "
                        "pull or create the model again")  # fmt: skip
            if now != size:
                return (f"model '{shown}': its {role} file {path} is {now:,} bytes, {size:,} when the model "
                        "was loaded (truncated or replaced); pull or create the model again")  # fmt: skip
        return ""

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            self._idle.notify_all()

    @functools.cached_property
    def trained_ctx(self) -> int:
        """The context the model was trained for (the GGUF's ``<arch>.context_length``), or no cap."""
        from ...formats.gguf import read_gguf

        head = read_gguf(self.manifest.files["model"])
        return int(head.metadata.get(f"{head.architecture}.context_length") or 1 << 30)

    def release(self) -> None:
        """One user fewer; the last one stops the process."""
        with _registry:
            self.users -= 1
            last = self.users <= 0
            if last and _children.get(self.key) is self:
                del _children[self.key]
        if last:
            self.closed = True
            self.process.stop()


def _file_sizes(manifest: ModelManifest) -> dict[str, tuple[str, int]]:
    sizes = {}
    for role in ("model", "projector"):
        path = manifest.files.get(role)
        if path:
            try:
                sizes[role] = (path, Path(path).stat().st_size)
            except OSError:
                pass  # server_args says it is missing
    return sizes


def child_for(key: str, make) -> Child:
    """The live child of ``key``, shared, or a new one from ``make()``, started here. (Under one lock:
    a second model of the same weights waits for the first start instead of starting a copy.)"""
    with _registry:
        child = _children.get(key)
        if child is not None and not child.closed and not child.broken:
            child.users += 1
            return child
        child = make()
        child.process.start()  # raises (nothing registered) when llama-server does not come up
        _children[key] = child
        return child
