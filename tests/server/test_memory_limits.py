"""Memory from a tiny body (security finding 6), against a real server.

A 7000x7000 WebP compresses to a few dozen bytes and costs ~800 MB to decode; 50,000 1x1 PNGs fit in
a few MB. The request's image count and total pixels are checked from the headers before anything
is decoded, decoding waits for room in a machine-wide pixel budget (503 when too many wait, a
waiting request whose client leaves is taken out), and a large JPEG is decoded at a reduced size
for a model that looks at less.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image as PILImage

from imgscribe import images as images_module
from imgscribe.errors import Busy, Cancelled
from imgscribe.images import header
from imgscribe.scheduler import Scheduler
from imgscribe.server import inputs
from imgscribe.server.budget import PixelBudget
from imgscribe.types import ModelInfo, ModelManifest

from .conftest import add_echo, b64, image_bytes, live_server
from .conftest import wait_for as wait_until

pytestmark = pytest.mark.timeout(60)


@functools.cache
def big_webp() -> bytes:
    """7000x7000 of one colour: 49 MP, under the 50 MP image limit, a few dozen bytes as WebP."""
    buf = io.BytesIO()
    PILImage.new("RGB", (7000, 7000), (200, 30, 30)).save(buf, "WEBP", lossless=True, method=0)
    return buf.getvalue()


def budget_of(server):
    return server.uvicorn.config.app.state.server.reader.budget


def wait_for(predicate, timeout: float = 10.0) -> bool:  # decoding takes longer than echoing
    return wait_until(predicate, timeout)


def generate(url: str, model: str, images: list[str], timeout: float = 30) -> httpx.Response:
    body = {"model": model, "prompt": "describe this", "images": images, "stream": False}
    return httpx.post(url + "/api/generate", json=body, timeout=timeout)


def post(url: str, route: str, model: str, images: list[str]) -> httpx.Response:
    if route == "generate":
        return generate(url, model, images)
    if route == "chat":
        body = {"model": model, "stream": False, "messages": [{"role": "user", "content": "hi", "images": images}]}
        return httpx.post(url + "/api/chat", json=body, timeout=30)
    parts = [{"type": "text", "text": "hi"}] + [
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64," + i}} for i in images
    ]
    body = {"model": model, "messages": [{"role": "user", "content": parts}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30)


def error_text(response: httpx.Response) -> str:
    body = response.json()
    return body["error"]["message"] if isinstance(body["error"], dict) else body["error"]


@pytest.mark.parametrize("route", ["generate", "chat", "openai"])
def test_ten_7000px_webps_are_refused_by_the_request_pixel_limit_before_decoding(scheduler, route):
    data = big_webp()
    assert len(data) < 2000 and header(data).pixels == 49_000_000
    with live_server(scheduler) as server:  # the default limits
        started = time.perf_counter()
        response = post(server.url, route, "llava", [b64(data)] * 10)
        took = time.perf_counter() - started
        budget = budget_of(server)
    assert response.status_code == 413, response.text
    message = error_text(response)
    assert "IMGSCRIBE_MAX_REQUEST_PIXELS" in message and "100,000,000" in message
    assert budget.granted == 0 and budget.peak == 0  # nothing was decoded
    assert took < 10  # headers only: decoding 490 MP would take far longer (and 8 GB)


def test_three_concurrent_requests_of_five_7000px_webps_are_all_refused(scheduler):
    images = [b64(big_webp())] * 5  # 245 MP each: the finding's 9.9 GB peak
    with live_server(scheduler) as server, ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: generate(server.url, "llava", images), range(3)))
        budget = budget_of(server)
    assert [r.status_code for r in replies] == [413] * 3
    assert all("IMGSCRIBE_MAX_REQUEST_PIXELS" in error_text(r) for r in replies)
    assert budget.granted == 0


def test_50000_tiny_pngs_are_refused_by_the_count_before_reading_any(scheduler, monkeypatch):
    read = []
    monkeypatch.setattr(inputs, "header", lambda *a, **k: read.append(1) or header(*a, **k))
    one = b64(image_bytes((1, 1)))
    with live_server(scheduler) as server:
        response = generate(server.url, "llava", [one] * 50_000, timeout=60)
        budget = budget_of(server)
    assert response.status_code == 413, response.text
    assert "50,000 images" in error_text(response) and "IMGSCRIBE_MAX_REQUEST_IMAGES" in error_text(response)
    assert read == [] and budget.granted == 0


def test_the_image_count_and_the_pixel_total_take_their_settings(scheduler, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_MAX_REQUEST_IMAGES", "3")
    monkeypatch.setenv("IMGSCRIBE_MAX_REQUEST_PIXELS", "30000")
    small = b64(image_bytes((100, 100)))  # 10,000 pixels
    with live_server(scheduler) as server:
        ok = generate(server.url, "llava", [small] * 3)
        too_many = generate(server.url, "llava", [small] * 4)
        body = {"model": "llava", "stream": False, "messages": [
            {"role": "user", "content": "a", "images": [small, small]},
            {"role": "user", "content": "b", "images": [b64(image_bytes((101, 100)))]},
        ]}  # fmt: skip
        too_big = httpx.post(server.url + "/api/chat", json=body, timeout=30)
    assert ok.status_code == 200, ok.text
    assert too_many.status_code == 413 and "over the limit of 3 images" in error_text(too_many)
    assert too_big.status_code == 413 and "IMGSCRIBE_MAX_REQUEST_PIXELS" in error_text(too_big)
    assert "messages[1].images[0]" in error_text(too_big)  # where the total passed the limit


def test_concurrent_requests_queue_for_the_decode_budget_and_all_succeed(store, monkeypatch):
    png = image_bytes((100, 100))
    need = header(png).cost
    monkeypatch.setenv("IMGSCRIBE_DECODE_PIXELS", str(2 * need))  # room for two requests at a time
    add_echo(store, "slowish", parallel=16, delay=0.02, tokens=5)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(12) as pool:
            budget = budget_of(server)
            replies = list(pool.map(lambda i: generate(server.url, "slowish", [b64(png)]), range(12)))
            assert wait_for(lambda: budget.held == 0)  # all given back once the answers finished
    finally:
        scheduler.close()
    assert [r.status_code for r in replies] == [200] * 12
    assert budget.granted == 12 and budget.waited > 0  # they queued...
    assert need <= budget.peak <= budget.limit == 2 * need  # ...and never held more than the budget


def test_past_the_waiting_bound_a_request_gets_503_and_the_waiters_run_later(store, monkeypatch):
    png = image_bytes((100, 100))
    monkeypatch.setenv("IMGSCRIBE_DECODE_PIXELS", str(header(png).cost))  # one request at a time
    monkeypatch.setenv("IMGSCRIBE_MAX_QUEUE", "2")  # two may wait
    add_echo(store, "holder", parallel=16, delay=0.05, tokens=20)  # holds its images for ~1 s
    scheduler = Scheduler(store, num_parallel=0, max_queue=64)
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(4) as pool:
            budget = budget_of(server)
            first = pool.submit(generate, server.url, "holder", [b64(png)])
            assert wait_for(lambda: budget.held > 0)
            waiting = [pool.submit(generate, server.url, "holder", [b64(png)]) for _ in range(2)]
            assert wait_for(lambda: budget.waiting == 2)
            refused = generate(server.url, "holder", [b64(png)])
            assert refused.status_code == 503, refused.text
            assert "IMGSCRIBE_DECODE_PIXELS" in error_text(refused) and "IMGSCRIBE_MAX_QUEUE=2" in error_text(refused)
            assert first.result().status_code == 200
            assert [w.result().status_code for w in waiting] == [200, 200]
    finally:
        scheduler.close()
    assert budget.refused == 1 and budget.granted == 3 and budget.held == 0


def test_a_waiting_request_whose_client_leaves_is_taken_out_of_the_queue(store, monkeypatch):
    png = image_bytes((100, 100))
    monkeypatch.setenv("IMGSCRIBE_DECODE_PIXELS", str(header(png).cost))
    add_echo(store, "holder", parallel=16, delay=0.05, tokens=40)  # ~2 s
    scheduler = Scheduler(store, num_parallel=0)
    decoded = []
    real_intake = inputs.intake
    monkeypatch.setattr(inputs, "intake", lambda *a, **k: decoded.append(1) or real_intake(*a, **k))
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(2) as pool:
            budget = budget_of(server)
            first = pool.submit(generate, server.url, "holder", [b64(png)])
            assert wait_for(lambda: budget.held > 0)
            with pytest.raises(httpx.ReadTimeout):  # the client gives up while the request waits
                generate(server.url, "holder", [b64(png)], timeout=0.5)
            assert wait_for(lambda: budget.cancelled == 1, timeout=5)
            assert budget.waiting == 0 and budget.held > 0  # the first still holds its room
            assert first.result().status_code == 200
            assert wait_for(lambda: budget.held == 0)
    finally:
        scheduler.close()
    assert budget.granted == 1 and len(decoded) == 1  # the one that left never decoded


def test_the_room_is_given_back_when_the_answer_fails_or_is_streamed(store, monkeypatch):
    png = image_bytes((64, 64))
    monkeypatch.setenv("IMGSCRIBE_DECODE_PIXELS", str(header(png).cost))
    add_echo(store, "broken", fail_after=2, tokens=10)
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as server:
        budget = budget_of(server)
        for model in ("broken", "llava"):
            for stream in (True, False):
                body = {"model": model, "prompt": "x", "images": [b64(png)], "stream": stream}
                httpx.post(server.url + "/api/generate", json=body, timeout=30)
                assert wait_for(lambda: budget.held == 0)
        bad = generate(server.url, "llava", [b64(png), b64(b"not an image at all")])
        assert bad.status_code == 400 and "images[1]" in error_text(bad)
        assert budget.held == 0 and budget.granted == 4
    scheduler.close()


def jpeg_model(store, name: str, side: int) -> None:
    info = ModelInfo(name=name, engine="echo", family="echo", capabilities=["completion", "vision"],
                     max_image_side=side)  # fmt: skip
    store.create(name, ModelManifest(name=name, engine="echo", info=info))


def test_a_large_jpeg_is_decoded_at_reduced_size_for_a_model_that_looks_at_less(store):
    buf = io.BytesIO()
    PILImage.new("RGB", (4000, 3000), "navy").save(buf, "JPEG", quality=80)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    jpeg_model(store, "small-eyes", 1000)
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as server:
        reduced = generate(server.url, "small-eyes", [b64(data)])
        full = generate(server.url, "llava", [b64(data)])  # no hint: full size
        budget = budget_of(server)
    scheduler.close()
    assert reduced.json()["response"].endswith(f"1 image(s): 1000x750 sha256:{sha[:12]}")
    assert full.json()["response"].endswith(f"1 image(s): 4000x3000 sha256:{sha[:12]}")
    assert budget.peak == header(data).cost  # the larger of the two requests


# The budget on its own.


def test_the_budget_is_first_come_first_served_and_a_too_large_request_runs_alone():
    budget = PixelBudget(100, max_waiting=10)
    a = budget.acquire(60)
    order = []

    def take(n, name):
        lease = budget.acquire(n)
        order.append(name)
        return lease

    with ThreadPoolExecutor(3) as pool:
        big = pool.submit(take, 500, "big")  # more than all of it: waits for all of it
        assert wait_for(lambda: budget.waiting == 1)
        small = pool.submit(take, 10, "small")  # would fit now, but waits its turn
        assert wait_for(lambda: budget.waiting == 2)
        time.sleep(0.05)
        assert order == []
        a.release()
        lease = big.result(5)
        assert budget.held == 100 and order == ["big"]
        lease.shrink(30)  # what the decoded images still hold
        small.result(5).release()
    assert order == ["big", "small"] and budget.peak == 100
    lease.release()
    lease.release()  # once only
    assert budget.held == 0


def test_the_budget_refuses_past_its_waiters_and_lets_the_cancelled_go():
    budget = PixelBudget(10, max_waiting=1)
    held = budget.acquire(10)
    cancel = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(budget.acquire, 5, cancel)
        assert wait_for(lambda: budget.waiting == 1)
        with pytest.raises(Busy, match="IMGSCRIBE_MAX_QUEUE=1"):
            budget.acquire(1)
        cancel.set()
        with pytest.raises(Cancelled):
            waiter.result(5)
    assert budget.waiting == 0 and budget.cancelled == 1 and budget.refused == 1
    held.release()
    assert budget.acquire(10).pixels == 10


def test_a_lost_lease_is_given_back_when_it_is_collected():
    budget = PixelBudget(10, max_waiting=0)
    budget.acquire(10)  # dropped at once
    assert budget.held == 0
    unlimited = PixelBudget(0, max_waiting=0)
    leases = [unlimited.acquire(10**9) for _ in range(3)]
    assert unlimited.peak == 3 * 10**9 and len(leases) == 3


def test_header_costs_cover_a_webp_decoders_copies():
    head = header(big_webp())
    assert head.format == "WEBP" and head.size == (7000, 7000)
    assert head.cost >= 4 * head.pixels  # canvas, frame bytes, frame (measured 4.06x the frame)
    assert images_module.header(big_webp(), max_side=1000).held == 1750 * 1750  # 1/4: 1/8 would be under 1000
