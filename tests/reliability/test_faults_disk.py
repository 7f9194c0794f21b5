"""Faults of the disk and of the process: a store or an output file on a small real file system
(a tmpfs) that fills up while pulling, translating or writing batch results, and a pull or a batch
run killed with SIGKILL and run again. Each must end with one clear error, nothing half-written
under a final name, and a rerun that continues from what was kept."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from batch.conftest import make_echo, run_and_kill, save_image  # tests/ is on sys.path (pytest's rootdir)
from server.conftest import live_server
from store.fake_remotes import FakeHub, FakeRegistry, gguf, tiny_model_gguf, tiny_projector_gguf

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.store.pull import DiskError, download

pytestmark = pytest.mark.timeout(120)
MB = 1_000_000


class Disk:
    """A mounted tmpfs: ``fill`` it, ``grow`` it (a remount keeps what it holds)."""

    def __init__(self, path: Path):
        self.path = path

    def free(self) -> int:
        return (st := os.statvfs(self.path)).f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> Path:
        """Take all but ``leave`` bytes (while another process may be writing too)."""
        filler = self.path / "filler"
        with open(filler, "ab", buffering=0) as f:
            while (room := self.free() - leave) > 0:
                try:
                    f.write(b"\0" * min(room, 1 << 20))
                except OSError:  # the other writer took the rest
                    break
        return filler

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a fresh tmpfs under tmp_path, always unmounted afterwards. Where mounting is
    refused the test fails if it runs as root or on CI (the check must not pass silently), else skips."""
    mounted: list[Path] = []

    def mount(size: str) -> Disk:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            why = f"cannot mount a tmpfs ({done.stderr.strip() or done.returncode}): the disk-full tests need CAP_SYS_ADMIN"
            if os.geteuid() == 0 or os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        mounted.append(where)
        return Disk(where)

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(download, "BACKOFF", 0.01)
    monkeypatch.setattr(download, "POLL", 0.02)
    monkeypatch.setattr(download, "MIN_PART_SIZE", 1 << 20)  # a few MB download in parallel ranges
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    remote = FakeRegistry()
    yield remote
    remote.close()


def add_model(registry: FakeRegistry, size: int, repo: str = "tiny") -> tuple[str, str, int]:
    """(the name to pull, the model layer's digest, its size)."""
    manifest = registry.add_model(repo, "latest", [("model", tiny_model_gguf(padding=size))])
    layer = manifest["layers"][0]
    return f"{registry.host}/library/{repo}:latest", layer["digest"], layer["size"]


def leftovers(store: Store) -> list[str]:
    """Files under a final blob name that are not whole, verified blobs."""
    bad = []
    for path in store.blobs.dir.glob("sha256-*"):
        if not path.name.endswith(("-partial", "-partial.json", "-partial.lock")):
            if not store.blobs.verify("sha256:" + path.name[7:]):
                bad.append(path.name)
    return bad + [p.name for p in store.blobs.dir.glob(".tmp*")]


def pulled(store: Store) -> list[str]:
    return [m.name for m in store.list() if m.engine != "builtin"]


def settle(registry: FakeRegistry) -> int:
    time.sleep(0.3)  # the fake server notices the closed connections
    return sum(registry.served.values())


# -- a full disk while pulling ----------------------------------------------------------------------


def test_a_pull_that_cannot_fit_is_refused_before_downloading(tmpfs, registry, tally):
    """A 4 MB model pulled into a store on a 2 MB tmpfs: the pull is refused before any byte of the
    model is fetched, with what it needs and what is free; no manifest, no partial file. After the
    tmpfs is remounted at 8 MB the same pull completes."""
    disk = tmpfs("2m")
    store = Store(disk.path / "models")
    name, model, size = add_model(registry, 4 * MB)
    with pytest.raises(DiskError, match=r"needs 4\.\d MB more and 2\.\d MB is free") as caught:
        list(store.pull(name, insecure=True))
    tally.add("refused upfront with both sizes")
    assert registry.served[model] == 0 and not store.blobs.partial(model).exists()
    assert pulled(store) == [] and leftovers(store) == []
    tally.add("nothing fetched, nothing written")
    disk.grow("8m")
    events = list(store.pull(name, insecure=True))
    assert events[-1] == {"status": "success"} and registry.served[model] == size and store.blobs.verify(model)
    tally.add("pulled once there was room")
    assert "IMGSCRIBE_MODELS" in str(caught.value)


def test_a_hugging_face_pull_that_cannot_fit_is_refused_before_downloading(tmpfs, registry, monkeypatch, tally):
    """The same from a (fake) Hugging Face Hub: a GGUF repository whose 3 MB model and projector do
    not fit on a 2 MB tmpfs is refused before either file is fetched; after a remount it pulls."""
    hub = FakeHub()
    monkeypatch.setenv("IMGSCRIBE_HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("IMGSCRIBE_HF_TOKEN", raising=False)
    try:
        hub.add_repo("Org/Tiny-VLM-GGUF", {"tiny-vlm-Q4_K_M.gguf": tiny_model_gguf(padding=3 * MB),
                                           "mmproj-tiny-vlm-F16.gguf": tiny_projector_gguf()})  # fmt: skip
        disk = tmpfs("2m")
        store = Store(disk.path / "models")
        with pytest.raises(DiskError, match=r"needs 3\.\d MB more and 2\.\d MB is free"):
            list(store.pull("hf.co/Org/Tiny-VLM-GGUF", insecure=True))
        assert sum(hub.served.values()) == 0 and pulled(store) == [] and leftovers(store) == []
        tally.add("Hugging Face: refused upfront, nothing fetched")
        disk.grow("8m")
        assert list(store.pull("hf.co/Org/Tiny-VLM-GGUF", insecure=True))[-1] == {"status": "success"}
        tally.add("pulled once there was room")
    finally:
        hub.close()


def test_a_disk_that_fills_up_mid_download_keeps_what_arrived_and_resumes(tmpfs, registry, monkeypatch, tally):
    """The disk fills up after the space check (another program takes all but 1.6 MB while a 3 MB model
    downloads in three ranges onto a 4 MB tmpfs): the pull fails with "no space left on device",
    naming the blob, the folder and how much of it was written; no manifest, no file under a final
    name; the partial download and its resume state are kept. Once the filler is deleted, the rerun
    fetches exactly the bytes the state did not record, and the blob verifies."""
    disk = tmpfs("4m")
    store = Store(disk.path / "models")
    name, model, size = add_model(registry, 3 * MB)
    check = download.Downloader.check_space

    def check_then_fill(self, items):
        check(self, items)
        disk.fill(leave=1_600_000)

    monkeypatch.setattr(download.Downloader, "check_space", check_then_fill)
    with pytest.raises(DiskError) as caught:
        list(store.pull(name, insecure=True))
    message = str(caught.value)
    assert "no space left on device while downloading blob sha256:" in message, message
    # (whichever layer was being written when the disk filled: the model's, or its small params layer)
    assert str(store.blobs.dir) in message and re.search(r"of [\d.]+ (MB|KB|bytes) written", message), message
    assert "it resumes" in message
    tally.add("ENOSPC mid-download: one clear error")
    assert pulled(store) == [] and leftovers(store) == []
    tally.add("no manifest, nothing half-written under a final name")
    state = json.loads(store.blobs.partial(model).with_name(store.blobs.partial(model).name + ".json").read_text())
    kept = sum(p["completed"] for p in state["parts"])
    assert kept > 0, state  # the resume state was saved on the full disk
    settle(registry)
    before = registry.served[model]

    monkeypatch.setattr(download.Downloader, "check_space", check)
    (disk.path / "filler").unlink()
    assert list(store.pull(name, insecure=True))[-1] == {"status": "success"}
    assert registry.served[model] - before == size - kept
    assert store.blobs.verify(model) and store.resolve(name).files["model"] == str(store.blobs.path(model))
    tally.add(f"resumed: fetched {size - kept} of {size} bytes again")


def test_the_cli_and_api_pull_report_a_full_disk_in_one_line(tmpfs, registry, imgscribe_cmd, cli_env, monkeypatch, tally):
    """``imgscribe pull`` into a store on a full tmpfs exits 1 with one ``Error:`` line and no
    traceback; ``/api/pull`` on a server whose store is on a tmpfs that fills mid-download streams an
    ``{"error": ...}`` line as its last, and neither leaves a manifest."""
    disk = tmpfs("2m")
    name, model, _ = add_model(registry, 4 * MB)
    env = dict(cli_env, IMGSCRIBE_MODELS=str(disk.path / "cli-models"))
    done = subprocess.run([*imgscribe_cmd, "pull", name, "--insecure"], env=env, capture_output=True, text=True, timeout=60)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not enough space" in errors[0]
    tally.add("CLI: exit 1, one Error: line")

    store = Store(disk.path / "api-models")
    check = download.Downloader.check_space
    monkeypatch.setattr(download.Downloader, "check_space", lambda self, items: (check(self, items), disk.fill(600_000)))
    disk.grow("6m")
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as server:
            response = httpx.post(f"{server.url}/api/pull", json={"model": name, "insecure": True}, timeout=60)
    finally:
        scheduler.close()
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert response.status_code == 200 and list(lines[-1]) == ["error"], lines[-3:]
    assert "no space left on device" in lines[-1]["error"] and not any("error" in o for o in lines[:-1])
    assert pulled(store) == [] and leftovers(store) == []
    tally.add("/api/pull: an error line last")


def test_the_cli_pull_stops_when_another_program_fills_the_disk_and_resumes(tmpfs, registry, imgscribe_cmd,
                                                                            cli_env, tally):  # fmt: skip
    """``imgscribe pull`` (a subprocess) of a 4 MB model from a slow registry onto an 8 MB tmpfs that
    the test fills, once the download has started, to 0.5 MB free: exit 1, one ``Error:`` line
    saying no space is left and how much was written, no traceback, no manifest. After the filler
    is deleted the same command resumes and fetches only what the saved state did not hold."""
    disk = tmpfs("8m")
    models = disk.path / "models"
    name, model, size = add_model(registry, 4 * MB)
    registry.faults.delay = 0.003
    env = dict(cli_env, IMGSCRIBE_MODELS=str(models))
    proc = subprocess.Popen([*imgscribe_cmd, "pull", name, "--insecure"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while registry.served[model] < 500_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    disk.fill(leave=500_000)
    registry.faults.delay = 0
    stderr = proc.communicate(timeout=60)[1]
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "no space left on device while downloading" in errors[0] and "it resumes" in errors[0]
    assert pulled(Store(models)) == [] and leftovers(Store(models)) == []
    tally.add("CLI, disk filled by another program: exit 1, one Error: line")
    partial = Store(models).blobs.partial(model)
    kept = sum(p["completed"] for p in json.loads(partial.with_name(partial.name + ".json").read_text())["parts"])
    settle(registry)
    before = registry.served[model]
    (disk.path / "filler").unlink()
    done = subprocess.run([*imgscribe_cmd, "pull", name, "--insecure"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert kept > 0 and registry.served[model] - before == size - kept and Store(models).blobs.verify(model)
    tally.add(f"CLI resumed: {size - kept} of {size} bytes fetched again")


# -- a full disk while translating ------------------------------------------------------------------


def test_a_full_disk_while_translating_keeps_the_download_and_retranslates_only(tmpfs, registry, tally):
    """A single-file vision model (Ollama's gemma3 layout, 1.3 MB of weights) pulled onto a 2 MB tmpfs: the
    download fits, the translation into a model and a projector does not. The pull fails with a
    clear error, no temporary or partial translated file is left and no translation record is
    written; the published blob is kept, so after the remount the rerun translates without fetching
    a byte of it again."""
    disk = tmpfs("2m")
    store = Store(disk.path / "models")
    manifest = registry.add_model("gemma3", "4b", [("model", vision_gguf_with_weights())])
    layer = manifest["layers"][0]["digest"]
    name = f"{registry.host}/library/gemma3:4b"
    with pytest.raises(DiskError, match="cannot write the translation .* free some space and pull again"):
        list(store.pull(name, insecure=True))
    tally.add("ENOSPC while translating: one clear error")
    assert store.blobs.has(layer) and store.blobs.verify(layer) and leftovers(store) == []
    assert not list((store.root / "translations").glob("*")) and pulled(store) == []
    tally.add("published blob kept, no temporary file, no record")
    served = registry.served[layer]
    disk.grow("8m")
    assert list(store.pull(name, insecure=True))[-1] == {"status": "success"}
    assert registry.served[layer] == served
    assert set(store.resolve(name).files) == {"model", "projector"}
    tally.add("rerun translated without downloading again")


# -- a full disk while writing batch results --------------------------------------------------------


def vision_gguf_with_weights(arch: str = "gemma3") -> bytes:
    """Ollama's single-file layout (as ``ollama_vision_gguf``) with 1.3 MB of tensors, which the
    translation copies (padding is not copied)."""
    meta = {"general.architecture": arch, "general.name": f"tiny-{arch}", f"{arch}.context_length": 2048,
            f"{arch}.embedding_length": 16, f"{arch}.vision.block_count": 1, f"{arch}.vision.embedding_length": 8,
            "general.file_type": 15, "tokenizer.ggml.tokens": ["<s>", "</s>", "a"], "tokenizer.chat_template": "{{ messages }}"}
    tensors = {"token_embd.weight": (16, 3), "blk.0.attn_q.weight": (16, 16), "blk.0.ffn_up.weight": (16, 20000),
               "v.blk.0.attn_q.weight": (8, 8), "mm.input_projection.weight": (8, 16)}
    return gguf(meta, 1000, 5, tensors)  # fmt: skip


def _records(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a half line at the end"
    return [json.loads(line) for line in data.splitlines()]  # each line a whole JSON object


@pytest.mark.parametrize("outputs", [["out.jsonl"], ["out.jsonl", "out.csv"]])
def test_a_full_disk_under_the_batch_output_stops_cleanly_and_resumes(tmpfs, tmp_path, imgscribe_cmd, cli_env,
                                                                      outputs, tally):  # fmt: skip
    """``imgscribe describe`` of 30 images with its JSON-lines output (and a CSV) on a 12 KiB tmpfs:
    the run stops with exit 1 and one ``Error:`` line, no traceback; every line already in the
    output is a whole record (no half line) and no temporary file is left. After the tmpfs is
    remounted at 1 MB the same command finishes: each image exactly once, in both outputs."""
    n = 30
    make_echo("disk-echo")
    photos = tmp_path / "photos"
    for i in range(n):
        save_image(photos / f"{i:02}.png", i, size=(16, 16))
    disk = tmpfs("12k")
    args = [*imgscribe_cmd, "describe", str(photos), "-m", "disk-echo", "-j", "2"]
    for out in outputs:
        args += ["--out", str(disk.path / out)]
    env = dict(cli_env, IMGSCRIBE_NUM_PARALLEL="0")
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    errors = [line for line in first.stderr.splitlines() if line.startswith("Error:")]
    assert first.returncode == 1 and len(errors) == 1 and "Traceback" not in first.stderr, first.stderr
    assert "No space left on device" in errors[0] and "it resumes" in errors[0]
    tally.add("stopped: exit 1, one Error: line")
    kept = _records(disk.path / "out.jsonl")
    assert 0 < len(kept) < n and not list(disk.path.glob(".*.tmp"))
    tally.add(f"{len(kept)} whole records kept, no half line")

    disk.grow("1m")
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    records = _records(disk.path / "out.jsonl")
    assert sorted(Path(r["path"]).name for r in records) == [f"{i:02}.png" for i in range(n)]
    assert records[: len(kept)] == kept and not any(r["error"] for r in records)
    if "out.csv" in outputs:
        rows = list(csv.DictReader((disk.path / "out.csv").open()))
        assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in records)
    tally.add("resumed: each image exactly once")


# -- a pull killed and resumed -----------------------------------------------------------------------


def test_a_pull_killed_mid_download_resumes_from_its_partial_file(tmp_path, registry, imgscribe_cmd, cli_env, tally):
    """``imgscribe pull`` of a 10 MB model from a slow registry on loopback, killed with SIGKILL once
    its resume state records 8 MiB; no manifest is left. The rerun sends a Range request from where
    the state says, fetches only the rest, verifies the digest, and the model is listed and shown."""
    models = tmp_path / "models"
    env = dict(cli_env, IMGSCRIBE_MODELS=str(models))
    name, model, size = add_model(registry, 10 * MB)
    registry.faults.delay = 0.004  # 16 KiB each 4 ms: about 2.5 s for the blob
    state = models / "blobs" / (model.replace(":", "-") + "-partial.json")
    proc = subprocess.Popen([*imgscribe_cmd, "pull", name, "--insecure"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    saved, deadline = 0, time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and saved < 8 << 20:
        try:
            saved = sum(p["completed"] for p in json.loads(state.read_text())["parts"])
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and saved >= 8 << 20
    assert pulled(Store(models)) == []  # no half-pulled model
    tally.add("killed mid-download")
    settle(registry)
    first = registry.served[model]
    assert first < size

    registry.faults.delay = 0
    done = subprocess.run([*imgscribe_cmd, "pull", name, "--insecure"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    start = int(registry.downloads(f"/cdn/{model}")[-1].headers["range"].split("=")[1].split("-")[0])
    assert start == saved
    assert registry.served[model] - first == size - start
    tally.add(f"resumed with Range from {start}: {size - start} of {size} bytes fetched again")
    store = Store(models)
    assert store.blobs.verify(model) and not store.blobs.partial(model).exists()
    shown = subprocess.run([*imgscribe_cmd, "show", name], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "llama" in shown.stdout, shown.stdout + shown.stderr
    tally.add("digest verified, model listed")


# -- a batch run killed and resumed ------------------------------------------------------------------


def test_a_batch_killed_at_random_moments_with_parallel_slots_then_rerun(tmp_path, imgscribe_cmd, cli_env, tally):
    """``imgscribe describe`` of 40 images with ``-j 4`` on a model with 4 parallel slots, writing
    JSON lines and CSV, killed with SIGKILL at start-up and then at four seeded random points (when the output holds that many records); after one kill a half
    record is appended to the JSON lines (what a kill in the middle of a write leaves), and the CSV's
    temporary file is left half-written by the kills. After the final rerun: no image missing, none
    twice, no truncated record, the CSV matches, no temporary file remains."""
    n = 40
    make_echo("kill-echo", delay=0.05, parallel=4)
    photos = tmp_path / "photos"
    for i in range(n):
        save_image(photos / f"{i:02}.jpg", i, size=(24, 24), quality=80)
    out, table = tmp_path / "out.jsonl", tmp_path / "out.csv"
    args = [*imgscribe_cmd, "describe", str(photos), "-m", "kill-echo", "-j", "4", "--out", str(out), "--out", str(table)]
    env = dict(cli_env, IMGSCRIBE_NUM_PARALLEL="0")
    rng = random.Random(17)
    thresholds = [0, *sorted(rng.sample(range(2, n - 2), 4))]  # records in the output; 0: as soon as it starts
    kills = 0
    for round_, threshold in enumerate(thresholds):
        kills += run_and_kill(args, env, out, threshold)
        if round_ == 2 and out.exists():
            with open(out, "ab") as f:  # a record cut in the middle
                f.write(b'{"id": "torn", "path": "' + str(photos / "00.jpg").encode() + b'", "respo')
            tally.add("half record injected")
    assert kills >= 3, "the run was really cut short"
    tally.add(f"{kills} kills")
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    records = _records(out)
    names = sorted(Path(r["path"]).name for r in records)
    assert names == [f"{i:02}.jpg" for i in range(n)], "each image exactly once"
    assert len({r["id"] for r in records}) == n and not any(r["error"] for r in records)
    rows = list(csv.DictReader(table.open()))
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in records)
    assert all(r["response"] for r in rows), "no truncated CSV row"
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")], "no temporary file left"
    tally.add("no duplicate, no missing, no truncated record")

