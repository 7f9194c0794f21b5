"""One ``llama-server`` child process: start on a free port, wait until ready, capture its log, stop.

No orphans, however the parent ends:

- the child runs in its own process group, and :meth:`ServerProcess.stop` kills the whole group;
- an ``atexit`` hook stops every child still running when the interpreter exits normally;
- the child asks the kernel for ``SIGKILL`` when its parent goes (``prctl(PR_SET_PDEATHSIG)``), which
  covers a parent killed by a signal. The kernel sends it when the *thread* that forked the child
  exits, so every child is forked by one long-lived daemon thread, and the ``prctl`` call is made by
  a tiny exec wrapper (``python -I -S -c ...``), not in ``preexec_fn``, which is unsafe in a threaded
  program.
"""

from __future__ import annotations

import atexit
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from ...errors import EngineFailed

__all__ = ["ServerProcess", "free_port", "live_children"]

# Set the parent-death signal, make sure the parent has not already gone, then become the server.
_WRAPPER = (
    "import ctypes,os,signal,sys\n"
    "libc=ctypes.CDLL(None,use_errno=True)\n"
    "libc.prctl(1,signal.SIGKILL,0,0,0)\n"  # PR_SET_PDEATHSIG = 1
    "os.getppid()==int(sys.argv[1]) or os._exit(1)\n"
    "os.execv(sys.argv[2],sys.argv[2:])\n"
)
_LOG_LIMIT = 10_000_000  # a log over this size is started afresh
_BIND_ERRORS = ("couldn't bind", "bind failed", "address already in use", "failed to bind")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Spawner:
    """A daemon thread that forks every child, so the parent-death signal is tied to a thread that
    lives as long as the process (a request thread that ends would kill its children)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="imgscribe-spawner", daemon=True)
                self._thread.start()
        done = threading.Event()
        box: list = []
        self._jobs.put((fn, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _loop(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box.append(fn())
            except BaseException as exc:  # handed to the caller
                box.append(exc)
            done.set()


_spawner = _Spawner()
_children: weakref.WeakSet[ServerProcess] = weakref.WeakSet()
_children_lock = threading.Lock()


def live_children() -> list[int]:
    """PIDs of the llama-server children this process has running (for tests and ``ps``)."""
    with _children_lock:
        return [c.pid for c in list(_children) if c.running]


@atexit.register
def _stop_all() -> None:
    with _children_lock:
        children = list(_children)
    for child in children:
        child.stop(timeout=2)


class ServerProcess:
    """A running ``llama-server``: ``url`` and ``headers`` reach it; ``stop()`` ends it (and its group)."""

    def __init__(
        self,
        binary: Path,
        args: Sequence[str],
        *,
        log_path: Path,
        ready_timeout: float = 600.0,
        env: dict[str, str] | None = None,
        name: str = "",
    ):
        self.binary = Path(binary)
        self.args = list(args)
        self.log_path = Path(log_path)
        self.ready_timeout = ready_timeout
        self.env = env
        self.name = name or self.binary.name
        self.api_key = secrets.token_hex(16)  # nobody else on this machine can use the child
        self.media_marker = ""  # llama-server's, random per start (its /props): read once when first needed
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._stopping = False  # stop() was called: an exit from now on is no crash
        self._log_start = 0  # offset in the log where this run's lines begin

    # -- state -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def crashed(self) -> bool:
        """It was started and has ended without :meth:`stop` (killed, or it died on its own)."""
        return self.proc is not None and not self._stopping and self.proc.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def exit_description(self) -> str:
        rc = self.returncode
        if rc is None:
            return "is running"
        if rc < 0:
            try:
                return f"was killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"was killed by signal {-rc}"
        return f"exited with code {rc}"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines this run wrote to its log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                data = f.read()[-20000:]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def memory(self) -> int:
        """Resident memory of the child in bytes (0 when unknown)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start on a free port and wait until ``/health`` says ready. Raises EngineFailed with the
        log's last lines when the server exits or does not become ready in time."""
        for attempt in range(3):
            self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
                return
            except EngineFailed:
                tail = self.log_tail(40).lower()
                self.stop()
                if attempt < 2 and any(e in tail for e in _BIND_ERRORS):
                    continue  # someone took the port between our probe and its bind: another port
                raise

    def _spawn(self) -> None:
        self._stopping = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        mode = "ab" if self.log_path.exists() and self.log_path.stat().st_size < _LOG_LIMIT else "wb"
        log = open(self.log_path, mode)
        args = [str(self.binary), *self.args, "--host", "127.0.0.1", "--port", str(self.port)]
        header = f"\n=== imgscribe: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(args)}\n"
        log.write(header.encode())
        log.flush()
        self._log_start = log.tell()
        env = dict(self.env if self.env is not None else os.environ)
        env["LLAMA_API_KEY"] = self.api_key  # read by llama-server; kept off the command line (ps)
        parent = os.getpid()

        def popen() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WRAPPER, str(parent), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() kills the group
                close_fds=True,
            )

        try:
            self.proc = _spawner.run(popen)
        except OSError as exc:
            raise EngineFailed(f"could not start {self.binary}: {exc}") from exc
        finally:
            log.close()
        with _children_lock:
            _children.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.02
        with httpx.Client(timeout=5, trust_env=False) as client:
            while True:
                if not self.running:
                    raise EngineFailed(
                        f"llama-server for '{self.name}' {self.exit_description()} while loading",
                        detail=f"log: {self.log_path}\n{self.log_tail()}",
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise EngineFailed(
                        f"llama-server for '{self.name}' was not ready after {self.ready_timeout:.0f} s",
                        detail=f"log: {self.log_path}\n{self.log_tail()}",
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    def stop(self, timeout: float = 5.0) -> None:
        """End the server and everything in its process group: SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        self._stopping = True
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # anything left in the group
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        with _children_lock:
            _children.discard(self)

    def kill(self) -> None:
        """SIGKILL the server now (tests use it to simulate a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
