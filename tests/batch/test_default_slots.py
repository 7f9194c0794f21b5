"""``describe`` in process opens the engine's parallel slots by itself, as many as the memory allows
(issue 19); IMGSCRIBE_NUM_PARALLEL or ``--parallel`` decide instead; the server keeps 1.

The echo engine (instant) shows the choice and its bounds; the tiny LLaVA GGUF through a real
llama-server shows the slots opened (``-np``) and kept busy (llama-server's /metrics).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imgscribe import config, hardware
from imgscribe.batch.job import Job, execute
from imgscribe.batch.prompts import Prompt
from imgscribe.client import LocalClient
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.types import Options

from .conftest import make_echo, save_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
from _llamacpp_support import llama_server_binary  # noqa: E402

HINT = "IMGSCRIBE_NUM_PARALLEL or --parallel to change"


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    monkeypatch.delenv("IMGSCRIBE_NUM_PARALLEL", raising=False)
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    monkeypatch.setattr(config, "_overrides", {})


def photos(folder: Path, n: int) -> Path:
    for i in range(n):
        save_image(folder / f"p{i}.jpg", i, size=(64, 48), quality=90)
    return folder


def describe(scheduler: Scheduler, folder: Path, model: str, **job) -> tuple[object, list[str]]:
    notes: list[str] = []
    run = Job(sources=[str(folder)], model=model, prompts=[Prompt("response", "Describe it.")], **job)
    stats, _ = execute(run, [LocalClient(scheduler)], on_note=notes.append)
    return stats, notes


# -- the echo engine: the choice and who may override it ---------------------------------------------


def test_describe_opens_every_slot_of_the_engine_and_keeps_them_busy(tmp_path):
    model = make_echo("echo-slow", delay=0.05, tokens=4)  # 4 slots (echo's default), 0.2 s an answer
    scheduler = Scheduler(Store())
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 12), model, outputs=[str(tmp_path / "o.jsonl")])
        runner = scheduler.loaded_runner(model)
        assert stats.done == 12 and runner.max_active == 4, runner.max_active
        assert notes == [f"describing 4 images at a time (the model's slots; {HINT})"]
        assert stats.at_once == 4 and ", 4 at a time" in stats.summary()
        # the run's choice does not outlive it: the scheduler and the process are as before
        assert scheduler.num_parallel == 1 and config._overrides == {} and config.settings().num_parallel == 1
    finally:
        scheduler.close()


@pytest.mark.parametrize("how", ["env", "flag", "scheduler"])
def test_one_slot_when_the_user_says_so(tmp_path, monkeypatch, how):
    model = make_echo("echo-slow", delay=0.02, tokens=4)
    if how == "env":
        monkeypatch.setenv("IMGSCRIBE_NUM_PARALLEL", "1")
    scheduler = Scheduler(Store(), num_parallel=1) if how == "scheduler" else Scheduler(Store())
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 6), model, parallel=1 if how == "flag" else None)
        assert stats.done == 6 and scheduler.loaded_runner(model).max_active == 1
        assert notes == ([f"describing 1 image at a time (the model's slots; {HINT})"] if how == "flag" else [])
    finally:
        scheduler.close()


def test_parallel_n_opens_up_to_n_slots(tmp_path):
    model = make_echo("echo-slow", delay=0.05, tokens=4)
    scheduler = Scheduler(Store())
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 8), model, parallel=2)
        assert stats.done == 8 and scheduler.loaded_runner(model).max_active == 2 and stats.at_once == 2
        assert notes == [f"describing 2 images at a time (the model's slots; {HINT})"]
    finally:
        scheduler.close()


def test_the_help_of_serve_says_why_it_keeps_one_slot(capsys, monkeypatch):
    from imgscribe.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "The server keeps 1, Ollama's default, because each llama-server slot holds num_ctx tokens" in out
    assert "`imgscribe describe` in process opens as many slots as the memory allows" in out


# -- llama-server: the slots it opens, their memory, and the server's default ---------------------------


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny LLaVA-1.5 (imgscribe.testing) as an f32 GGUF and its mmproj (about 30 s once)."""
    llama_server_binary()  # skips locally (fails in CI) without the binary
    from imgscribe import testing
    from imgscribe.engines.llamacpp.convert import convert

    root = tmp_path_factory.mktemp("tiny-llava")
    testing.build("llava15", root / "hf")
    result = convert(root / "hf", root / "gguf", outtype="f32")
    return result.model, result.mmproj


def gguf_store(tiny_gguf, name: str = "tiny") -> tuple[Store, str]:
    from imgscribe.store.import_gguf import manifest_for_gguf

    store = Store()
    manifest = manifest_for_gguf(name, *tiny_gguf)
    manifest.parameters.update(num_ctx=1024)
    manifest.engine_settings.update(ignore_eos=True)  # random weights: answers of a fixed length
    store.create(name, manifest)
    return store, name


def _busy_per_decode(runner) -> float:
    values = {}
    for line in runner.metrics_text().splitlines():
        if line.startswith("llamacpp:") and " " in line:
            key, value = line.split(" ", 1)
            values[key.removeprefix("llamacpp:")] = float(value)
    return values["n_busy_slots_per_decode"]


def _np(runner) -> int:
    """The slots llama-server was started with (its ``-np``)."""
    args = runner.process.args
    return int(args[args.index("-np") + 1])


def test_a_gguf_model_is_described_four_at_a_time(tiny_gguf, tmp_path):
    store, name = gguf_store(tiny_gguf)
    scheduler = Scheduler(store)
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 8), name, options=Options(num_predict=48))
        runner = scheduler.loaded_runner(name)
        assert stats.done == 8 and stats.failed == 0
        assert notes == [f"describing 4 images at a time (llama-server slots; {HINT})"]
        assert runner.parallel == 4 and _np(runner) == 4 and [r.slots for r in scheduler.ps()] == [4]
        assert _busy_per_decode(runner) > 1.5  # decoded together: several slots busy in each decode
    finally:
        scheduler.close()


def _available_for(budget: int) -> int:
    """The RAM available whose budget (memory.ram_budget: less the system's reserve) is ``budget``."""
    from imgscribe.memory import ram_budget

    low, high = budget, 4 * budget + (2 << 30)
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if ram_budget(mid) < budget else (low, mid)
    return low


def test_memory_for_two_slots_opens_two_and_says_why(tiny_gguf, tmp_path, monkeypatch):
    from imgscribe.engines.llamacpp.budget import kv_bytes
    from imgscribe.memory import estimate_manifest

    store, name = gguf_store(tiny_gguf)
    manifest = store.resolve(name)
    per_slot = kv_bytes(tiny_gguf[0], 2048) - kv_bytes(tiny_gguf[0], 1024)
    available = _available_for(estimate_manifest(manifest).total + per_slot * 3 // 2)  # room for 1.5 slots more
    monkeypatch.setattr(hardware, "probe_ram", lambda *a, **k: (available, available, []))
    scheduler = Scheduler(store)
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 3), name, options=Options(num_predict=4))
        runner = scheduler.loaded_runner(name)
        assert stats.done == 3 and runner.parallel == 2 and _np(runner) == 2
        assert len(notes) == 1 and notes[0].startswith("describing 2 images at a time (llama-server slots: "
                                                       "the memory free holds the KV cache of 2 of 4 (")
    finally:
        scheduler.close()


def test_one_slot_for_gguf_when_asked_and_for_the_server(tiny_gguf, tmp_path, monkeypatch):
    store, name = gguf_store(tiny_gguf)
    scheduler = Scheduler(store)  # what `imgscribe serve` makes: the process's settings
    try:
        scheduler.load(name)
        runner = scheduler.loaded_runner(name)
        assert runner.parallel == 1 and _np(runner) == 1 and [r.slots for r in scheduler.ps()] == [1]
    finally:
        scheduler.close()
    scheduler = Scheduler(store)
    try:
        stats, notes = describe(scheduler, photos(tmp_path / "p", 2), name, parallel=1, options=Options(num_predict=4))
        runner = scheduler.loaded_runner(name)
        assert stats.done == 2 and runner.parallel == 1 and _np(runner) == 1
        assert notes == [f"describing 1 image at a time (llama-server slots; {HINT})"]
    finally:
        scheduler.close()


def test_the_cli_says_its_choice_once(tiny_gguf, tmp_path, imgscribe_cmd, cli_env):
    gguf_store(tiny_gguf)
    cli_env.pop("IMGSCRIBE_NUM_PARALLEL", None)
    result = subprocess.run([*imgscribe_cmd, "describe", str(photos(tmp_path / "p", 2)), "-m", "tiny",
                             "-o", "num_predict=4", "--out", str(tmp_path / "o.jsonl")],
                            capture_output=True, text=True, env=cli_env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"describing 4 images at a time (llama-server slots; {HINT})") == 1, result.stderr
    assert "described 2 image(s)" in result.stderr and ", 4 at a time" in result.stderr
    cli_env["IMGSCRIBE_NUM_PARALLEL"] = "1"
    result = subprocess.run([*imgscribe_cmd, "describe", str(tmp_path / "p"), "-m", "tiny", "--overwrite",
                             "-o", "num_predict=4", "--out", str(tmp_path / "o.jsonl")],
                            capture_output=True, text=True, env=cli_env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "at a time" not in result.stderr  # the setting decided: nothing to say


def test_the_slots_fit_the_memory_unless_the_check_is_off(tiny_gguf, monkeypatch):
    from imgscribe.engines.llamacpp.slots import fit_slots
    from imgscribe.memory import estimate_manifest

    store, name = gguf_store(tiny_gguf)
    manifest = store.resolve(name)
    just_the_model = _available_for(estimate_manifest(manifest).total)
    assert fit_slots(manifest, available=just_the_model).slots == 1  # no room for a second slot's KV cache
    assert fit_slots(manifest, available=64 << 30).slots == 4 and not fit_slots(manifest, available=64 << 30).limited
    assert fit_slots(manifest, 6, available=64 << 30).slots == 6  # --parallel 6: up to 6
    unknown = fit_slots(manifest, available=0)
    assert unknown.slots == 1 and unknown.reason() == "the memory free is unknown"
    config.configure(ignore_memory=True)  # --force: all of them, whatever the memory
    assert fit_slots(manifest, available=just_the_model).slots == 4
