"""Freeing what no model uses any more.

A blob (or snapshot folder) is kept while any manifest lists it, or while a pull in this process is
still fetching it (pinned): ``rm`` of one model must not delete a blob that a concurrent pull of
another model has just fetched and not yet written its manifest for.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .blobs import BlobStore
from .manifests import ManifestFiles, StoredManifest

__all__ = ["collect", "in_use", "pinned"]

_lock = threading.Lock()
_pins: dict[str, Counter[str]] = {}


def _key(root: Path) -> str:
    return str(Path(root).resolve())


@contextmanager
def pinned(root: Path, refs: Iterable[str]) -> Iterator[None]:
    """Keep these digests / snapshot keys alive while the block runs."""
    refs = list(refs)
    with _lock:
        counter = _pins.setdefault(_key(root), Counter())
        counter.update(refs)
    try:
        yield
    finally:
        with _lock:
            counter.subtract(refs)
            for ref in refs:
                if counter[ref] <= 0:
                    del counter[ref]


def pin(root: Path, refs: Iterable[str]) -> None:
    """Add to an open :func:`pinned` block's set (for what a pull learns as it goes)."""
    with _lock:
        _pins.setdefault(_key(root), Counter()).update(refs)


def unpin(root: Path, refs: Iterable[str]) -> None:
    with _lock:
        counter = _pins.setdefault(_key(root), Counter())
        for ref in refs:
            counter[ref] -= 1
            if counter[ref] <= 0:
                del counter[ref]


def _pinned(root: Path) -> set[str]:
    with _lock:
        return set(_pins.get(_key(root), ()))


def snapshot_refs(blobs: BlobStore, stored: StoredManifest) -> set[str]:
    """The snapshot keys a manifest's files point into."""
    keys = set()
    for value in stored.model.files.values():
        if "://" in value:
            continue
        path = Path(value)
        path = path if path.is_absolute() else blobs.root / path
        key = blobs.snapshot_of(path)
        if key:
            keys.add(key)
    return keys


def in_use(blobs: BlobStore, manifests: ManifestFiles) -> tuple[set[str], set[str]]:
    """(digests, snapshot keys) that some manifest, or a running pull, still needs."""
    digests, snapshots = set(), set()
    for _, stored in manifests.all():
        digests |= stored.digests
        snapshots |= snapshot_refs(blobs, stored)
    pins = _pinned(blobs.root)
    return digests | pins, snapshots | pins


def collect(
    blobs: BlobStore, manifests: ManifestFiles, digests: Iterable[str], snapshots: Iterable[str] = ()
) -> int:
    """Delete those of ``digests`` and ``snapshots`` nothing uses; returns the bytes freed."""
    used_digests, used_snapshots = in_use(blobs, manifests)
    for key in set(snapshots) - used_snapshots:
        blobs.remove_snapshot(key)
    return blobs.remove(set(digests) - used_digests)
