"""Many clients at once against a real server: parallel slots, queue overflow, disconnects."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from imgscribe.scheduler import Scheduler

from .conftest import add_echo, live_server, wait_for

pytestmark = pytest.mark.timeout(60)


def ask(url: str, model: str, prompt: str = "hi", **extra) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False, **extra}
    return httpx.post(url + "/api/generate", json=body, timeout=30)


def test_many_parallel_requests_share_the_slots(store):
    add_echo(store, "wide", parallel=4, delay=0.01, tokens=5)
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as server, ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda i: ask(server.url, "wide", f"request {i}"), range(64)))
        runner = scheduler.runner("wide")
    scheduler.close()
    assert [r.status_code for r in replies] == [200] * 64
    assert all(r.json()["eval_count"] == 5 for r in replies)
    assert 1 < runner.max_active <= 4, "parallel, within the engine's slots"


def test_num_parallel_caps_the_engine(store):
    add_echo(store, "wide", parallel=8, delay=0.01, tokens=5)
    scheduler = Scheduler(store, num_parallel=2)
    with live_server(scheduler) as server, ThreadPoolExecutor(8) as pool:
        assert {r.status_code for r in pool.map(lambda i: ask(server.url, "wide"), range(16))} == {200}
        assert scheduler.runner("wide").max_active == 2
    scheduler.close()


def test_queue_overflow_is_503_with_retry_after(store):
    add_echo(store, "narrow", parallel=1, delay=0.05, tokens=20)  # about 1 s an answer
    scheduler = Scheduler(store, max_queue=2)
    with live_server(scheduler) as server, ThreadPoolExecutor(6) as pool:
        scheduler.load("narrow")
        first = pool.submit(ask, server.url, "narrow")
        assert wait_for(lambda: scheduler.running() == 1)
        queued = [pool.submit(ask, server.url, "narrow") for _ in range(2)]
        assert wait_for(lambda: scheduler.queue_depth() == 2)
        refused = ask(server.url, "narrow")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1" and "server busy" in refused.json()["error"]
        assert "IMGSCRIBE_MAX_QUEUE" in refused.json()["error"]
        assert [f.result().status_code for f in [first, *queued]] == [200, 200, 200]
    scheduler.close()


def test_client_disconnect_mid_stream_stops_the_runner(server):
    runner = server.scheduler.runner("echo-slow")  # 200 tokens, 50 ms each
    body = {"model": "echo-slow", "messages": [{"role": "user", "content": "go"}]}
    with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/api/chat", json=body) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    assert wait_for(lambda: runner.cancelled == 1), "the runner saw the cancel"
    assert runner.generated < 20
    assert wait_for(lambda: server.scheduler.running() == 0), "the slot is free again"


def test_client_disconnect_on_a_non_streamed_request_stops_the_runner(server):
    runner = server.scheduler.runner("echo-slow")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/api/generate", json={"model": "echo-slow", "prompt": "x", "stream": False}, timeout=0.5
        )
    assert wait_for(lambda: runner.cancelled == 1)
    assert runner.generated < 40


def test_client_disconnect_while_queued_leaves_the_queue(store):
    add_echo(store, "narrow", parallel=1, delay=0.05, tokens=20)
    scheduler = Scheduler(store)
    with live_server(scheduler) as server, ThreadPoolExecutor(2) as pool:
        busy = pool.submit(ask, server.url, "narrow")
        assert wait_for(lambda: scheduler.running() == 1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/api/generate", json={"model": "narrow", "prompt": "x"}, timeout=0.3)
        assert wait_for(lambda: scheduler.queue_depth() == 0, timeout=2), "the waiting request left"
        assert busy.result().status_code == 200
        assert scheduler.runner("narrow").generated == 20, "the abandoned request never ran"
    scheduler.close()
