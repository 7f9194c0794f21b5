"""Shared pieces of the reliability tests: the corpus on disk, an echo store and server, the routes
that take images, and counting what each test tried (``record_property``: the report reads the
junit XML, see report.py)."""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from server.conftest import (  # tests/ is on sys.path (pytest's rootdir)
    LiveServer,
    add_echo,
    live_server,
)

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from . import corpus

PROMPT = "describe this"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle_fds(before: int, timeout: float = 5.0) -> int:
    """Open descriptors once they fall back to ``before`` (sockets close a moment late), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while open_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_fds()


@pytest.fixture(scope="session")
def cases() -> list[corpus.Case]:
    return corpus.synthetic()


@pytest.fixture(scope="session")
def pillow_cases() -> list[corpus.Case]:
    found = corpus.pillow_images()
    if not found:
        pytest.skip(f"Pillow's sdist is not in {corpus.PILLOW_SDIST} (python -m tests.reliability.report --fetch-pillow)")
    return found


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory, cases) -> dict[str, Path]:
    return corpus.write(tmp_path_factory.mktemp("corpus"), cases)


@pytest.fixture(scope="module")
def echo_store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("reliability") / "models")
    add_echo(store, "llava")
    return store


@pytest.fixture(scope="module")
def echo_scheduler(echo_store) -> Iterator[Scheduler]:
    scheduler = Scheduler(echo_store, num_parallel=0)
    yield scheduler
    scheduler.close()


@pytest.fixture(scope="module")
def live(echo_scheduler) -> Iterator[LiveServer]:
    with live_server(echo_scheduler) as server:
        yield server


@contextmanager
def serve_process(store_dir: Path, env: dict[str, str], log: Path, ready: str = "/api/version",
                  **settings: str) -> Iterator[tuple[str, int]]:  # fmt: skip
    """``imgscribe serve`` in a child process on a free loopback port, ``settings`` as its
    ``IMGSCRIBE_*`` variables, its output to ``log`` (a pipe nobody reads would fill and stop it),
    ready once ``ready`` answers 200 (``/health`` is open without an API key): (its URL, its pid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child_env = {**env, "IMGSCRIBE_HOST": f"127.0.0.1:{port}", "IMGSCRIBE_MODELS": str(store_dir),
                 **{f"IMGSCRIBE_{k.upper()}": v for k, v in settings.items()}}  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "imgscribe", "serve"], env=child_env, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _answers(url + ready):
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# -- requests that carry one image, per route ---------------------------------------------------------


def _uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


IMAGE_ROUTES = {
    "/api/generate": lambda d: {"model": "llava", "prompt": PROMPT, "images": [_b64(d)], "stream": False},
    "/api/chat": lambda d: {"model": "llava", "stream": False,
                            "messages": [{"role": "user", "content": PROMPT, "images": [_b64(d)]}]},
    "/v1/chat/completions": lambda d: {"model": "llava", "messages": [{"role": "user", "content": [
        {"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": _uri(d)}}]}]},
    "/v1/responses": lambda d: {"model": "llava", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": PROMPT}, {"type": "input_image", "image_url": _uri(d)}]}]},
    "/v1/messages": lambda d: {"model": "llava", "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _b64(d)}},
        {"type": "text", "text": PROMPT}]}]},
}  # fmt: skip
NORMAL = {"model": "llava", "prompt": "hi", "stream": False}


@functools.cache
def app_paths() -> frozenset[str]:
    """The paths in the app's OpenAPI schema (routes are being added as these tests are written)."""
    from imgscribe.server import create_app

    scheduler = Scheduler(Store(Path("/nonexistent-imgscribe-store")), num_parallel=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FastAPI's duplicate operation ids (GET and HEAD)
            return frozenset(create_app(scheduler).openapi()["paths"])
    finally:
        scheduler.close()


def available_routes() -> list[str]:
    """The image routes this build of the app has."""
    return [p for p in IMAGE_ROUTES if p in app_paths()]


def error_message(path: str, response: httpx.Response) -> str:
    """The error's message in the route's dialect; fails on any other shape."""
    body = response.json()
    if path == "/v1/messages":
        assert body["type"] == "error", body
        return body["error"]["message"]
    if path.startswith("/v1"):
        return body["error"]["message"]
    assert list(body) == ["error"], body
    return body["error"]


def answer_text(path: str, response: httpx.Response) -> str:
    body = response.json()
    if path == "/api/generate":
        return body["response"]
    if path == "/api/chat":
        return body["message"]["content"]
    if path == "/v1/chat/completions":
        return body["choices"][0]["message"]["content"]
    if path == "/v1/responses":
        return "".join(c.get("text", "") for o in body["output"] for c in o.get("content", []))
    return "".join(b.get("text", "") for b in body["content"])


class Tally:
    """Outcomes counted by kind, stored as a test property for the report."""

    def __init__(self, record_property, name: str = "outcomes"):
        self.counts: Counter[str] = Counter()
        self._record, self._name = record_property, name

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def save(self, **extra) -> None:
        self._record(self._name, json.dumps({"counts": dict(self.counts), **extra}, sort_keys=True))


@pytest.fixture
def tally(record_property) -> Iterator[Tally]:
    t = Tally(record_property)
    yield t
    t.save()
