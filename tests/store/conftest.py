"""Fixtures for the store's tests: fake remotes on loopback, and downloads tuned to tiny files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imgscribe.store import Store
from imgscribe.store.pull import download

from .fake_remotes import FakeHub, FakeRegistry


@pytest.fixture(autouse=True)
def _small_downloads(monkeypatch):
    """Ranges of 64 KiB so that tiny blobs still download in parallel parts; quick retries."""
    monkeypatch.setattr(download, "MIN_PART_SIZE", 64 * 1024)
    monkeypatch.setattr(download, "CHUNK", 16 * 1024)
    monkeypatch.setattr(download, "BACKOFF", 0.01)
    monkeypatch.setattr(download, "POLL", 0.02)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    remote = FakeRegistry()
    yield remote
    remote.close()


@pytest.fixture
def hub(monkeypatch) -> Iterator[FakeHub]:
    remote = FakeHub()
    monkeypatch.setenv("IMGSCRIBE_HF_ENDPOINT", remote.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("IMGSCRIBE_HF_TOKEN", raising=False)
    yield remote
    remote.close()
