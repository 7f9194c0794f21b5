"""The CLI as a client: it finds a running server and keeps models warm there; ``serve``, ``ps``, ``stop``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from imgscribe.cli.backend import LocalBackend, get_backend
from imgscribe.cli.remote import RemoteBackend, find_server
from imgscribe.errors import ImgscribeError, InvalidRequest, ModelNotFound
from imgscribe.images import intake
from imgscribe.types import ChatRequest, Message

from .conftest import image_bytes

pytestmark = pytest.mark.timeout(60)


def imgscribe(*args: str, host: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMGSCRIBE_HOST": host, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "imgscribe", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_no_server_means_in_process():
    assert find_server(None) is None  # conftest points IMGSCRIBE_HOST at a closed port
    assert isinstance(get_backend(None), LocalBackend)


def test_finds_the_server_at_imgscribe_host(server, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_HOST", server.host)
    backend = get_backend(None)
    assert isinstance(backend, RemoteBackend) and backend.where == server.url


def test_an_explicit_host_that_does_not_answer_is_an_error():
    with pytest.raises(ImgscribeError, match="no server answers at http://127.0.0.1:9"):
        find_server("127.0.0.1:9")
    with pytest.raises(InvalidRequest):
        find_server("ftp://x")


def test_a_foreign_server_is_used_only_when_named(monkeypatch):
    class OllamaLike(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"Ollama is running")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), OllamaLike)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{httpd.server_address[1]}"
        monkeypatch.setenv("IMGSCRIBE_HOST", host)
        assert find_server(None) is None, "a real Ollama on the default port must not take over"
        assert isinstance(find_server(host), RemoteBackend)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_remote_backend_round_trip(server, store):
    backend = find_server(server.host)
    img = intake(image_bytes((40, 30)))
    chunks = list(backend.chat(ChatRequest("llava", [Message("user", "what is it", [img])], keep_alive=float("inf"))))
    assert "".join(c.text for c in chunks) == f"echo: what is it | 1 image(s): 40x30 sha256:{img.sha256[:12]}"
    final = chunks[-1]
    assert final.done and final.metrics.eval_count == len(chunks) - 1 and final.data["images"]

    assert backend.show("llava") == store.resolve("llava").info
    assert {i.name for i in backend.list()} >= {"llava:latest", "echo-test:latest"}
    (row,) = backend.ps()
    assert row["name"] == "llava:latest" and row["expires_at"] is None and row["processor"] == "CPU"
    backend.stop("llava")
    assert backend.ps() == []

    backend.copy("llava", "llava2")
    backend.delete("llava2")
    assert not store.exists("llava2")
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        list(backend.chat(ChatRequest("nope", [Message("user", "x")])))
    with pytest.raises(ModelNotFound):
        backend.show("nope")
    from .test_ollama_wire import PROGRESS, fake_pull

    store.pull = fake_pull()
    assert list(backend.pull("llava:13b")) == PROGRESS
    store.pull = fake_pull(fail_at=0)
    with pytest.raises(ModelNotFound):
        list(backend.pull("nope"))
    store.pull = fake_pull(fail_at=2)
    with pytest.raises(ImgscribeError, match="connection reset"):
        list(backend.pull("x"))


def test_run_ps_stop_through_the_server(server, art):
    """`imgscribe run` sends its work to the server; the model stays warm for `ps`; `stop` unloads."""
    out = imgscribe("run", "llava", "describe this image: ./art.jpg", host=server.host, cwd=art.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("echo: describe this image: | 1 image(s): 96x64")
    out = imgscribe("ps", host=server.host)
    assert out.returncode == 0 and "llava:latest" in out.stdout and "in 4 minutes" in out.stdout
    assert imgscribe("stop", "llava", host=server.host).returncode == 0
    assert server.scheduler.ps() == []
    out = imgscribe("stop", "nope", host=server.host)
    assert out.returncode == 1 and "model 'nope' not found" in out.stderr


def test_ps_without_a_server_says_so():
    out = imgscribe("ps", host="127.0.0.1:9")
    assert out.returncode == 0 and "No server is running" in out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_starts_answers_and_stops_on_ctrl_c(tmp_path):
    host = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "IMGSCRIBE_HOST": host, "IMGSCRIBE_MODELS": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "imgscribe", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://{host}/api/version", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stderr.read() if proc.poll() is not None else "no answer"
                )
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["version"]
        # A second server on the same address explains what to do.
        taken = subprocess.run(
            [sys.executable, "-m", "imgscribe", "serve"], env=env, capture_output=True, text=True, timeout=30
        )
        assert taken.returncode == 1
        assert f"{host} is already in use" in taken.stderr and "IMGSCRIBE_HOST" in taken.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, proc.stderr.read()
