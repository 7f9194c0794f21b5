"""Tiny local stand-ins for Ollama's registry and the Hugging Face Hub, on 127.0.0.1.

They speak the subset of each protocol that ``imgscribe pull`` uses (see
``imgscribe/store/pull/ollama.py`` and ``hf.py``), serve blobs with ``Range`` support and
redirects, and can misbehave on purpose: drop a connection mid-file, send corrupted bytes, go slow,
ask for a token.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

OLLAMA = "application/vnd.ollama.image."
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- tiny files ---------------------------------------------------------------------------------


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf(metadata: dict, padding: int = 0, seed: int = 0, tensors: dict[str, tuple[int, ...]] | None = None) -> bytes:
    """A valid GGUF v3 file with these metadata (str, int -> u32, float -> f32, bool, list of str) and
    F32 tensors (name -> shape, in GGUF's order: ne0 first) of pseudo-random data, plus padding."""
    body = b""
    for key, value in metadata.items():
        body += _gguf_string(key)
        if isinstance(value, bool):
            body += struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            body += struct.pack("<II", 4, value)
        elif isinstance(value, float):
            body += struct.pack("<If", 6, value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_gguf_string(str(v)) for v in value)
        else:
            body += struct.pack("<I", 8) + _gguf_string(str(value))
    offset = 0
    for name, shape in (tensors or {}).items():
        body += _gguf_string(name) + struct.pack(f"<I{len(shape)}Q", len(shape), *shape) + struct.pack("<IQ", 0, offset)
        n = 4
        for d in shape:
            n *= d
        offset += -(-n // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors or {}), len(metadata))
    header = head + body
    if tensors:
        header += b"\0" * (-len(header) % 32)  # the data section starts aligned
    rng = hashlib.sha256(f"{seed}".encode()).digest()
    data = (rng * ((offset + padding) // len(rng) + 1))[: offset + padding]
    return header + data


def tiny_model_gguf(name: str = "tiny", padding: int = 300_000, seed: int = 0, arch: str = "llama") -> bytes:
    return gguf({"general.architecture": arch, "general.name": name, f"{arch}.context_length": 2048,
                 "general.file_type": 15}, padding, seed)  # fmt: skip


def tiny_projector_gguf(padding: int = 100_000, seed: int = 1, projector_type: str | None = "mlp", width: int = 0) -> bytes:
    """A clip projector; ``projector_type=None``: an old LLaVA/BakLLaVA one; ``width``: what it projects to."""
    meta: dict = {"general.architecture": "clip", "clip.has_vision_encoder": True}
    if projector_type is not None:
        meta["clip.projector_type"] = projector_type
    return gguf(meta, padding, seed, {"v.blk.0.attn_q.weight": (8, 8), "mm.0.weight": (8, 16), "mm.2.weight": (16, width or 16)})


def ollama_vision_gguf(arch: str = "gemma3", padding: int = 300_000, seed: int = 5, template: bool = True) -> bytes:
    """Ollama's single-file layout: the vision tower inside the model GGUF (``<arch>.vision.*``, ``v.*``, ``mm.*``)."""
    meta: dict = {"general.architecture": arch, "general.name": f"tiny-{arch}", f"{arch}.context_length": 2048,
                  f"{arch}.embedding_length": 16, f"{arch}.vision.block_count": 1, f"{arch}.vision.embedding_length": 8,
                  "general.file_type": 15, "tokenizer.ggml.tokens": ["<s>", "</s>", "a"]}  # fmt: skip
    if template:
        meta["tokenizer.chat_template"] = "{{ messages }}"
    tensors = {"token_embd.weight": (16, 3), "blk.0.attn_q.weight": (16, 16), "v.blk.0.attn_q.weight": (8, 8),
               "mm.input_projection.weight": (8, 16)}  # fmt: skip
    return gguf(meta, padding, seed, tensors)


def safetensors(seed: int = 0) -> bytes:
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + hashlib.sha256(str(seed).encode()).digest()[:8]


def git_oid(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


# -- misbehaviour -------------------------------------------------------------------------------


@dataclass
class Faults:
    """What the server does wrong, per file key (a digest, or a Hub path)."""

    drop_after: dict[str, int] = field(default_factory=dict)  # key -> bytes sent before dropping ...
    drop_times: dict[str, int] = field(default_factory=dict)  # ... this many times (default 1)
    corrupt_times: dict[str, int] = field(default_factory=dict)  # key -> serve flipped bytes this many times
    delay: float = 0.0  # seconds per 16 KiB sent
    ignore_range: bool = False


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (interrupted pulls, under test) print no traceback between tests."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeRemote:
    """Base: a threaded HTTP server with a request log and blob serving."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.log: list[Request] = []
        self.served = Counter()  # key -> bytes sent to downloads
        self.inspected = Counter()  # key -> bytes sent to header reads (inspect.py asks with Accept-Encoding: identity)
        self._lock = threading.Lock()
        remote = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                remote._record(self)
                remote.handle(self)

            def do_HEAD(self) -> None:
                remote._record(self)
                remote.handle(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.log.append(Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}))

    def requests(self, contains: str) -> list[Request]:
        return [r for r in self.log if contains in r.path]

    def downloads(self, contains: str) -> list[Request]:
        """The requests of the downloader (not inspect.py's header reads)."""
        return [r for r in self.requests(contains) if r.headers.get("accept-encoding") != "identity"]

    def header_reads(self, contains: str) -> list[Request]:
        return [r for r in self.requests(contains) if r.headers.get("accept-encoding") == "identity"]

    def handle(self, h: BaseHTTPRequestHandler) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- responses ----------------------------------------------------------------------------

    @staticmethod
    def send_json(h: BaseHTTPRequestHandler, status: int, body, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", (headers or {}).pop("Content-Type", "application/json"))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def redirect(h: BaseHTTPRequestHandler, location: str, status: int = 307) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def send_blob(self, h: BaseHTTPRequestHandler, key: str, data: bytes) -> None:
        """With Range support, and the faults configured for ``key``."""
        size = len(data)
        start, end = 0, size - 1
        ranged = False
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if match and not self.faults.ignore_range:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            if start >= size:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            ranged = True
        body = data
        header_read = h.headers.get("Accept-Encoding") == "identity"  # the faults are the downloader's
        drop = None
        with self._lock:
            if not header_read and self.faults.corrupt_times.get(key, 0) > 0:
                self.faults.corrupt_times[key] -= 1
                body = bytes(b ^ 0xFF for b in data)
            if not header_read and key in self.faults.drop_after and self.faults.drop_times.get(key, 1) > 0:
                self.faults.drop_times[key] = self.faults.drop_times.get(key, 1) - 1
                drop = self.faults.drop_after[key]
        piece = body[start : end + 1]
        h.send_response(206 if ranged else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(piece)))
        h.send_header("Accept-Ranges", "bytes")
        if ranged:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if h.command == "HEAD":
            return
        sent = 0
        step = 16 * 1024
        try:
            while sent < len(piece):
                n = step if drop is None else min(step, drop - sent)
                if n <= 0:
                    h.wfile.flush()
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                chunk = piece[sent : sent + n]
                h.wfile.write(chunk)
                sent += len(chunk)
                with self._lock:
                    (self.inspected if header_read else self.served)[key] += len(chunk)
                if self.faults.delay:
                    time.sleep(self.faults.delay)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True


# -- Ollama's registry ------------------------------------------------------------------------------


class FakeRegistry(FakeRemote):
    """``/v2/<ns>/<model>/manifests/<tag>`` and ``/v2/<ns>/<model>/blobs/<digest>`` (redirected to
    ``/cdn/<digest>``, as the real registry redirects to its CDN). Namespaces in ``private`` need a
    bearer token from ``/token``."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.private: set[str] = set()
        self.token = "tok-123"
        super().__init__()

    def add_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def add_model(self, repo: str, tag: str, layers: list[tuple[str, bytes]], config: dict | None = None) -> dict:
        """``layers``: (role, bytes) with role model/projector/template/params/system/license."""
        namespace, model = repo.split("/") if "/" in repo else ("library", repo)
        entries = []
        for role, data in layers:
            entries.append({"mediaType": OLLAMA + role, "digest": self.add_blob(data), "size": len(data)})
        config_bytes = json.dumps(config or {"model_format": "gguf", "model_family": "llama",
                                              "model_families": ["llama", "clip"], "model_type": "7B",
                                              "file_type": "Q4_0"}).encode()  # fmt: skip
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG, "digest": self.add_blob(config_bytes), "size": len(config_bytes)},
            "layers": entries,
        }
        self.manifests[(namespace, model, tag)] = json.dumps(manifest).encode()
        return manifest

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path == "/token":
            query = parse_qs(urlsplit(h.path).query)
            assert query.get("service") == ["registry"], query
            self.send_json(h, 200, {"token": self.token})
            return
        if path.startswith("/cdn/"):
            digest = path[len("/cdn/") :]
            if digest not in self.blobs:
                self.send_json(h, 404, {"errors": [{"code": "BLOB_UNKNOWN"}]})
                return
            self.send_blob(h, digest, self.blobs[digest])
            return
        match = re.fullmatch(r"/v2/([^/]+)/([^/]+)/(manifests|blobs)/([^/]+)", path)
        if not match:
            self.send_json(h, 404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        namespace, model, kind, ref = match.groups()
        if namespace in self.private and h.headers.get("Authorization") != f"Bearer {self.token}":
            challenge = f'Bearer realm="{self.url}/token",service="registry",scope="repository:{namespace}/{model}:pull"'
            self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})
            return
        if kind == "manifests":
            data = self.manifests.get((namespace, model, ref))
            if data is None:
                self.send_json(h, 404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
                return
            self.send_json(h, 200, data, {"Content-Type": MANIFEST_V2})
            return
        if ref not in self.blobs:
            self.send_json(h, 404, {"errors": [{"code": "BLOB_UNKNOWN"}]})
            return
        self.redirect(h, f"{self.url}/cdn/{ref}")


# -- the Hugging Face Hub ----------------------------------------------------------------------------


class FakeHub(FakeRemote):
    """``/api/models/<repo>``, ``/api/models/<repo>/tree/<rev>`` (paged by ``page_size`` with a
    ``Link`` header) and ``/<repo>/resolve/<rev>/<path>`` (LFS files redirected to ``/cdn/``)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[bytes, bool]]] = {}  # repo -> path -> (bytes, lfs)
        self.gated: set[str] = set()
        self.extra_entries: dict[str, list[dict]] = {}
        self.page_size = 0
        self.token = ""  # when set, every request must carry it
        super().__init__()

    def add_repo(self, repo: str, files: dict[str, bytes], lfs_min: int = 1000) -> None:
        self.repos[repo] = {p: (d, len(d) >= lfs_min) for p, d in files.items()}

    def sha(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def tree(self, repo: str) -> list[dict]:
        entries = []
        dirs = set()
        for path, (data, lfs) in sorted(self.repos[repo].items()):
            parts = path.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            entry = {"type": "file", "path": path, "size": len(data)}
            if lfs:
                entry["oid"] = hashlib.sha1(b"pointer " + data[:64]).hexdigest()
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            else:
                entry["oid"] = git_oid(data)
            entries.append(entry)
        entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        return entries + self.extra_entries.get(repo, [])

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}" and not path.startswith("/cdn/"):
            self.send_json(h, 401, {"error": "Invalid credentials in Authorization header"})
            return
        if path.startswith("/cdn/"):
            repo, _, file = path[len("/cdn/") :].partition("::")
            data, _ = self.repos[repo][file]
            self.send_blob(h, file, data)
            return
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/tree/([^/]+))?", path)
        if match:
            repo, rev = match.groups()
            if repo not in self.repos:
                self.send_json(h, 401, {"error": "Repository not found"})  # what the Hub says to anonymous users
                return
            if repo in self.gated:
                self.send_json(h, 403, {"error": "Access to model is restricted"})
                return
            if rev is None:
                self.send_json(h, 200, {"id": repo, "sha": self.sha(repo), "siblings": [{"rfilename": p} for p in self.repos[repo]]})
                return
            assert rev == self.sha(repo), rev
            entries = self.tree(repo)
            if self.page_size:
                cursor = int(parse_qs(split.query).get("cursor", ["0"])[0])
                page = entries[cursor : cursor + self.page_size]
                headers = {}
                if cursor + self.page_size < len(entries):
                    headers["Link"] = f'<{self.url}/api/models/{repo}/tree/{rev}?recursive=true&cursor={cursor + self.page_size}>; rel="next"'
                self.send_json(h, 200, page, headers)
                return
            self.send_json(h, 200, entries)
            return
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match:
            repo, rev, file = match.groups()
            if repo not in self.repos or file not in self.repos[repo]:
                self.send_json(h, 404, {"error": "Entry not found"})
                return
            data, lfs = self.repos[repo][file]
            if lfs:
                self.redirect(h, f"{self.url}/cdn/{repo}::{file}", 302)
                return
            self.send_blob(h, file, data)
            return
        self.send_json(h, 404, {"error": "not found"})


@contextmanager
def running(remote: FakeRemote) -> Iterator[FakeRemote]:
    try:
        yield remote
    finally:
        remote.close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def random_bytes(n: int, seed: int = 0) -> bytes:
    return os.urandom(n) if seed < 0 else (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]
