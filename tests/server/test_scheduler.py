"""The scheduler on its own: loading, keep-alive, LRU and memory, slots, the queue, cancellation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgscribe.errors import Busy, Cancelled, EngineFailed, ModelNotFound, Unsupported
from imgscribe.scheduler import Scheduler
from imgscribe.types import ChatRequest, Message

from .conftest import add_echo
from .test_concurrency import wait_for

pytestmark = pytest.mark.timeout(30)


def request(model: str, text: str = "hello", **kw) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", text)], **kw)


def answer(scheduler: Scheduler, model: str, **kw) -> str:
    return "".join(c.text for c in scheduler.chat(request(model, **kw)))


def names(scheduler: Scheduler) -> list[str]:
    return sorted(r.info.name for r in scheduler.ps())


@pytest.fixture
def sched(store):
    scheduler = Scheduler(store, keep_alive=300, max_loaded=0, num_parallel=0, max_queue=8)
    yield scheduler
    scheduler.close()


def test_loads_on_first_use_once_and_reports_load_time(store, sched):
    add_echo(store, "slowload", load_delay=0.2)
    assert sched.loaded() == []
    with ThreadPoolExecutor(4) as pool:
        finals = list(pool.map(lambda _: list(sched.chat(request("slowload")))[-1], range(4)))
    assert names(sched) == ["slowload:latest"]
    loads = sorted(f.metrics.load_duration for f in finals)
    assert loads[:3] == [0, 0, 0] and loads[3] >= 200_000_000, "one load, reported by the request that waited for it"
    assert all(f.metrics.total_duration >= f.metrics.eval_duration for f in finals)


def test_errors_before_the_first_chunk(store, sched):
    with pytest.raises(ModelNotFound):
        sched.chat(request("missing"))
    add_echo(store, "broken", fail_load=True)
    with pytest.raises(EngineFailed, match="simulated load failure"):
        sched.chat(request("broken"))
    assert sched.ps() == [] and sched.running() == 0
    with pytest.raises(Unsupported, match="thinking"):
        sched.chat(request("echo-test", think=True))


def test_keep_alive_expires_and_zero_unloads_at_once(sched):
    answer(sched, "echo-test", keep_alive=0.2)
    runner = sched.runner("echo-test")
    assert names(sched) == ["echo-test:latest"]
    assert wait_for(lambda: sched.ps() == [], timeout=3) and runner.closed
    answer(sched, "echo-test", keep_alive=0)
    assert sched.ps() == []
    answer(sched, "echo-test", keep_alive=float("inf"))
    time.sleep(0.1)
    assert sched.ps()[0].expires_at is None


def test_a_shorter_keep_alive_wakes_the_reaper_a_longer_one_does_not(sched):
    """The reaper sleeps until the next model's expiry: a request that moves a model's expiry
    earlier wakes it (the model goes on time), one that moves it later does not (a wake-up per
    request cost the server about 5% of its time)."""
    answer(sched, "echo-test", keep_alive=60)
    assert wait_for(lambda: sched._reaper_until < float("inf"), timeout=3)  # asleep until the 60 s expiry
    until = sched._reaper_until
    answer(sched, "echo-test", keep_alive=120)  # later: the reaper sleeps on, and looks again at 60 s
    time.sleep(0.1)
    assert sched._reaper_until == until and names(sched) == ["echo-test:latest"]
    answer(sched, "echo-test", keep_alive=0.2)  # earlier: woken, it unloads the model on time
    assert wait_for(lambda: sched.ps() == [], timeout=3)


def test_least_recently_used_is_unloaded_past_max_loaded(store):
    scheduler = Scheduler(store, max_loaded=2)
    try:
        for model in ("llava", "echo-test", "llava", "echo-text"):
            answer(scheduler, model)
        assert names(scheduler) == ["echo-text:latest", "llava:latest"]
    finally:
        scheduler.close()


def test_memory_budget_unloads_idle_models(store):
    add_echo(store, "big-a", size=600, memory=600)
    add_echo(store, "big-b", size=600, memory=600)
    scheduler = Scheduler(store, max_loaded=0, memory_budget=1000)
    try:
        answer(scheduler, "big-a")
        answer(scheduler, "big-b")
        assert names(scheduler) == ["big-b:latest"]
    finally:
        scheduler.close()


def test_a_busy_model_is_not_unloaded_the_newcomer_waits(store):
    add_echo(store, "slow", parallel=1, delay=0.02, tokens=10)
    scheduler = Scheduler(store, max_loaded=1)
    try:
        stream = scheduler.chat(request("slow"))
        next(stream)
        done = []
        waiter = threading.Thread(target=lambda: done.append(answer(scheduler, "llava")))
        waiter.start()
        assert wait_for(lambda: scheduler.queue_depth() == 1)
        assert names(scheduler) == ["slow:latest"] and not done
        list(stream)  # the slow answer ends: its model can go
        waiter.join(5)
        assert done and names(scheduler) == ["llava:latest"]
    finally:
        scheduler.close()


def test_slots_and_fifo_order(store):
    add_echo(store, "one", parallel=4, delay=0.01, tokens=3)
    scheduler = Scheduler(store, num_parallel=1)
    order = []
    try:
        first = scheduler.chat(request("one", "0"))
        threads = []
        for i in range(1, 5):
            t = threading.Thread(target=lambda i=i: (list(scheduler.chat(request("one", str(i)))), order.append(i)))
            t.start()
            assert wait_for(lambda i=i: scheduler.queue_depth() == i)
            threads.append(t)
        list(first)
        for t in threads:
            t.join(5)
        assert order == [1, 2, 3, 4], "first come, first served"
        assert scheduler.runner("one").max_active == 1
    finally:
        scheduler.close()


def test_queue_full_raises_busy_and_cancel_leaves_the_queue(store):
    add_echo(store, "one", parallel=1)
    scheduler = Scheduler(store, max_queue=1)
    try:
        held = scheduler.chat(request("one"))  # holds the only slot until closed
        cancel = threading.Event()
        errors = []
        waiter = threading.Thread(target=lambda: _catch(errors, lambda: scheduler.chat(request("one"), cancel)))
        waiter.start()
        assert wait_for(lambda: scheduler.queue_depth() == 1)
        with pytest.raises(Busy, match="IMGSCRIBE_MAX_QUEUE=1"):
            scheduler.chat(request("one"))
        cancel.set()
        waiter.join(5)
        assert isinstance(errors[0], Cancelled) and scheduler.queue_depth() == 0
        held.close()
        assert scheduler.running() == 0
        assert answer(scheduler, "one")  # the slot came back
    finally:
        scheduler.close()


def test_cancel_stops_a_running_answer(store):
    add_echo(store, "slow", delay=0.02, tokens=500)
    scheduler = Scheduler(store)
    try:
        cancel = threading.Event()
        chunks = scheduler.chat(request("slow"), cancel)
        next(chunks)
        cancel.set()
        final = list(chunks)[-1]
        assert final.done_reason == "cancel" and scheduler.runner("slow").generated < 10
        assert scheduler.running() == 0
    finally:
        scheduler.close()


def test_a_dropped_answer_gives_its_slot_back(store):
    add_echo(store, "one", parallel=1)
    scheduler = Scheduler(store)
    try:
        scheduler.chat(request("one"))  # never iterated, never closed
        assert wait_for(lambda: scheduler.running() == 0)
        assert answer(scheduler, "one")
    finally:
        scheduler.close()


def test_engine_crash_mid_answer_is_engine_failed_and_frees_the_slot(store):
    add_echo(store, "crashy", fail_after=1)
    scheduler = Scheduler(store)
    try:
        with pytest.raises(EngineFailed, match="simulated failure"):
            list(scheduler.chat(request("crashy")))
        assert scheduler.running() == 0
    finally:
        scheduler.close()


def test_unload_and_close(sched):
    answer(sched, "llava")
    assert sched.unload("llava") is True and sched.ps() == []
    assert sched.unload("llava") is False
    runner = sched.runner("llava")
    sched.close()
    assert runner.closed and sched.loaded() == []


def test_ps_rows(sched):
    answer(sched, "llava", keep_alive=60)
    (row,) = sched.ps()
    assert row.info.name == "llava:latest" and row.memory == 1_000_000 and row.active == 0 and row.slots == 4
    assert 50 < (row.expires_at.timestamp() - time.time()) <= 60


def _catch(errors: list, fn) -> None:
    try:
        fn()
    except Exception as exc:
        errors.append(exc)


def test_default_scheduler_follows_the_store_setting(tmp_path, monkeypatch):
    from imgscribe.scheduler import default_scheduler

    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "a"))
    first = default_scheduler()
    assert default_scheduler() is first and first.store.root == tmp_path / "a"
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "b"))
    assert default_scheduler().store.root == tmp_path / "b"
