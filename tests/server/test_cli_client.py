"""The CLI as a client: it finds a running server and keeps models warm there; ``serve``, ``ps``, ``stop``."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from imgscribe.client import LocalClient, LocalRecipe, RemoteClient, connect, find_server
from imgscribe.errors import Cancelled, ImgscribeError, InvalidRequest, ModelNotFound
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
    assert isinstance(connect(None), LocalClient)


def test_finds_the_server_at_imgscribe_host(server, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_HOST", server.host)
    client = connect(None)
    assert isinstance(client, RemoteClient) and client.where == server.url


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
        assert isinstance(find_server(host), RemoteClient)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_remote_client_round_trip(server, store):
    client = find_server(server.host)
    img = intake(image_bytes((40, 30)))
    chunks = list(client.chat(ChatRequest("llava", [Message("user", "what is it", [img])], keep_alive=float("inf"))))
    assert "".join(c.text for c in chunks) == f"echo: what is it | 1 image(s): 40x30 sha256:{img.sha256[:12]}"
    final = chunks[-1]
    assert final.done and final.metrics.eval_count == len(chunks) - 1 and final.data["images"]

    assert client.info("llava") == store.resolve("llava").info
    assert {i.name for i in client.list()} >= {"llava:latest", "echo-test:latest"}
    (row,) = client.ps()
    assert row["name"] == "llava:latest" and int(row["expires_at"][:4]) > 2200 and row["processor"] == "CPU"
    client.stop("llava")
    assert client.ps() == []

    client.copy("llava", "llava2")
    client.delete("llava2")
    assert not store.exists("llava2")
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        list(client.chat(ChatRequest("nope", [Message("user", "x")])))
    with pytest.raises(ModelNotFound):
        client.info("nope")
    from .test_ollama_wire import PROGRESS, fake_pull

    store.pull = fake_pull()
    assert list(client.pull("llava:13b")) == PROGRESS
    store.pull = fake_pull(fail_at=0)
    with pytest.raises(ModelNotFound):
        list(client.pull("nope"))
    store.pull = fake_pull(fail_at=2)
    with pytest.raises(ImgscribeError, match="connection reset"):
        list(client.pull("x"))


def _running_ends(scheduler, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while scheduler.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    return scheduler.running() == 0


def test_a_cancel_stops_a_remote_answer(server):
    """Setting the cancel event closes the server's response mid-stream: Cancelled, and the
    server's slot is free again (the slow echo would take 10 s)."""
    client = find_server(server.host)
    cancel = threading.Event()
    answer = client.chat(ChatRequest("echo-slow", [Message("user", "x")]), cancel)
    assert next(answer).text
    started = time.monotonic()
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in answer:
            pass
    assert time.monotonic() - started < 3
    assert _running_ends(server.scheduler)
    client.close()


def test_closing_a_remote_answer_frees_the_slot(server):
    client = find_server(server.host)
    answer = client.chat(ChatRequest("echo-slow", [Message("user", "x")]))
    assert next(answer).text
    answer.close()
    answer.close()  # twice is fine
    assert list(answer) == []
    assert _running_ends(server.scheduler)


def test_what_either_client_tells(server, scheduler, store):
    local, remote = LocalClient(scheduler), find_server(server.host)
    assert local.manifest("llava") == store.resolve("llava") and remote.manifest("llava") is None
    assert remote.slots("llava") is None and local.slots("llava") >= 1  # loads it
    assert [row["name"] for row in local.ps()] == ["llava:latest"]
    from imgscribe.cli.server_cmds import until

    [row] = local.ps()  # when it will be unloaded, as the server's ps says it
    remote_row = next(r for r in remote.ps() if r["name"] == "llava:latest")
    assert row["expires_at"] is not None and remote_row["expires_at"] is not None  # a timed keep_alive
    assert until(row["expires_at"]) == until(remote_row["expires_at"])
    remote.stop("llava")
    remote.load("echo-test")
    assert {row["name"] for row in remote.ps()} == {"echo-test:latest"}


def test_recipes_make_the_same_client_elsewhere(server, scheduler):
    remote = RemoteClient(server.url, api_key="k")
    again = pickle.loads(pickle.dumps(remote.recipe())).open()
    assert isinstance(again, RemoteClient) and again.where == server.url and again.recipe() == remote.recipe()
    assert "k" not in repr(remote.recipe())
    recipe = pickle.loads(pickle.dumps(LocalClient(scheduler).recipe()))
    assert recipe == LocalRecipe(scheduler.store.root, scheduler.keep_alive, scheduler.max_loaded,
                                 scheduler.num_parallel, scheduler.max_queue, scheduler.ignore_memory)  # fmt: skip
    local = recipe.open()
    try:
        assert local.scheduler is not scheduler and local.store.root == scheduler.store.root
        assert local.info("llava") == scheduler.info("llava")
    finally:
        local.close()  # it made its scheduler: closing the client closes it


def test_run_ps_stop_through_the_server(server, art):
    """`imgscribe run` sends its work to the server; the model stays warm for `ps`; `stop` unloads."""
    out = imgscribe("run", "llava", "describe this image: ./art.jpg", host=server.host, cwd=art.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("echo: describe this image: | 1 image(s): 96x64")
    out = imgscribe("ps", host=server.host)
    assert out.returncode == 0 and "llava:latest" in out.stdout and "4 minutes from now" in out.stdout
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
