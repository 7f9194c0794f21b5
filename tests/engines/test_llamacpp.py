"""The llamacpp engine, for real: tiny checkpoints of every family llama.cpp's converter supports,
converted with llama.cpp's own converter, served by the llama-server built by
scripts/build-llama-server.sh, asked through imgscribe's Ollama HTTP API with a real photo.

Without the binary these tests skip locally (with the reason) and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import (  # noqa: E402
    LLAMA_FAMILIES,
    SERVES,
    alive,
    checkpoint,
    child_pids,
    converted,
    gguf_pair,
    live_server,
    llama_server_binary,
    ollama_chat,
    photo_b64,
)

from imgscribe.engines.llamacpp import LlamaCppRunner  # noqa: E402
from imgscribe.engines.llamacpp.binary import server_binary  # noqa: E402
from imgscribe.engines.llamacpp.process import live_children  # noqa: E402
from imgscribe.errors import EngineFailed, Unsupported  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402

PROMPT = "Describe this image."


@pytest.fixture(scope="module")
def binary() -> Path:
    return llama_server_binary()


def _store(tmp_path: Path, family: str, name: str | None = None, **settings) -> tuple[Store, str]:
    model, mmproj = gguf_pair(family)
    store = Store(tmp_path / "models")
    name = name or family.replace("_", "-")
    manifest = manifest_for_gguf(name, model, mmproj)
    manifest.engine_settings.update(settings)
    store.create(name, manifest)
    return store, name


def _transformers_prompt_tokens(family: str, prompt: str = PROMPT) -> int:
    """How many prompt tokens transformers' own processor makes of the same request."""
    from PIL import Image

    from imgscribe import testing
    from imgscribe.engines.transformers import compat
    from imgscribe.engines.transformers.families import detect, read_config
    from imgscribe.engines.transformers.loading import load_processor

    compat.install()
    path = checkpoint(family)
    processor = load_processor(path, detect(read_config(path)))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.open(testing.photo_path("chelsea")).convert("RGB")
    return int(processor(images=[image], text=[text], return_tensors="pt")["input_ids"].shape[1])


# llama-server's prompt token count minus transformers' for the same request, where they differ
# (measured with these tiny configs and the chelsea photo; reasons checked token by token):
PROMPT_TOKEN_DELTA = {
    # llama.cpp puts the image where the template's image part is, without the "\n" LLaVA's
    # template writes after "<image>"
    "llava15": -1,
    "llava_llama3": -1,
    # measured, not traced token by token: the Phi-3 template's newlines around "<image>" are
    # tokenised differently when llama.cpp splits the text at the image
    "llava_phi3": -4,
    # llama.cpp's anyres packs the base image and both 336 px tiles whole (3 x 576 tokens); transformers
    # unpads the tiles to the photo's aspect and adds a newline token per row (576 + 888)
    "llava_next": 263,
    # transformers wraps the image in "\n\n<start_of_image>...<end_of_image>\n\n", llama.cpp without the newlines
    "gemma3": -4,
    # transformers adds "<begin_of_image>"/"<end_of_image>" and the template's "\n" around the image
    "janus": -3,
    # the template writes "User:" before an image but "User: " before text, and llama.cpp hands it the
    # message as text
    "idefics3": 1,
    "smolvlm": 1,
    # Llama 4: llama.cpp tiles on its own 3x3 candidate grid (clip.cpp set_llava_uhd_res_candidates),
    # not the processor's max_patches (4 here): 3x2 tiles + overview = 7 x 16 tokens, with no tile
    # separators and no "<|image|>"; transformers: 2x2 + global = 5 x 16, 4 separators, "<|image|>"
    "llama4": 27,
    # Pixtral tiling: llama.cpp's resize to the patch grid differs from transformers' for this photo
    "pixtral": -19,
    "mistral3": -25,
}


def _final(lines: list[dict]) -> dict:
    assert lines, "no answer"
    errors = [line["error"] for line in lines if "error" in line]
    assert not errors, errors
    assert lines[-1]["done"] is True
    return lines[-1]


# -- the binary ----------------------------------------------------------------------------------------


def test_missing_binary_names_the_build_script(monkeypatch, tmp_path):
    monkeypatch.delenv("IMGSCRIBE_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(EngineFailed, match="scripts/build-llama-server.sh"):
        server_binary()


def test_env_points_at_a_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGSCRIBE_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(EngineFailed, match="IMGSCRIBE_LLAMA_SERVER"):
        server_binary()
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMGSCRIBE_LLAMA_SERVER", str(fake))
    assert server_binary() == fake


def test_built_binary_runs(binary):
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "11434" in out.stdout + out.stderr


# -- every family: convert -> llama-server -> Ollama API, streamed; two requests in parallel -----------


@pytest.mark.slow
@pytest.mark.parametrize("family", SERVES)
def test_family_through_the_ollama_api(family, binary, tmp_path):
    # ignore_eos: random weights may end an answer at once; both must run long enough to overlap
    store, name = _store(tmp_path, family, num_parallel=2, ignore_eos=True)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            # image_max_tokens: llama.cpp's own count of the whole photo, not the CPU's default budget
            # (which gives LLaVA-1.6 the overview alone; test_llamacpp_budget.py tests budgets)
            lines, _ = ollama_chat(live.url, name, PROMPT, photo_b64("chelsea"),
                                   options={"num_predict": 12, "temperature": 0, "seed": 1,
                                            "image_max_tokens": 100_000})  # fmt: skip
            final = _final(lines)
            text = "".join(line["message"]["content"] for line in lines)
            if text:  # (random Mistral 3 weights emit only special tokens: no text at all)
                assert len(lines) >= 2  # streamed: text chunks, then the final object
            assert final["done_reason"] in ("stop", "length")
            assert final["eval_count"] >= 1 or final["done_reason"] == "stop"
            for key in ("total_duration", "prompt_eval_duration"):
                assert final[key] > 0, key
            expected = _transformers_prompt_tokens(family) + PROMPT_TOKEN_DELTA.get(family, 0)
            assert final["prompt_eval_count"] == expected

            # two at once: both served by one llama-server in parallel slots (batched decodes)
            runner = scheduler.runner(name)
            assert runner.parallel >= 2
            results: dict[int, tuple[list[dict], float]] = {}

            image = photo_b64("coffee")
            together = threading.Barrier(2)
            errors: dict[int, BaseException] = {}

            def ask(i: int) -> None:
                together.wait()
                try:  # 1024 tokens each: long enough to overlap, even on a loaded 2-core machine
                    results[i] = ollama_chat(live.url, name, f"{PROMPT} ({i})", image, timeout=600,
                                             options={"num_predict": 1024, "temperature": 0.8, "seed": i})  # fmt: skip
                except BaseException as exc:  # reported below, not lost in the thread
                    errors[i] = exc

            before = _busy_slot_decodes(runner)
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            assert not errors, errors
            for i in range(2):
                _final(results[i][0])
            assert len(live_children()) >= 1
            after = _busy_slot_decodes(runner)
            assert _busy_per_decode(before, after) > 1.1, (before, after)  # decoded together, batched
    finally:
        scheduler.close()


def _busy_slot_decodes(runner: LlamaCppRunner) -> dict:
    """llama-server's /metrics: decode calls, and busy slots summed over them."""
    values = {}
    for line in runner.metrics_text().splitlines():
        if line.startswith("llamacpp:") and " " in line:
            key, value = line.split(" ", 1)
            values[key.removeprefix("llamacpp:")] = float(value)
    n = values.get("n_decode_total", 0.0)
    return {"n_decode": n, "busy": values.get("n_busy_slots_per_decode", 0.0) * max(n, 1.0)}


def _busy_per_decode(before: dict, after: dict) -> float:
    """Average busy slots per llama_decode() call between two readings: above 1 when requests were
    decoded together in one batch."""
    return (after["busy"] - before["busy"]) / max(after["n_decode"] - before["n_decode"], 1.0)


@pytest.mark.parametrize("family", [f for f, what in LLAMA_FAMILIES.items() if what != "serves"])
def test_families_llama_cpp_cannot_serve_say_why(family, binary, tmp_path):
    """Each family llama.cpp b11434 cannot run fails with its exact reason, never silently."""
    result = converted(family)
    assert isinstance(result, BaseException), f"{family} now converts: move it to 'serves'"
    assert "llama.cpp" in str(result) or "not supported" in str(result)
    if LLAMA_FAMILIES[family] == "unsupported":
        assert isinstance(result, Unsupported), result


def test_a_model_llama_server_cannot_load_is_a_clear_error(binary, tmp_path):
    model, mmproj = gguf_pair("qwen2_vl")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # the header reads; the tensors do not
    store = Store(tmp_path / "models")
    store.create("broken", manifest_for_gguf("broken", broken, mmproj))
    scheduler = Scheduler(store)
    try:
        with pytest.raises(EngineFailed, match="llama-server for 'broken:latest' exited") as caught:
            list(scheduler.chat(ChatRequest("broken", [Message("user", PROMPT)])))
        assert "not within the file bounds" in str(caught.value)  # llama-server's own reason, from its log
    finally:
        scheduler.close()
    assert not live_children()


# -- the child process ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_mid_request_is_a_clear_error_then_restarts(binary, tmp_path):
    # ignore_eos: the random model may end its answer after 3 tokens, all sent before the kill lands.
    # Even so, the tiny model can fill its whole context (a few thousand tokens) before the kill lands,
    # the server having read the answer from llama-server faster than the client reads lines: then the
    # answer ended normally, the process is dead all the same, and the test kills the next one (at most
    # three tries). Each kill is one restart.
    store, name = _store(tmp_path, "qwen2_vl", ignore_eos=True)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            _final(ollama_chat(live.url, name, PROMPT, photo_b64(), options={"num_predict": 8})[0])
            runner = scheduler.runner(name)
            first_pid = runner.process.pid
            body = {"model": name, "messages": [{"role": "user", "content": PROMPT, "images": [photo_b64()]}],
                    "options": {"num_predict": 100000, "temperature": 1.0}}  # fmt: skip
            killed: list[int] = []
            for _ in range(3):
                lines = []
                with httpx.Client(timeout=60, trust_env=False) as client:
                    with client.stream("POST", live.url + "/api/chat", json=body) as r:
                        assert r.status_code == 200
                        for line in r.iter_lines():
                            if not line.strip():
                                continue
                            lines.append(json.loads(line))
                            if len(lines) == 3:  # (the runner of now: a dead one is forgotten, another loaded)
                                pid = scheduler.loaded_runner(name).process.pid
                                os.kill(pid, signal.SIGKILL)
                                killed.append(pid)
                if "error" in lines[-1]:
                    break
                assert lines[-1]["done"], lines[-3:]  # the whole answer came before the kill landed
            assert "error" in lines[-1], lines[-3:]
            assert "llama-server" in lines[-1]["error"] and "SIGKILL" in lines[-1]["error"], lines[-1]
            assert "restarted" in lines[-1]["error"]
            assert not any(alive(pid) for pid in killed)

            final = _final(ollama_chat(live.url, name, PROMPT, photo_b64(), options={"num_predict": 8})[0])
            assert final["prompt_eval_count"] > 0  # restarted
            fresh = scheduler.loaded_runner(name)  # the scheduler forgot the dead runner and loaded the model again
            assert fresh is not runner and fresh.process.pid not in killed
    finally:
        scheduler.close()
    assert not alive(first_pid)


def test_cancel_stops_the_slot(binary, tmp_path):
    # ignore_eos: an answer that ended by itself would free the slot without any cancel
    store, name = _store(tmp_path, "qwen2_vl", num_parallel=1, ignore_eos=True)
    scheduler = Scheduler(store, num_parallel=0)
    try:
        from imgscribe.images import intake
        from imgscribe.testing import photo_path

        request = ChatRequest(name, [Message("user", PROMPT, [intake(photo_path())])],
                              options=Options(num_predict=100000, temperature=1.0))  # fmt: skip
        cancel = threading.Event()
        chunks = scheduler.chat(request, cancel)
        got = [next(chunks) for _ in range(3)]
        assert all(c.text is not None for c in got)
        cancel.set()
        rest = list(chunks)
        assert rest and rest[-1].done and rest[-1].done_reason == "cancel"
        runner = scheduler.runner(name)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            slots = httpx.get(runner.process.url + "/slots", headers=runner.process.headers).json()
            if not any(s.get("is_processing") for s in slots):
                break
            time.sleep(0.05)
        else:
            pytest.fail("llama-server kept generating after the client went")
        # a second request on the single slot is served at once
        final = list(scheduler.chat(ChatRequest(name, [Message("user", "hi")], options=Options(num_predict=4))))[-1]
        assert final.done and final.metrics.eval_count <= 4
    finally:
        scheduler.close()


def test_runner_metrics_options_json_and_text_only(binary, tmp_path):
    from imgscribe.images import intake
    from imgscribe.testing import photo_path

    model, mmproj = gguf_pair("qwen2_vl")
    vision = manifest_for_gguf("qwen", model, mmproj)
    vision.engine_settings["num_parallel"] = 2
    runner = LlamaCppRunner(vision)
    try:
        image = intake(photo_path("rocket"))  # a JPEG: its bytes go as they are
        req = ChatRequest("qwen", [Message("user", PROMPT, [image])], options=Options(num_predict=5, temperature=0, seed=3))
        chunks = list(runner.chat(req))
        final = chunks[-1]
        assert final.done and final.metrics.eval_count <= 5
        if final.metrics.eval_count == 5:
            assert final.done_reason == "length"
        m = final.metrics
        assert m.prompt_eval_count > 100 and m.prompt_eval_duration > 0 and m.total_duration > 0
        again = list(runner.chat(req))
        assert "".join(c.text for c in again) == "".join(c.text for c in chunks)  # seed + temperature 0

        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        for fmt in (schema, "json"):
            chunks = list(runner.chat(ChatRequest("qwen", [Message("user", "Answer in JSON.")], format=fmt,
                                                  options=Options(num_predict=200))))  # fmt: skip
            text, final = "".join(c.text for c in chunks), chunks[-1]
            assert text.lstrip().startswith("{"), text  # constrained by the schema's grammar
            if final.done_reason == "stop":  # complete: valid JSON (cut short by num_predict it is not)
                value = json.loads(text)
                assert isinstance(value, dict) and (fmt == "json" or isinstance(value["ok"], bool))
    finally:
        runner.close()
    assert not runner.process.running

    text_only = manifest_for_gguf("qwen-text", model)
    assert "vision" not in text_only.info.capabilities
    runner = LlamaCppRunner(text_only)
    try:
        with pytest.raises(Unsupported, match="projector"):
            runner.chat(ChatRequest("qwen-text", [Message("user", PROMPT, [intake(photo_path())])]))
        assert list(runner.chat(ChatRequest("qwen-text", [Message("user", "hi")], options=Options(num_predict=3))))[-1].done
    finally:
        runner.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_llama_server_left_after_the_server_exits(how, binary, tmp_path):
    """`imgscribe serve` with a llamacpp model loaded: stopped (SIGTERM) or killed outright
    (SIGKILL: no atexit, no cleanup) it leaves no llama-server behind."""
    store, name = _store(tmp_path, "gemma3")
    port = _free_port()
    env = dict(os.environ, IMGSCRIBE_MODELS=str(store.root), IMGSCRIBE_HOST=f"127.0.0.1:{port}")
    server = subprocess.Popen([sys.executable, "-m", "imgscribe", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/version", timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"imgscribe serve did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        _final(ollama_chat(url, name, PROMPT, photo_b64())[0])
        children = [p for p in child_pids(server.pid) if "llama-server" in _cmdline(p)]
        assert len(children) == 1, [_cmdline(p) for p in child_pids(server.pid)]
        child = children[0]
        server.send_signal(getattr(signal, how))
        server.wait(30)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), f"llama-server {child} outlived the server ({how})"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _free_port() -> int:
    from imgscribe.engines.llamacpp.process import free_port

    return free_port()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
