"""``imgscribe run NAME`` pulls a model that is not here first, as ``ollama run`` does: in process
and through a running server, against the fake registry. ``describe`` does not pull."""

from __future__ import annotations

import _thread
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the store's and the server's test helpers

from server.conftest import add_echo, live_server
from store.fake_remotes import FakeRegistry, closed_port, tiny_model_gguf
from store.test_pull_ollama import add_llava, blob_digest

import imgscribe.cli.run as run_cli
from imgscribe.cli import main
from imgscribe.errors import ModelNotFound
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

NO_LLAMA_SERVER = "/nonexistent/llama-server"


@pytest.fixture(autouse=True)
def _no_proxies_no_llama_server(monkeypatch):
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    # the pulled model is a llamacpp one: running it then fails with the engine's own error
    monkeypatch.setenv("IMGSCRIBE_LLAMA_SERVER", NO_LLAMA_SERVER)


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    remote = FakeRegistry()
    yield remote
    remote.close()


def test_run_pulls_a_missing_model_then_runs_it(registry, capsys):
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    assert main(["run", name, "hi", "--insecure"]) == 1  # pulled, then the model's own error
    err = capsys.readouterr().err
    assert "pulling manifest" in err and "verifying sha256 digest" in err and "success" in err
    assert "not found" not in err and "IMGSCRIBE_LLAMA_SERVER" in err and "Traceback" not in err
    assert Store().exists(name)
    assert len(registry.requests("/manifests/")) == 1

    assert main(["run", name, "hi", "--insecure"]) == 1  # here now: no second pull
    err = capsys.readouterr().err
    assert "pulling manifest" not in err and "IMGSCRIBE_LLAMA_SERVER" in err
    assert len(registry.requests("/manifests/")) == 1


def test_a_model_here_is_not_pulled(registry, capsys):
    add_echo(Store(), "llava")
    assert main(["run", "llava", "describe this"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("echo: describe this") and "pulling" not in captured.err


def test_a_name_neither_here_nor_in_the_registry(registry, capsys):
    add_echo(Store(), f"{registry.host}/library/llava-mine:7b")
    add_echo(Store(), "llavas")
    add_echo(Store(), "qwen2")
    name = f"{registry.host}/library/llava:7b"
    assert main(["run", name, "hi", "--insecure"]) == 1
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()  # one sentence, no progress shown, no traceback
    assert line.startswith(f"Error: model '{name}' is neither here nor in the registry (pull model manifest: file does not exist")
    reason = line.split("(pull model manifest: file does not exist")[1]
    assert "library/llava" in reason and "7b" in reason  # the registry's own reason
    close = line.split("; models here with a similar name: ")[1].split(", ")
    assert sorted(close) == sorted([f"{registry.host}/library/llava-mine:7b", "llavas"])  # ':latest' left out
    assert "qwen2" not in line and "try pulling it first" not in line
    assert not Store().exists(name)


def test_no_close_names_no_list(registry, capsys):
    add_echo(Store(), "qwen2")
    assert main(["run", f"{registry.host}/library/nothing", "hi", "--insecure"]) == 1
    line = capsys.readouterr().err.strip()
    assert "neither here nor in the registry" in line and "similar name" not in line


def test_an_unreachable_registry_is_one_sentence(capsys):
    assert main(["run", f"127.0.0.1:{closed_port()}/library/llava:7b", "hi", "--insecure"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("Error: cannot reach 127.0.0.1") and "builtin" in line


def test_plain_http_needs_insecure(registry, capsys):
    add_llava(registry)
    assert main(["run", f"http://{registry.host}/library/llava:7b", "hi"]) == 1
    assert "--insecure" in capsys.readouterr().err
    assert registry.requests("/manifests/") == []


class Interrupted:
    """A client without the model whose pull is interrupted (Ctrl-C) after the first event."""

    where = "test"

    def __init__(self):
        self.closed = False

    def info(self, model):
        raise ModelNotFound(model)

    def pull(self, model, insecure=False, cancel=None):
        try:
            yield {"status": "pulling manifest"}
            yield {"status": "pulling 0123456789ab", "digest": "sha256:0123456789ab", "total": 10, "completed": 5}
            raise KeyboardInterrupt
        finally:
            self.closed = True

    def chat(self, request, cancel=None):  # pragma: no cover - never reached
        raise AssertionError("ran after an interrupted pull")


def test_ctrl_c_during_the_pull_exits_130_and_stops_the_transfers(monkeypatch, capsys):
    client = Interrupted()
    monkeypatch.setattr(run_cli, "connect", lambda host=None, local=False: client)
    assert main(["run", "llava", "hi"]) == 130
    assert client.closed and "Interrupted." in capsys.readouterr().err


def test_ctrl_c_keeps_the_partial_download_for_a_resume(registry, capsys, monkeypatch):
    from imgscribe.store.pull import download

    monkeypatch.setattr(download, "MIN_PART_SIZE", 10 << 20)  # the model in one part
    monkeypatch.setattr(download, "CHUNK", 16 * 1024)  # written as it arrives
    manifest = add_llava(registry, model=tiny_model_gguf(padding=1_000_000))
    model = blob_digest(manifest, "model")
    registry.faults.delay = 0.01  # 16 KiB every 10 ms
    name = f"{registry.host}/library/llava:7b"

    def ctrl_c_once_some_arrived():
        while registry.served[model] < 200_000:
            time.sleep(0.005)
        _thread.interrupt_main()  # SIGINT's KeyboardInterrupt, in the main thread

    threading.Thread(target=ctrl_c_once_some_arrived, daemon=True).start()
    assert main(["run", name, "hi", "--insecure"]) == 130
    assert "Interrupted." in capsys.readouterr().err
    assert not Store().exists(name)  # no half-pulled model
    assert Store().blobs.partial(model).is_file()  # what arrived is kept
    time.sleep(0.3)  # the fake server notices the closed connection
    first = registry.served[model]

    registry.faults.delay = 0
    assert main(["run", name, "hi", "--insecure"]) == 1  # pulled (resumed), then the model's own error
    assert "IMGSCRIBE_LLAMA_SERVER" in capsys.readouterr().err
    resumed = registry.requests(f"/cdn/{model}")[-1].headers["range"]
    assert 0 < int(resumed.split("=")[1].split("-")[0]) <= first
    assert Store().exists(name)


def test_describe_does_not_pull(registry, capsys, tmp_path):
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["describe", str(tmp_path / "x.png"), "-m", name]) == 1
    assert registry.requests("/manifests/") == []


def test_through_a_server_the_pull_goes_through_api_pull(registry, capsys, tmp_path):
    store = Store(tmp_path / "served")
    add_echo(store, "llavas")
    scheduler = Scheduler(store, num_parallel=0)
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    missing = f"{registry.host}/library/lava:7b"
    try:
        with live_server(scheduler) as server:
            assert main(["run", "--host", server.host, name, "hi", "--insecure"]) == 1
            err = capsys.readouterr().err
            assert "pulling manifest" in err and "success" in err and "IMGSCRIBE_LLAMA_SERVER" in err
            assert store.exists(name) and not Store().exists(name)  # the server's store, not this process's

            assert main(["run", "--host", server.host, missing, "hi", "--insecure"]) == 1
            line = capsys.readouterr().err.strip()
            assert line.startswith(f"Error: model '{missing}' is neither here nor in the registry")
            assert "similar name:" in line and "llavas" in line

            # the API keeps Ollama's 404 for a missing model: only the CLI's run pulls
            answer = httpx.post(server.url + "/api/generate", json={"model": "lava", "prompt": "hi"})
            assert answer.status_code == 404 and "not found" in answer.json()["error"]
            assert not store.exists("lava")
    finally:
        scheduler.close()
