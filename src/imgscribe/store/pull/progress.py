"""What a pull fetches (:class:`Item`) and the progress it reports, in Ollama's shape."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..blobs import check_digest

__all__ = ["Item", "human_bytes"]


def human_bytes(n: int) -> str:
    """A size in a pull's messages: "4.2 GB", "1.9 MB", "12.0 KB", "512 bytes"."""
    unit, scale = next(((u, k) for u, k in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)) if n >= k), ("bytes", 0))
    return f"{n / scale:.1f} {unit}" if scale else f"{n} bytes"


@dataclass
class Item:
    """One file to fetch."""

    url: str
    digest: str | None = None  # sha256:<hex> when known in advance
    size: int | None = None
    name: str = ""  # a file name: shown in progress when there is no digest
    git_oid: str | None = None  # a git blob id (sha1) to check a file without a digest against
    headers: dict[str, str] = field(default_factory=dict)
    result: str | None = None  # the digest it was stored under, once fetched

    def __post_init__(self) -> None:
        if self.digest:
            self.digest = check_digest(self.digest)

    @property
    def key(self) -> str:
        return self.digest or f"file:{self.name or self.url}"

    @property
    def what(self) -> str:
        return f"blob {self.digest[:19]}…" if self.digest else f"file {self.name or self.url}"


class _Progress:
    """Per-file totals shared by the worker threads; emits Ollama's ``pulling <digest>`` objects."""

    def __init__(self, items: list[Item]):
        self.lock = threading.Lock()
        self.items: dict[str, Item] = {}
        self.total: dict[str, int] = {}
        self.completed: dict[str, int] = {}
        self.sent: dict[str, tuple[int, int]] = {}
        for item in items:
            self.items.setdefault(item.key, item)
            self.total.setdefault(item.key, item.size or 0)
            self.completed.setdefault(item.key, 0)

    def set(self, key: str, completed: int, total: int | None = None) -> None:
        with self.lock:
            self.completed[key] = completed
            if total is not None:
                self.total[key] = total

    def add(self, key: str, n: int) -> None:
        with self.lock:
            self.completed[key] += n

    def events(self, force: bool = False) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            for key, item in self.items.items():
                now = (self.total[key], self.completed[key])
                if not force and self.sent.get(key) == now:
                    continue
                self.sent[key] = now
                if item.digest:
                    hexd = item.digest.split(":", 1)[1]
                    out.append({"status": f"pulling {hexd[:12]}", "digest": item.digest, "total": now[0], "completed": now[1]})
                else:
                    out.append({"status": f"pulling {item.name}", "total": now[0], "completed": now[1]})
        return out
