"""Load on a real server (loopback, an echo model): hundreds of concurrent clients against a small
queue, a client that reads a stream at one byte a second, and many idle half-open connections.
Every loop is bounded in count and time; the figures go into docs/reliability.md."""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import json
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server.conftest import add_echo, live_server, wait_for

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from .conftest import serve_process

pytestmark = pytest.mark.timeout(120)

CLIENTS = 200
BURSTS = 5
QUEUE = 8
TOKENS = 10


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else 0.0


async def one_client(client: httpx.AsyncClient, i: int, stream: bool) -> tuple[str, float]:
    """("answer" | "503" | what went wrong, seconds)."""
    body = {"model": "load", "prompt": f"client {i}", "stream": stream}
    started = time.monotonic()
    try:
        if not stream:
            response = await client.post("/api/generate", json=body)
            return _judge(response.status_code, response.headers, [response.text]), time.monotonic() - started
        async with client.stream("POST", "/api/generate", json=body) as response:
            lines = [line async for line in response.aiter_lines()]
            return _judge(response.status_code, response.headers, lines), time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - counted as a failure
        return f"{type(exc).__name__}", time.monotonic() - started


def _judge(status: int, headers, lines: list[str]) -> str:
    if status == 503:
        ok = headers.get("retry-after") == "1" and "server busy" in json.loads(lines[0])["error"]
        return "503" if ok else "503 without Retry-After or its message"
    if status != 200:
        return f"status {status}"
    objects = [json.loads(line) for line in lines if line.strip()]
    if not objects[-1].get("done") or objects[-1].get("eval_count") != TOKENS or any("error" in o for o in objects):
        return "incomplete answer"
    return "answer"


async def burst(url: str) -> list[tuple[str, float]]:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        tasks = [one_client(client, i, stream=i % 2 == 1) for i in range(CLIENTS)]
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)


def test_hundreds_of_clients_against_a_small_queue(tmp_path, cli_env, record_property):
    """200 concurrent clients (half streaming) at once against ``imgscribe serve`` (its own process)
    with IMGSCRIBE_MAX_QUEUE=8 and an echo model of 4 slots and ~0.1 s answers: each gets its full
    answer (every token, done) or 503 with Retry-After: 1; nothing else; the server's RSS before
    and after 5 such bursts; p50/p99 latency of the answered; then a normal request is answered."""
    store = Store(tmp_path / "models")
    add_echo(store, "load", parallel=4, delay=0.01, tokens=TOKENS)
    with serve_process(store.root, cli_env, tmp_path / "serve.log", max_queue=str(QUEUE), num_parallel="0") as (url, pid):
        asyncio.run(burst(url))  # warm: the model loaded, threads started
        before = rss_mb(pid)
        started = time.monotonic()
        results = []
        for _ in range(BURSTS):
            results += asyncio.run(burst(url))
        wall = time.monotonic() - started
        after = rss_mb(pid)
        again = httpx.post(url + "/api/generate", json={"model": "load", "prompt": "hi", "stream": False}, timeout=30)
    counts: dict[str, int] = {}
    for outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    answered = [s for o, s in results if o == "answer"]
    record_property("outcomes", json.dumps({
        "counts": counts, "clients": CLIENTS, "bursts": BURSTS, "queue": QUEUE, "wall_s": round(wall, 2),
        "p50_ms": round(1000 * statistics.median(answered)) if answered else None,
        "p99_ms": round(1000 * percentile(answered, 99)) if answered else None,
        "server_rss_before_mb": round(before), "server_rss_after_mb": round(after),
    }))  # fmt: skip
    assert set(counts) <= {"answer", "503"}, counts
    assert counts.get("answer", 0) >= BURSTS * (4 + QUEUE) and counts.get("503", 0) > 0, counts
    assert again.status_code == 200
    assert after - before < 100, f"the server's RSS grew {after - before:.0f} MB"


def slow_reader(port: int, seconds: float) -> int:
    """A streamed request read one byte a second for ``seconds`` (a 4 KB receive buffer); bytes read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"model": "long", "prompt": "slow", "stream": True}).encode()
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    read = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(5)
    while time.monotonic() < deadline:
        read += len(sock.recv(1))
        time.sleep(1)
    sock.close()
    return read


def test_a_slow_reader_holds_only_its_own_slot(tmp_path, record_property):
    """A client reads a long stream (20,000 tokens, a 4 KB receive buffer) at one byte a second for
    4 s on a 2-slot model; meanwhile 40 other requests to the same model are all answered; it holds
    at most its own slot (recorded: whether it still holds it once the others are done); after it
    hangs up no slot is held within 10 s."""
    store = Store(tmp_path / "models")
    add_echo(store, "long", parallel=2, tokens=20_000)
    add_echo(store, "quick", parallel=2, tokens=5)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(4) as pool:
            scheduler.load("long")
            slow = pool.submit(slow_reader, server.port, 4)
            assert wait_for(lambda: scheduler.running() >= 1, 5)
            started = time.monotonic()
            others = list(pool.map(lambda i: httpx.post(server.url + "/api/generate", timeout=30, json={
                "model": "long", "prompt": f"other {i}", "stream": False, "options": {"num_predict": 5}}),
                range(40)))  # fmt: skip
            others_s = time.monotonic() - started
            held = scheduler.running()  # the others are done: at most the slow reader's request is left
            read = slow.result(timeout=30)
            freed = wait_for(lambda: scheduler.running() == 0, 10)
    finally:
        scheduler.close()
    statuses = [r.status_code for r in others]
    record_property("outcomes", json.dumps({"counts": {"other requests answered": statuses.count(200)},
                                            "slow_reader_bytes": read, "others_s": round(others_s, 2),
                                            "slots_held_by_the_slow_reader": held}))  # fmt: skip
    assert statuses == [200] * 40
    assert held <= 1, "the slow reader holds more than its own slot"
    assert freed, "the slow reader's slot was not given back after it hung up"


def test_a_slow_readers_answer_waits_in_the_engine_not_in_memory(tmp_path, record_property):
    """A 200,000-token stream read at one byte a second: while the client reads nothing, the
    server holds at most MAX_BEHIND of its chunks (backpressure: the engine waits for the client),
    not the answer the engine would have written meanwhile; its slot is given back once it hangs up."""
    from imgscribe.server.jobs import MAX_BEHIND, Job

    store = Store(tmp_path / "models")
    add_echo(store, "long", parallel=1, tokens=200_000)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(1) as pool:
            scheduler.load("long")
            slow = pool.submit(slow_reader, server.port, 4)
            assert wait_for(lambda: scheduler.running() >= 1, 5)
            time.sleep(2)  # unbounded, the echo engine writes tens of thousands of chunks in this time
            jobs = [o for o in gc.get_objects() if isinstance(o, Job)]
            behind = max((job.behind for job in jobs), default=0)
            still_generating = scheduler.running()
            read = slow.result(timeout=30)
            freed = wait_for(lambda: scheduler.running() == 0, 10)
    finally:
        scheduler.close()
    record_property("outcomes", json.dumps({"counts": {"chunks held for the slow reader": behind},
                                            "max_behind": MAX_BEHIND, "slow_reader_bytes": read}))  # fmt: skip
    assert jobs, "no job found for the slow reader's request"
    assert behind <= MAX_BEHIND, f"{behind} chunks wait for a client that reads nothing"
    assert still_generating == 1, "the engine did not wait for the slow reader"
    assert freed, "the slow reader's slot was not given back after it hung up"


def test_idle_connections_do_not_starve_others(live, record_property):
    """300 connections that send half a request line and wait (slowloris), then 30 normal requests:
    all answered within 10 s while the idle ones stay open."""
    idle = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
            sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            idle.append(sock)
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda i: httpx.post(live.url + "/api/generate", timeout=10, json={
                "model": "llava", "prompt": f"hi {i}", "stream": False}), range(30)))  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        for sock in idle:
            sock.close()
    record_property("outcomes", json.dumps({"counts": {"answered": sum(r.status_code == 200 for r in replies)},
                                            "idle_connections": len(idle), "seconds": round(elapsed, 2)}))  # fmt: skip
    assert [r.status_code for r in replies] == [200] * 30
    assert elapsed < 10


def sample_peak_rss(pid: int, work, seconds: float = 60) -> tuple[float, object]:
    """The child's highest RSS (sampled every 20 ms, at most ``seconds``) while ``work()`` runs in a thread."""
    peak = rss_mb(pid)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(work)
        deadline = time.monotonic() + seconds
        while not future.done() and time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            time.sleep(0.02)
        return peak, future.result(timeout=max(1, deadline - time.monotonic()))


def test_content_bombs_under_the_limit_decode_within_the_budget(tmp_path, cli_env, record_property):
    """A 49 MP PNG of zeros (48 KB, under the 50 MP limit, so accepted) sent by 8 clients at once to
    ``imgscribe serve``: all answered, and the server's peak RSS grows far less than 8 decodes would
    take at once (the decode budget, IMGSCRIBE_DECODE_PIXELS, lets them in one or two at a time)."""
    from .corpus import content_bomb_png

    bomb = content_bomb_png(7_000, 7_000)
    body = {"model": "llava", "prompt": "bomb", "stream": False, "images": [base64.b64encode(bomb).decode()]}
    store = Store(tmp_path / "models")
    add_echo(store, "llava")
    with serve_process(store.root, cli_env, tmp_path / "serve.log") as (url, pid):
        post = functools.partial(httpx.post, url + "/api/generate", timeout=60)
        assert post(json={"model": "llava", "prompt": "warm", "stream": False}).status_code == 200
        base = rss_mb(pid)
        one_peak, first = sample_peak_rss(pid, lambda: post(json=body))
        with ThreadPoolExecutor(8) as pool:
            eight_peak, replies = sample_peak_rss(pid, lambda: list(pool.map(lambda _: post(json=body), range(8))))
    statuses = [r.status_code for r in [first, *replies]]
    one, eight = one_peak - base, eight_peak - base
    record_property("outcomes", json.dumps({"counts": {"answered": statuses.count(200)},
                                            "rss_base_mb": round(base), "growth_one_mb": round(one),
                                            "growth_eight_at_once_mb": round(eight)}))  # fmt: skip
    assert statuses == [200] * 9, [r.text[:200] for r in [first, *replies]]
    assert eight < 3 * max(one, 50), f"8 at once grew the server by {eight:.0f} MB, one by {one:.0f} MB"
