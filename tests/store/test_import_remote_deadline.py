"""``imgscribe create NAME --remote URL`` asks the remote once, within one total time limit: a
remote that trickles bytes (each read in time, the whole never done) cannot hold it."""

from __future__ import annotations

import time

import pytest

from imgscribe.errors import InvalidRequest
from imgscribe.store import import_remote
from imgscribe.testing.peers import peer, trickle

pytestmark = pytest.mark.timeout(60)


def trickling_remote():
    """On 127.0.0.1: reads a request, then sends a status line and a header a byte per 0.2 s."""
    return peer(trickle(b"HTTP/1.1 200 OK\r\n", 0.2))


@pytest.mark.parametrize("api", [None, "ollama"])  # detecting the dialect; asking /api/show
def test_a_trickling_remote_cannot_hold_the_check(monkeypatch, api):
    monkeypatch.setattr(import_remote, "_TIMEOUT", 1.0)
    with trickling_remote() as url:
        start = time.monotonic()
        with pytest.raises(InvalidRequest, match=url):
            import_remote.manifest_for_remote("far", url, "m", api=api)
        assert time.monotonic() - start < 1 + 3
