"""Faults of the engine and the store (issue 17): a llama-server child killed mid-request, a model
file deleted or truncated while it is loaded, ``imgscribe serve`` killed mid-upload and mid-create.
Real processes throughout: a tiny random-weight Gemma 3 GGUF (converted once for this module) served
by the real llama-server, the real app over loopback HTTP, ``imgscribe serve`` and ``imgscribe run``
as subprocesses; SIGKILL as the fault. Each test says what it tried and records its outcomes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server.conftest import live_server, wait_for

from imgscribe.engines.llamacpp.process import live_children
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.store.import_gguf import manifest_for_gguf

from .conftest import error_message, serve_process

sys.path.insert(0, str(Path(__file__).parents[1] / "engines"))
from _llamacpp_support import (
    alive,
    checkpoint,
    child_pids,
    llama_cpp_source,
    llama_server_binary,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

VICTIM, BYSTANDER = "victim", "bystander"
BOUND = 20.0  # seconds: no client waits longer than this for its error after the kill


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny Gemma 3 (model, projector), converted by llama.cpp's own converter (about 20 s)."""
    llama_server_binary()
    from imgscribe.engines.llamacpp.convert import convert_many

    out = tmp_path_factory.mktemp("gguf")
    [result] = convert_many([(checkpoint("gemma3"), out)], outtype="f32", llama_dir=llama_cpp_source())
    if isinstance(result, BaseException):
        raise result
    return result.model, result.mmproj


def make_store(root: Path, gguf: tuple[Path, Path]) -> Store:
    """VICTIM (2 slots, answers as long as the context: ignore_eos) and BYSTANDER (another context, so its own
    llama-server), both from blobs copied into the store, as a pull or an upload leaves them."""
    store = Store(root)
    model, projector = (store.add_file(p) for p in gguf)
    victim = manifest_for_gguf(VICTIM, model, projector)
    victim.engine_settings.update(ignore_eos=True, num_parallel=2)
    victim.parameters["num_ctx"] = 8192  # the trained length: an answer takes seconds (about 1000 tokens/s here)
    store.create(VICTIM, victim)
    bystander = manifest_for_gguf(BYSTANDER, model, projector)
    bystander.parameters["num_ctx"] = 1024
    store.create(BYSTANDER, bystander)
    return store


@pytest.fixture
def store(tmp_path, gguf) -> Store:
    return make_store(Path(os.environ["IMGSCRIBE_MODELS"]), gguf)


@pytest.fixture
def own_children():
    """The llama-servers this test started (other tests' stay alive in a full run)."""
    others = set(live_children())
    return lambda: set(live_children()) - others


@pytest.fixture
def scheduler(store, own_children) -> Iterator[Scheduler]:
    scheduler = Scheduler(store, num_parallel=0)
    yield scheduler
    scheduler.close()
    assert wait_for(lambda: not own_children(), 10), own_children()


def body(route: str, model: str, stream: bool, **options) -> dict:
    if route == "/api/generate":
        return {"model": model, "prompt": "hi", "stream": stream, "options": options}
    if route == "/api/chat":
        return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "options": options}
    extra = {"max_tokens": options["num_predict"]} if "num_predict" in options else {}
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}


def events(route: str, lines: list[str]) -> list[dict]:
    """The stream's objects: NDJSON lines (Ollama), ``data:`` events (OpenAI)."""
    if route.startswith("/api"):
        return [json.loads(line) for line in lines if line.strip()]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [json.loads(d) for d in data if d != "[DONE]"]


def answered(url: str, route: str, model: str) -> bool:
    r = httpx.post(url + route, json=body(route, model, False, num_predict=4), timeout=60)
    return r.status_code == 200


# -- 1. llama-server killed mid-request ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/generate", "/api/chat", "/v1/chat/completions"])
def test_child_killed_mid_request(route, scheduler, tally, record_property):
    """SIGKILL the llama-server of a model while two requests are in its slots, one streamed and one
    not (over HTTP, per route): the streamed one ends with an error event in the route's dialect,
    the other gets 500, both naming the model, the signal and Ollama's "llama runner process has
    terminated", within a bounded time; the scheduler forgets the dead runner, the next request to
    the model starts a fresh llama-server and is answered, and another model loaded meanwhile (its
    own llama-server) keeps answering."""
    with live_server(scheduler) as live:
        assert answered(live.url, route, BYSTANDER) and answered(live.url, route, VICTIM)
        bystander_pid = scheduler.loaded_runner(BYSTANDER).process.pid
        runner = scheduler.loaded_runner(VICTIM)
        streamed: list[str] = []
        whole: dict = {}
        ended: dict[str, float] = {}

        def stream() -> None:
            with httpx.Client(timeout=60) as client, client.stream("POST", live.url + route,
                                                                   json=body(route, VICTIM, True)) as r:  # fmt: skip
                for line in r.iter_lines():
                    streamed.append(line)  # noqa: PERF402 - line by line: the test watches it grow
            ended["stream"] = time.monotonic()

        def single() -> None:
            whole["response"] = httpx.post(live.url + route, json=body(route, VICTIM, False), timeout=60)
            ended["single"] = time.monotonic()

        threads = [threading.Thread(target=stream), threading.Thread(target=single)]
        begun = time.monotonic()
        for t in threads:
            t.start()
        assert wait_for(lambda: len(streamed) >= 2 and runner.active == 2, 30), (streamed[:3], runner.active)
        pid = runner.process.pid
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for t in threads:
            t.join(BOUND)
        assert not any(t.is_alive() for t in threads), "a client still waits after the kill"
        waits = {k: round(v - killed_at, 2) for k, v in ended.items()}
        assert max(waits.values()) < BOUND, waits

        last = events(route, streamed)[-1]
        said = last["error"] if route.startswith("/api") else last["error"]["message"]
        response = whole["response"]
        assert response.status_code == 500, response.text
        for message in (said, error_message(route, response)):
            assert "llama runner process has terminated" in message and "SIGKILL" in message, message
            assert f"'{VICTIM}:latest'" in message, message
        tally.add(f"{route} streamed: error in the stream")
        tally.add(f"{route} not streamed: 500")

        assert wait_for(lambda: scheduler.loaded_runner(VICTIM) is None, 5), "the dead runner is still loaded"
        assert not alive(pid)
        assert answered(live.url, route, VICTIM), "the next request after the kill was not answered"
        assert scheduler.loaded_runner(VICTIM).process.pid != pid
        tally.add(f"{route} next request: answered by a fresh llama-server")
        assert answered(live.url, route, BYSTANDER)
        assert scheduler.loaded_runner(BYSTANDER).process.pid == bystander_pid
        tally.add(f"{route} other model: kept answering")
        record_property("seconds_from_kill_to_error", json.dumps(waits))
        record_property("seconds_from_requests_to_kill", round(killed_at - begun, 2))


def test_child_killed_while_idle(scheduler, tally):
    """SIGKILL an idle model's llama-server (no request in flight): ``ps`` stops listing the model
    as soon as the exit is seen, and the next request loads it afresh (a new llama-server) and is answered."""
    from imgscribe.types import ChatRequest, Message, Options

    request = ChatRequest(VICTIM, [Message("user", "hi")], options=Options(num_predict=4))
    assert list(scheduler.chat(request))[-1].done
    pid = scheduler.loaded_runner(VICTIM).process.pid
    os.kill(pid, signal.SIGKILL)
    # (a moment after the kill: the kernel reports the exit once all of llama-server's threads are gone)
    assert wait_for(lambda: VICTIM not in [row.info.name.split(":")[0] for row in scheduler.ps()], 5)
    assert not alive(pid)
    assert list(scheduler.chat(request))[-1].done
    assert scheduler.loaded_runner(VICTIM).process.pid != pid
    tally.add("killed while idle: not in ps, next request answered by a fresh llama-server")


def test_cli_run_child_killed(store, tally, record_property):
    """``imgscribe run victim hi`` in its own process (in-process engine, no server): its
    llama-server is SIGKILLed once the answer is streaming. The command prints one ``Error:`` line
    naming the model and the signal, no traceback, and exits 1 within a bounded time."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "imgscribe", "run", VICTIM, "hi"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout.read(1), "no answer began"
        children = [p for p in child_pids(proc.pid) if "llama-server" in _cmdline(p)]
        assert len(children) == 1, children
        os.kill(children[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=BOUND)
        record_property("seconds_from_kill_to_exit", round(time.monotonic() - killed_at, 2))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, lines)
    # one Error: line; after it, by design (errors.ImgscribeError.detail), llama-server's log path and last lines
    assert lines[0].startswith("Error: ") and sum(line.startswith("Error:") for line in lines) == 1, lines
    assert "Traceback" not in err.decode(), lines
    assert "llama runner process has terminated" in lines[0] and "SIGKILL" in lines[0] and VICTIM in lines[0], lines
    tally.add("imgscribe run: one Error: line, exit 1")


# -- 2. a model file deleted or truncated while loaded ----------------------------------------------------


def test_blob_deleted_while_loaded(store, scheduler, own_children, tally, capsys):
    """Delete the model's blob while its llama-server has it open: requests keep being answered (the
    child keeps its mapping of the file); ``list`` still lists the model, with a warning under the
    table that it is incomplete, and ``show`` says so (an ``Error:`` line, exit 1); once it is unloaded (``stop``), the next request gets a
    clear error naming the model and saying to pull or create it again, and no llama-server is
    started for it."""
    from imgscribe.cli import main
    with live_server(scheduler) as live:
        assert answered(live.url, "/api/generate", VICTIM)
        Path(store.resolve(VICTIM).files["model"]).unlink()
        assert answered(live.url, "/api/generate", VICTIM), "a loaded model stopped answering when its file went"
        tally.add("deleted while loaded: still answered")
        capsys.readouterr()
        assert main(["list"]) == 0
        listed = capsys.readouterr()
        assert VICTIM in listed.out, listed
        assert f"Warning: model '{VICTIM}:latest' is incomplete" in listed.err, listed  # (its bystander shares the blob)
        tags = httpx.get(live.url + "/api/tags", timeout=10).json()["models"]
        [entry] = [m for m in tags if m["name"] == f"{VICTIM}:latest"]
        assert "is incomplete" in entry["imgscribe"]["damaged"], entry
        tally.add("list: lists it, with a warning that it is incomplete")
        assert main(["show", VICTIM]) == 1
        shown = capsys.readouterr().err
        assert shown.startswith(f"Error: model '{VICTIM}:latest' is incomplete") and "Traceback" not in shown, shown
        tally.add("show: says incomplete")
        scheduler.unload(VICTIM)
        assert wait_for(lambda: not own_children(), 10)
        r = httpx.post(live.url + "/api/generate", json=body("/api/generate", VICTIM, False), timeout=30)
        message = error_message("/api/generate", r)
        assert r.status_code == 500 and f"'{VICTIM}:latest' is incomplete" in message, r.text
        assert "pull or create it again" in message, message
        assert scheduler.loaded_runner(VICTIM) is None
        tally.add("next load: refused, naming the model")


@pytest.mark.parametrize("role", ["model", "projector"])
def test_blob_truncated_while_loaded(role, store, scheduler, own_children, tally, record_property):
    """Truncate the model's (or projector's) blob to half while it is loaded, then ask: for the
    model, llama-server touches the missing pages and dies (SIGBUS) and the request gets a clear
    error saying the file was truncated, and the runner is dropped; the projector was read whole at
    load, so requests keep being answered until the model is unloaded. The next load refuses the
    truncated blob (its size against the manifest's) before any llama-server starts."""
    with live_server(scheduler) as live:
        assert answered(live.url, "/api/chat", VICTIM)
        path = Path(store.resolve(VICTIM).files[role])
        os.truncate(path, path.stat().st_size // 2)
        r = httpx.post(live.url + "/api/chat", json=body("/api/chat", VICTIM, False, num_predict=8), timeout=30)
        if r.status_code == 200:
            outcome = "answered (the file was read whole at load)"
        else:
            message = error_message("/api/chat", r)
            assert r.status_code == 500 and "truncated" in message and f"its {role} file" in message, r.text
            assert wait_for(lambda: scheduler.loaded_runner(VICTIM) is None, 5), "the dead runner is still loaded"
            outcome = "clear error: " + message.split(";")[0].split(": ", 1)[1]
        tally.add(f"{role} truncated while loaded: {outcome}")
        record_property("truncated_" + role, outcome)
        if role == "model":
            assert r.status_code == 500, "a truncated model went on answering"
        scheduler.unload(VICTIM)
        assert wait_for(lambda: not own_children(), 10)
        r = httpx.post(live.url + "/api/chat", json=body("/api/chat", VICTIM, False), timeout=30)
        message = error_message("/api/chat", r)
        assert r.status_code == 500 and f"'{VICTIM}:latest' is damaged: its {role} file" in message, r.text
        assert "manifest records" in message and "pull or create it again" in message, message
        assert not own_children(), "a llama-server was started on a truncated file"
        tally.add(f"{role} truncated: next load refused before llama-server")


# -- 3. the server killed mid-upload and mid-create -------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _temporaries(store: Store) -> list[str]:
    return sorted(p.name for p in store.blobs.dir.iterdir() if p.name.startswith(".tmp-"))


def _names(url: str) -> list[str]:
    return sorted(m["name"] for m in httpx.get(url + "/api/tags", timeout=10).json()["models"])


def test_serve_killed_mid_upload(tmp_path, gguf, cli_env, tally):
    """SIGKILL ``imgscribe serve`` while a model file is halfway through ``POST /api/blobs/<digest>``,
    restart it on the same store: the blob is not there (404), ``list`` shows the store as before,
    the upload's temporary file is deleted as the server starts; the same upload and create run
    again succeed and the model answers."""
    store = Store(tmp_path / "models")
    data = gguf[0].read_bytes()
    from imgscribe.store.blobs import sha256_file

    digest = sha256_file(gguf[0])
    with serve_process(store.root, cli_env, tmp_path / "serve1.log") as (url, pid):
        before = _names(url)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = (f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n")  # fmt: skip
            sock.sendall(head.encode() + data[: len(data) // 2])
            assert wait_for(lambda: store.blobs.dir.is_dir() and _temporaries(store), 10), "the upload did not begin"
            os.kill(pid, signal.SIGKILL)
            assert wait_for(lambda: not alive(pid), 10)
    left = _temporaries(store)
    assert left and all(n.startswith(".tmp-upload-") for n in left), left
    with serve_process(store.root, cli_env, tmp_path / "serve2.log") as (url, _):
        assert _names(url) == before
        assert httpx.head(url + f"/api/blobs/{digest}", timeout=10).status_code == 404
        assert _temporaries(store) == [], "the restarted server did not sweep the killed upload's file"
        tally.add("killed mid-upload: no blob, list as before, its temporary file swept when serve started")
        assert httpx.post(url + f"/api/blobs/{digest}", content=data, timeout=30).status_code == 201
        r = httpx.post(url + "/api/create", json={"model": "uploaded", "files": {"m.gguf": digest}, "stream": False},
                       timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        assert _temporaries(store) == [], "the killed upload's temporary file is still there"
        assert "uploaded:latest" in _names(url)
        assert httpx.post(url + "/api/generate", json={"model": "uploaded", "prompt": "hi", "stream": False,
                                                       "options": {"num_predict": 4}}, timeout=60).status_code == 200  # fmt: skip
        tally.add("upload and create again: succeeded, temporary file swept")


def test_serve_killed_mid_create(tmp_path, gguf, cli_env, tally, record_property):
    """SIGKILL ``imgscribe serve`` part-way through ``POST /api/create`` (from files uploaded before;
    at 20%, 60% and 100% of the time a create took on that server), restarting it each time on the
    same store: after every kill the restarted server lists the model either complete (it resolves,
    its files have their recorded sizes) or not at all, and no temporary file; the same create run
    again then succeeds."""
    store = Store(tmp_path / "models")
    from imgscribe.store.blobs import sha256_file

    files = {p.name: sha256_file(p) for p in gguf}
    create = {"model": "made", "files": files, "stream": False}

    def upload() -> None:  # (again after a delete freed the blobs)
        for p in gguf:
            store.blobs.put_file(p)

    def delete(url: str) -> None:
        assert httpx.request("DELETE", url + "/api/delete", json={"model": "made"}, timeout=10).status_code == 200
        upload()

    def judge(url: str) -> str:
        """What the restarted server shows of the killed create."""
        listed = _names(url)
        assert not any(".tmp" in n for n in listed), listed
        if "made:latest" not in listed:
            return "absent"
        manifest = Store(store.root).resolve("made")  # raises if incomplete or truncated
        assert all(Path(f).is_file() for f in manifest.files.values())
        delete(url)
        return "complete"

    upload()
    seen, took, shares = {}, 0.0, [0.2, 0.6, 1.0]
    for i in range(len(shares) + 1):
        with serve_process(store.root, cli_env, tmp_path / f"serve{i}.log") as (url, pid):
            if i:
                seen[shares[i - 1]] = judge(url)
                tally.add(f"killed at {shares[i - 1]:.0%} of a create: {seen[shares[i - 1]]}")
            else:  # how long a create takes here
                started = time.monotonic()
                assert httpx.post(url + "/api/create", json=create, timeout=60).status_code == 200
                took = time.monotonic() - started
                delete(url)
            if i == len(shares):  # the same create again
                assert httpx.post(url + "/api/create", json=create, timeout=60).status_code == 200
                assert "made:latest" in _names(url)
                tally.add("the same create again: succeeded")
                break
            sent = threading.Thread(target=_post_quietly, args=(url + "/api/create", create))
            sent.start()
            time.sleep(shares[i] * took)
            os.kill(pid, signal.SIGKILL)
            sent.join(10)
    record_property("create_seconds", round(took, 3))
    record_property("kill_outcomes", json.dumps({f"{k:.0%}": v for k, v in seen.items()}))


def _post_quietly(url: str, body: dict) -> None:
    try:
        httpx.post(url, json=body, timeout=10)
    except httpx.HTTPError:
        pass


def test_sweep_spares_a_live_upload_and_takes_a_killed_ones(tmp_path, tally):
    """A process holds an upload's temporary file open (as a live upload does), another is
    SIGKILLed holding one: the sweep every create runs deletes the killed writer's file at once and
    leaves the live writer's alone; another temporary file is swept only once stale."""
    blobs = Store(tmp_path / "models").blobs
    blobs.dir.mkdir(parents=True)
    code = ("import sys,time; from pathlib import Path; from imgscribe.store.blobs import locked_temp\n"
            "fd, p = locked_temp(Path(sys.argv[1]), '.tmp-upload-'); print(p.name, flush=True); time.sleep(60)")  # fmt: skip
    writers = [subprocess.Popen([sys.executable, "-c", code, str(blobs.dir)], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        live_name, _ = (w.stdout.readline().decode().strip() for w in writers)
        writers[1].kill()
        writers[1].wait()
        other = blobs.dir / ".tmp-translate-x"
        other.write_bytes(b"x")
        blobs.sweep_temporaries()
        assert sorted(_temporaries_of(blobs)) == sorted([live_name, other.name])
        os.utime(other, (time.time() - 7200, time.time() - 7200))
        blobs.sweep_temporaries()
        assert _temporaries_of(blobs) == [live_name]
        tally.add("sweep: killed writer's file deleted, live writer's kept, stale other deleted")
    finally:
        for w in writers:
            w.kill()
            w.wait()


def _temporaries_of(blobs) -> list[str]:
    return sorted(p.name for p in blobs.dir.iterdir() if p.name.startswith(".tmp-"))
