"""A real server on a free loopback port, serving echo models from a store of the test's own.

The echo engine answers instantly and tells what it received, e.g. ``echo: describe this | 1
image(s): 64x48 sha256:...``; its settings (delay, tokens, parallel, ...) are the manifest's
engine settings.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from PIL import Image as PILImage

from imgscribe.config import settings as current_settings
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.server.protocol import uvicorn_config
from imgscribe.store import Store
from imgscribe.types import MODEL_PARAMETERS, ModelInfo, ModelManifest

VISION = ["completion", "vision"]


def add_echo(store: Store, name: str, capabilities: list[str] = VISION, size: int = 0, **settings) -> ModelInfo:
    """An echo model; ``settings``: the echo engine's (tokens, delay, parallel...) and default options."""
    info = ModelInfo(name=name, engine="echo", family="echo", capabilities=list(capabilities),
                     parameter_size="0B", context_length=4096, size=size, summary="diagnostic echo")  # fmt: skip
    options = {k: v for k, v in settings.items() if k in MODEL_PARAMETERS}
    engine_settings = {k: v for k, v in settings.items() if k not in MODEL_PARAMETERS}
    return store.create(name, ModelManifest(name=name, engine="echo", info=info, parameters=options,
                                            engine_settings=engine_settings))  # fmt: skip


def image_bytes(size: tuple[int, int] = (64, 48), color: str = "red", format: str = "PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format=format)
    return buf.getvalue()


def noise_bytes(size: tuple[int, int] = (300, 300)) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    buf = io.BytesIO()
    PILImage.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buf, format="PNG")
    return buf.getvalue()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds (looked at every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "models")
    add_echo(store, "llava")  # the survey's model name
    add_echo(store, "echo-test")
    add_echo(store, "echo-text", capabilities=["completion"])
    add_echo(store, "echo-slow", delay=0.05, tokens=200)
    return store


@pytest.fixture
def scheduler(store: Store) -> Iterator[Scheduler]:
    scheduler = Scheduler(store, num_parallel=0)
    yield scheduler
    scheduler.close()


@dataclass
class LiveServer:
    url: str
    port: int
    scheduler: Scheduler
    uvicorn: uvicorn.Server

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def live_server(scheduler: Scheduler) -> Iterator[LiveServer]:
    """A real uvicorn in a thread; stopped (and waited for) on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(create_app(scheduler), current_settings(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port, scheduler, server)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def server(scheduler: Scheduler) -> Iterator[LiveServer]:
    with live_server(scheduler) as live:
        yield live


@pytest.fixture
def art(tmp_path: Path) -> Path:
    """The survey's ./art.jpg."""
    path = tmp_path / "art.jpg"
    path.write_bytes(image_bytes((96, 64), "blue", "JPEG"))
    return path
