"""The only place that loads and unloads models.

How it behaves (the knobs come from one :class:`~imgscribe.config.Settings`, read once when the
scheduler is made: the one given to :class:`Scheduler`, else the environment's with the process's
overrides from :func:`configure`, such as the CLI's ``--force``; a knob given to it wins):

- **Load on first use.** A model loads when a request first needs it, once, however many requests
  arrive while it loads.
- **Keep-alive.** A model stays loaded for its keep-alive after its last request ends: the latest
  request's ``keep_alive``, else ``IMGSCRIBE_KEEP_ALIVE`` (default 5m). ``0`` unloads it as soon as it
  is idle; a negative value (``math.inf`` here) keeps it forever.
- **How many stay loaded.** At most ``IMGSCRIBE_MAX_LOADED_MODELS`` models (``0``: no limit), and
  together they stay within a memory budget (default: this machine's RAM, or its container's
  limit, less a reserve for the system; a model's memory is ``Runner.memory``, or the size of its
  files while it loads). To load one more, the least
  recently used idle model is unloaded; when every loaded model is busy, the request waits.
- **Parallel slots.** A loaded model serves ``min(runner.parallel, IMGSCRIBE_NUM_PARALLEL)`` requests
  at once (``IMGSCRIBE_NUM_PARALLEL=0``: as many as the engine allows; the default 1 runs one at a
  time, as Ollama does; :func:`imgscribe.config.parallel_slots`). Further requests wait their turn,
  first come first served per model. ``describe`` in process, when nothing chose them
  (:attr:`Scheduler.num_parallel_chosen`), opens as many as the memory allows for its run
  (``batch/runner.py`` ``chosen_slots``, issue 19).
- **Memory.** A model whose estimate does not fit in the RAM available is refused before it loads
  (:func:`imgscribe.memory.check_manifest`), unless ``ignore_memory`` (``IMGSCRIBE_IGNORE_MEMORY``,
  the CLI's ``--force``).
- **Queue.** At most ``IMGSCRIBE_MAX_QUEUE`` requests wait (for a slot or a load) at once; one more
  gets :class:`~imgscribe.errors.Busy` straight away (the server answers 503 with ``Retry-After``).
- **Cancellation.** The ``cancel`` event of a waiting request takes it out of the queue
  (:class:`~imgscribe.errors.Cancelled`); a running request hands it to the runner, which stops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ..config import Settings, chosen, configure, parallel_slots, process_settings
from ..engines import Runner, get_engine
from ..engines.frames import for_runner, frame_count
from ..errors import Busy, Cancelled, EngineFailed
from ..memory import check_manifest
from ..store import Store, parse_name
from ..types import ChatRequest, Chunk, ModelInfo, ModelManifest
from .entries import (
    LoadedModel,
    _close,
    _Lease,
    _Model,
    _raise_as_engine_error,
    check_capabilities,
)

__all__ = ["LoadedModel", "Scheduler", "check_capabilities", "configure", "default_scheduler", "process_settings"]

log = logging.getLogger("imgscribe.scheduler")
_POLL = 0.25  # how often a waiting request looks at its cancel event
FOREVER = 100 * 365 * 86400.0  # a keep-alive this long (100 years) or longer is forever


class Scheduler:
    def __init__(
        self,
        store: Store | None = None,
        *,
        keep_alive: float | None = None,
        max_loaded: int | None = None,
        num_parallel: int | None = None,
        max_queue: int | None = None,
        memory_budget: int | None = None,
        config: Settings | None = None,
    ):
        cfg = config or process_settings()
        self.store = store or Store(cfg.models_dir)
        self.keep_alive = cfg.keep_alive if keep_alive is None else keep_alive
        self.max_loaded = cfg.max_loaded_models if max_loaded is None else max_loaded
        self.num_parallel = cfg.num_parallel if num_parallel is None else num_parallel
        #: the slots were chosen (an argument here, IMGSCRIBE_NUM_PARALLEL, a process override):
        #: ``describe`` leaves them as they are rather than opening as many as the memory allows
        self.num_parallel_chosen = num_parallel is not None or chosen("num_parallel")
        self.max_queue = cfg.max_queue if max_queue is None else max_queue
        self.ignore_memory = cfg.ignore_memory
        self._memory_budget = memory_budget
        self._lock = threading.RLock()  # reentrant: a lease dropped by the GC may release under it
        self._models: dict[str, _Model] = {}
        self._queues: dict[str, deque[threading.Condition]] = {}  # waiting requests, per model
        self._waiting = 0
        self._reaper_wake = threading.Condition(self._lock)
        self._reaper_until = math.inf  # when the waiting reaper looks next (monotonic; inf: when woken)
        self._reaper: threading.Thread | None = None
        self._closed = False

    @property
    def memory_budget(self) -> int:
        """Bytes the loaded models may hold together; by default this machine's RAM (or its
        container's limit) less the reserve for the system (:func:`imgscribe.memory.ram_budget`)."""
        if self._memory_budget is None:
            from ..hardware import probe_ram
            from ..memory import ram_budget

            total = probe_ram()[0]
            self._memory_budget = ram_budget(total) if total else 1 << 62  # unknown: no budget
        return self._memory_budget

    # -- what front doors call ---------------------------------------------------------------

    def info(self, model: str) -> ModelInfo:
        """What the model is and can do: from its runner when it is loaded (no disk access)."""
        runner = self._runner(parse_name(model).short)
        return runner.info if runner is not None else self.store.resolve(model).info

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """Wait for a slot (loading the model if needed), then stream the runner's answer.

        Errors before the first chunk (unknown model, refused capability, full queue, failed load)
        are raised here; the slot is held until the returned iterator ends or is closed.
        """
        started = time.perf_counter_ns()
        info = self.info(request.model)
        check_capabilities(info, images=frame_count(request), think=request.think, name=request.model)
        model, load_ns = self._acquire(request.model, request.keep_alive, cancel)
        try:
            chunks = model.runner.chat(for_runner(request, model.runner), cancel)  # videos: frames unless native
        except BaseException as exc:
            self._release(model)
            _raise_as_engine_error(model.name, exc)
        return _Lease(self, model, iter(chunks), started, load_ns)

    def load(self, model: str, keep_alive: float | None = None, cancel: threading.Event | None = None) -> int:
        """Load a model without asking it anything (Ollama's empty prompt); the load time in ns."""
        with self._lock:
            loaded = self._models.get(parse_name(model).short)
            if loaded is not None and loaded.runner is not None:
                loaded.keep_alive = self._keep_alive(keep_alive)
                if loaded.active == 0:
                    self._set_expiry(loaded)
                return 0
        entry, load_ns = self._acquire(model, keep_alive, cancel)
        self._release(entry)
        return load_ns

    def runner(self, model: str) -> Runner:
        """The loaded runner of ``model`` (loading it if needed), for callers that only inspect it."""
        name = parse_name(model).short
        runner = self._runner(name)
        if runner is None:
            self.load(model)
            runner = self._runner(name)
        if runner is None:
            raise EngineFailed(f"model '{model}' was unloaded while it was being looked at")
        return runner

    def loaded_runner(self, model: str) -> Runner | None:
        """The runner of ``model`` if it is loaded now (None otherwise: nothing is loaded for asking)."""
        return self._runner(parse_name(model).short)

    def unload(self, model: str) -> bool:
        """Unload now, or as soon as its running requests end. False when it was not loaded;
        ModelNotFound when there is no such model."""
        name = parse_name(model).short
        with self._lock:
            entry = self._models.get(name)
            if entry is not None:
                entry.keep_alive = 0
                if not entry.idle:
                    return True  # _release unloads it
                del self._models[name]
                self._wake()
        if entry is None:
            self.store.stored(model)  # no such model: say so (a damaged one is simply not loaded)
            return False
        _close(entry)
        return True

    def loaded(self) -> list[Runner]:
        with self._lock:
            return [m.runner for m in self._models.values() if m.runner is not None]

    def ps(self) -> list[LoadedModel]:
        now_wall, now = datetime.now(UTC), time.monotonic()
        rows = []
        with self._lock:
            for m in self._models.values():
                if m.runner is None or _dead(m):  # (a dead runner is forgotten at the next request)
                    continue
                deadline = m.expires - now if m.expires is not None else m.keep_alive
                expires_at = None if math.isinf(deadline) else now_wall + timedelta(seconds=max(deadline, 0))
                rows.append(LoadedModel(m.runner.info, m.memory, m.active, m.slots, expires_at))
        return rows

    def queue_depth(self) -> int:
        """Requests waiting for a slot or a load right now."""
        return self._waiting

    def running(self) -> int:
        """Requests being answered right now (and loads in progress)."""
        with self._lock:
            return sum(m.active for m in self._models.values())

    def close(self) -> None:
        """Unload everything; waiting requests fail. The scheduler cannot be used afterwards."""
        with self._lock:
            self._closed = True
            entries, self._models = list(self._models.values()), {}
            self._reaper_wake.notify_all()
            self._wake()
        for entry in entries:
            _close(entry)

    # -- slots -------------------------------------------------------------------------------

    def _runner(self, name: str) -> Runner | None:
        with self._lock:
            entry = self._models.get(name)
            return entry.runner if entry is not None else None

    def _acquire(self, model: str, keep_alive: float | None, cancel: threading.Event | None) -> tuple[_Model, int]:
        """A slot of ``model``, loading it first when it is not loaded; the load time in ns."""
        name = parse_name(model).short
        manifest = None if self._runner(name) is not None else self.store.resolve(model)
        budget = self.memory_budget  # probed once, here rather than under the lock
        while True:
            entry, evicted = self._take_turn(name, manifest, keep_alive, cancel, budget)
            for old in evicted:
                _close(old)
            if entry is None:  # it was unloaded while we waited: the store has what loading needs
                manifest = self.store.resolve(model)
            elif entry.runner is None:
                return entry, self._load(entry, manifest)
            else:
                return entry, 0

    def _take_turn(
        self,
        name: str,
        manifest: ModelManifest | None,
        keep_alive: float | None,
        cancel: threading.Event | None,
        budget: int,
    ) -> tuple[_Model | None, list[_Model]]:
        """Wait in line; then take a slot of the loaded model, or make room and register it as
        loading (``runner`` None: the caller loads it, after closing the evicted models).
        Returns no entry when the model must be loaded and ``manifest`` is None."""
        ticket = threading.Condition(self._lock)
        evicted: list[_Model] = []
        waiting = False  # counted in the queue: only a request that cannot start at once is
        with self._lock:
            queue = self._queues.setdefault(name, deque())
            queue.append(ticket)
            try:
                while True:
                    if self._closed:
                        raise EngineFailed("the server is shutting down")
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("request canceled")
                    if queue[0] is ticket:
                        entry = self._forget_if_dead(name, evicted)
                        if entry is not None and entry.runner is not None and entry.active < entry.slots:
                            self._start(entry, keep_alive)
                            return entry, evicted
                        if entry is None and manifest is None:
                            return None, evicted
                        if entry is None and self._make_room(manifest.info.size, budget, evicted):
                            entry = _Model(name, manifest.info.size, self._keep_alive(keep_alive))
                            self._models[name] = entry
                            return entry, evicted
                    if not waiting:
                        if self._waiting >= self.max_queue:
                            raise Busy(
                                f"server busy: {self._waiting} requests are already waiting "
                                f"(IMGSCRIBE_MAX_QUEUE={self.max_queue}); try again shortly"
                            )
                        self._waiting += 1
                        waiting = True
                    ticket.wait(_POLL)
            finally:
                queue.remove(ticket)
                if not queue:
                    del self._queues[name]
                if waiting:
                    self._waiting -= 1
                self._wake()

    def _load(self, entry: _Model, manifest: ModelManifest) -> int:
        start = time.perf_counter_ns()
        try:
            warning = check_manifest(manifest, override=self.ignore_memory)  # refuse rather than swap or be killed
            if warning:
                log.warning(warning)
            runner = get_engine(manifest.engine).load(manifest)
        except BaseException as exc:
            with self._lock:
                self._models.pop(entry.name, None)
                self._wake()
            _raise_as_engine_error(entry.name, exc, "could not load")
        with self._lock:
            entry.runner = runner
            entry.slots = parallel_slots(self.num_parallel, runner.parallel)
            entry.last_used = time.monotonic()
            self._wake()
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="imgscribe-keep-alive", daemon=True)
                self._reaper.start()
        return time.perf_counter_ns() - start

    def _start(self, entry: _Model, keep_alive: float | None) -> None:
        entry.active += 1
        entry.expires = None
        entry.keep_alive = self._keep_alive(keep_alive)
        entry.last_used = time.monotonic()

    def _forget_if_dead(self, name: str, evicted: list[_Model]) -> _Model | None:
        """The entry of ``name``, unless its runner has died (a killed llama-server): then it is
        forgotten (closed now when idle, else by the last request's release) and None is returned,
        so that the model loads afresh. Callers hold the lock."""
        entry = self._models.get(name)
        if entry is None or not _dead(entry):
            return entry
        log.info("model '%s': its runner has stopped; the next request loads the model again", name)
        del self._models[name]
        if entry.idle:
            evicted.append(entry)
        return None

    def _release(self, entry: _Model) -> None:
        with self._lock:
            entry.active -= 1
            entry.last_used = time.monotonic()
            if self._models.get(entry.name) is entry:
                self._forget_if_dead(entry.name, [])  # closed below, once idle
            current = self._models.get(entry.name) is entry
            # a dead runner forgotten while requests still held it is closed by the last of them
            unload = entry.idle and ((current and entry.keep_alive <= 0) or (not current and _dead(entry)))
            if unload:
                if current:
                    del self._models[entry.name]
            elif entry.idle:
                self._set_expiry(entry)
            self._wake()
        if unload:
            _close(entry)

    def _make_room(self, need: int, budget: int, evicted: list[_Model]) -> bool:
        """Make room for a model of ``need`` bytes by unloading idle models, least recently used
        first; unload nothing and return False when even that would not be enough."""
        models = dict(self._models)
        # Spare models that requests are waiting for, when there is a choice.
        candidates = sorted((m for m in models.values() if m.idle), key=lambda m: (m.name in self._queues, m.last_used))
        victims: list[_Model] = []
        while 0 < self.max_loaded <= len(models) or (models and sum(m.memory for m in models.values()) + need > budget):
            if not candidates:
                return False
            victim = candidates.pop(0)
            del models[victim.name]
            victims.append(victim)
        for victim in victims:
            del self._models[victim.name]
        evicted.extend(victims)
        return True

    def _wake(self) -> None:
        """Let the first request waiting for each model look again (callers hold the lock)."""
        for queue in self._queues.values():
            queue[0].notify()

    def _keep_alive(self, value: float | None) -> float:
        """Seconds to keep a model; past :data:`FOREVER` (or NaN from a caller) it is forever:
        a wait that long overflows the clock (``threading``'s ``TIMEOUT_MAX``)."""
        value = self.keep_alive if value is None or math.isnan(value) else value
        return math.inf if value >= FOREVER else value

    # -- keep-alive ------------------------------------------------------------------------------

    def _set_expiry(self, entry: _Model) -> None:
        entry.expires = None if math.isinf(entry.keep_alive) else time.monotonic() + entry.keep_alive
        if entry.expires is not None and entry.expires < self._reaper_until:  # else it looks in time anyway
            self._reaper_wake.notify()

    def _reap(self) -> None:
        """Unload idle models whose keep-alive has run out."""
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                idle = [m for m in self._models.values() if m.idle and m.expires is not None]
                expired = [m for m in idle if m.expires <= now]
                for m in expired:
                    del self._models[m.name]
                if not expired:
                    wait = min([m.expires - now for m in idle], default=None)
                    self._reaper_until = math.inf if wait is None else now + min(wait, FOREVER)
                    self._reaper_wake.wait(None if wait is None else min(wait, FOREVER))
                    self._reaper_until = math.inf  # awake: it looks at every model before waiting again
                    continue
                self._wake()
            for m in expired:
                _close(m)


def _dead(entry: _Model) -> bool:
    """Its runner says it can answer no more (``Runner.alive``, which engines may leave out)."""
    return entry.runner is not None and not getattr(entry.runner, "alive", True)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler used by the Python API and the in-process CLI.

    It follows ``IMGSCRIBE_MODELS``: when the store directory changes (a test, or a program that
    switches stores), the old scheduler's models are unloaded and a new one serves the new store.
    """
    global _default
    with _default_lock:
        cfg = process_settings()
        root = cfg.models_dir
        if _default is not None and _default.store.root != root:
            _default.close()
            _default = None
        if _default is None:
            _default = Scheduler(config=cfg)
        return _default
