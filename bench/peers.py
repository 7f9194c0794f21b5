"""imgscribe beside what users would run instead, in one run, same model files, image and options.

    python bench/peers.py [--requests 40] [--images 100] [--threads 2] [--skip-transformers] [--quick]

(a) **llama-server**: a raw ``llama-server`` (its own OpenAI ``/v1/chat/completions``), started
    here with the binary and the command line imgscribe's llamacpp engine builds
    (``runner.server_args``: the same GGUF + mmproj, threads, context and slots), against
    ``imgscribe serve`` on the same files (``/v1/chat/completions`` with the same body, and Ollama's
    ``/api/chat``): per-request p50/p99 of a short answer (8 tokens, temperature 0, seed 0,
    ``ignore_eos`` on both) about a ~69 KB JPEG, one client, the rows taken in turns. The same
    image each time: both llama-servers reuse its cached prompt alike (``cache_prompt``), so the
    row is the overhead around the model. The tiny LLaVA GGUF
    (``imgscribe.testing``) always, where overhead dominates; without ``--quick`` also the
    Qwen2-VL-2B-dimension Q4_K_M model of ``bench/engines.py`` (built once and cached).
(b) **transformers**: plain ``generate()`` with the family's processor against imgscribe's
    transformers engine (in-process ``Scheduler.chat``: intake included, as the plain side's
    ``Image.open``) on the same tiny checkpoint, same images (a new one for each request, so no
    side answers from a cache), same ``max_new_tokens``, greedy.
(c) **a batch**: a plain Python loop of HTTP calls (a thread pool of 4, httpx) to a raw
    llama-server started with ``-np 4`` against ``imgscribe describe --host`` (the CLI, its start
    included) served by ``imgscribe serve`` whose model has 4 slots, on the same N images.

Every figure is printed beside its peer from the same run, as a ratio (imgscribe / peer; 1.00x
is parity, higher is slower). ``--quick``: the tiny models only, 8 requests a row, 8 images.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from _serve import start_server
from server import percentile

PROMPT = "Describe this image."
TOKENS = 8
SEED = 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def jpeg(i: int = 0) -> bytes:
    """A real photo as a ~69 KB JPEG; ``i`` varies its size a little, so every image is distinct."""
    from imgscribe import testing

    return testing.photo_jpeg((880 - 2 * i, 585 - i), quality=85)


# -- models ------------------------------------------------------------------------------------------


def tiny_llava(root: Path) -> tuple[Path, Path, Path]:
    """(HF checkpoint, f32 GGUF, mmproj) of the tiny LLaVA-1.5 the tests use."""
    from imgscribe import testing
    from imgscribe.engines.llamacpp.convert import convert

    src = root / "llava15"
    if not (src / "config.json").is_file():
        log("building the tiny LLaVA-1.5 checkpoint ...")
        testing.build("llava15", src)
    result = convert(src, root / "llava15-gguf", outtype="f32") if not (root / "llava15-gguf").is_dir() else None
    model = result.model if result else next((root / "llava15-gguf").glob("llava15-*.gguf"))
    mmproj = result.mmproj if result else next((root / "llava15-gguf").glob("mmproj-*.gguf"))
    return src, model, mmproj


def gguf_manifest(name: str, model: Path, mmproj: Path, threads: int, slots: int):
    from imgscribe.store.import_gguf import manifest_for_gguf

    manifest = manifest_for_gguf(name, model, mmproj)
    manifest.parameters.update(num_ctx=4096, num_thread=threads)
    manifest.engine_settings.update(num_parallel=slots, ignore_eos=True)
    return manifest


# -- a raw llama-server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(manifest, slots: int, log_dir: Path) -> tuple[subprocess.Popen, str]:
    """llama-server with exactly the arguments imgscribe's engine gives it, on a free port."""
    from imgscribe.engines.llamacpp.binary import server_binary
    from imgscribe.engines.llamacpp.runner import server_args

    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    args = [str(server_binary()), *server_args(manifest, slots, log_dir), "--host", "127.0.0.1", "--port", str(port)]
    out = open(log_dir / f"raw-llama-server-{slots}.log", "wb")  # noqa: SIM115  (the child writes it)
    proc = subprocess.Popen(args, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"llama-server did not start: {(log_dir / f'raw-llama-server-{slots}.log').read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("llama-server did not start within 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def openai_body(model: str, data: bytes) -> dict:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return {"model": model, "max_tokens": TOKENS, "temperature": 0, "seed": SEED, "ignore_eos": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}  # fmt: skip


def ollama_body(model: str, data: bytes) -> dict:
    return {"model": model, "stream": False, "options": {"num_predict": TOKENS, "temperature": 0, "seed": SEED},
            "messages": [{"role": "user", "content": PROMPT, "images": [base64.b64encode(data).decode()]}]}  # fmt: skip


def latencies(client: httpx.Client, url: str, body: dict, n: int) -> list[float]:
    """Seconds for each of ``n`` requests, one at a time (after two unmeasured ones)."""
    out = []
    for i in range(n + 2):
        start = time.perf_counter()
        r = client.post(url, json=body)
        elapsed = time.perf_counter() - start
        if r.status_code != 200:
            raise SystemExit(f"{url}: HTTP {r.status_code}: {r.text[:500]}")
        if i >= 2:
            out.append(elapsed)
    return out


def interleaved(client: httpx.Client, rows: dict[str, tuple[str, dict]], n: int) -> dict[str, list[float]]:
    """Each row's latencies, measured in turns of a few requests (a shared machine's load falls on
    every row alike)."""
    out: dict[str, list[float]] = {label: [] for label in rows}
    turn = max(1, n // 4)
    while any(len(v) < n for v in out.values()):
        for label, (url, body) in rows.items():
            out[label] += latencies(client, url, body, min(turn, n - len(out[label])))
    return out


# -- (a) ------------------------------------------------------------------------------------------------


def bench_llama(label: str, model: Path, mmproj: Path, args, work: Path, requests: int = 0) -> list[list[str]]:
    from imgscribe.store import Store

    name = "peer-" + label.split()[0].lower()
    manifest = gguf_manifest(name, model, mmproj, args.threads, 1)
    models = work / f"models-{name}"
    models.mkdir(exist_ok=True)
    Store(models).create(name, manifest)
    data = jpeg()
    raw, raw_url = start_llama_server(manifest, 1, work / "logs")
    serve, url = start_server(models)
    try:
        with httpx.Client(timeout=600) as client:
            lat = interleaved(client, {
                "llama-server /v1/chat/completions": (raw_url + "/v1/chat/completions", openai_body(name, data)),
                "imgscribe /v1/chat/completions": (url + "/v1/chat/completions", openai_body(name, data)),
                "imgscribe /api/chat": (url + "/api/chat", ollama_body(name, data)),
            }, requests or args.requests)  # fmt: skip
    finally:
        stop(serve)
        stop(raw)
    base = percentile(lat["llama-server /v1/chat/completions"], 50)
    rows = [[f"(a) {label}, {len(data) // 1000} KB JPEG, {TOKENS} tokens", "p50 ms", "p99 ms", "ratio p50"]]
    for row, values in lat.items():
        p50 = percentile(values, 50)
        rows.append([f"  {row}", f"{p50 * 1e3:.1f}", f"{percentile(values, 99) * 1e3:.1f}", f"{p50 / base:.2f}x"])
    return rows


# -- (b) ------------------------------------------------------------------------------------------------


def bench_transformers(src: Path, args, work: Path) -> list[list[str]]:
    import io

    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from imgscribe.images import intake
    from imgscribe.scheduler import Scheduler
    from imgscribe.store import Store
    from imgscribe.store.importer import describe_hf_folder
    from imgscribe.types import ChatRequest, Message, Options

    torch.set_num_threads(args.threads)
    # a new image for every request: neither side may answer from a cache of the last one
    images = iter([jpeg(i) for i in range(4 + 2 * args.requests)])
    processor = AutoProcessor.from_pretrained(src)
    model = LlavaForConditionalGeneration.from_pretrained(src).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]

    def plain() -> None:
        image = Image.open(io.BytesIO(next(images))).convert("RGB")
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(images=[image], text=[text], return_tensors="pt")
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=TOKENS, do_sample=False)

    manifest = describe_hf_folder(src)
    models = work / "models-transformers"
    store = Store(models)
    store.create("peer-transformers", manifest)
    scheduler = Scheduler(store, num_parallel=0)
    request = lambda: ChatRequest("peer-transformers", [Message("user", PROMPT, [intake(next(images))])],  # noqa: E731
                                  options=Options(num_predict=TOKENS, temperature=0, seed=SEED))  # fmt: skip

    def engine() -> None:
        for _ in scheduler.chat(request()):
            pass

    try:
        lat: dict[str, list[float]] = {"transformers generate()": [], "imgscribe transformers engine": []}
        for fn in (plain, engine, plain, engine):  # warm-up: load, first run
            fn()
        for _ in range(args.requests):
            for label, fn in zip(lat, (plain, engine), strict=True):
                start = time.perf_counter()
                fn()
                lat[label].append(time.perf_counter() - start)
    finally:
        scheduler.close()
    base = percentile(lat["transformers generate()"], 50)
    rows = [[f"(b) tiny LLaVA-1.5 checkpoint, {TOKENS} tokens, greedy, a new JPEG each", "p50 ms", "p99 ms",
             "ratio p50"]]  # fmt: skip
    for label, values in lat.items():
        p50 = percentile(values, 50)
        rows.append([f"  {label}", f"{p50 * 1e3:.1f}", f"{percentile(values, 99) * 1e3:.1f}", f"{p50 / base:.2f}x"])
    return rows


# -- (c) ------------------------------------------------------------------------------------------------


def bench_batch(model: Path, mmproj: Path, args, work: Path) -> list[list[str]]:
    from imgscribe.store import Store

    name = "peer-batch"
    manifest = gguf_manifest(name, model, mmproj, args.threads, 4)
    models = work / "models-batch"
    models.mkdir(exist_ok=True)
    Store(models).create(name, manifest)
    photos = work / "photos"
    photos.mkdir(exist_ok=True)
    paths = []
    for i in range(args.images):
        path = photos / f"{i:04}.jpg"
        path.write_bytes(jpeg(i))
        paths.append(path)

    raw, raw_url = start_llama_server(manifest, 4, work / "logs")
    serve, url = start_server(models)
    try:
        with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=4)) as client:

            def one(path: Path) -> str:
                r = client.post(raw_url + "/v1/chat/completions", json=openai_body(name, path.read_bytes()))
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"]

            one(paths[0])  # warm-up, both sides
            httpx.post(url + "/api/chat", json=ollama_body(name, paths[0].read_bytes()), timeout=600)
            times: dict[str, list[float]] = {"Python loop, 4 threads -> llama-server -np 4": [],
                                             "imgscribe describe --host (CLI start included)": []}  # fmt: skip
            for run in range(args.rounds):
                start = time.perf_counter()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(one, paths))
                times["Python loop, 4 threads -> llama-server -np 4"].append(time.perf_counter() - start)
                out = work / f"describe-{run}.jsonl"
                cmd = [sys.executable, "-m", "imgscribe", "describe", str(photos), "--model", name, "--host", url,
                       "--prompt", PROMPT, "-o", f"num_predict={TOKENS}", "-o", "temperature=0", "-o", f"seed={SEED}",
                       "--out", str(out), "--overwrite"]  # fmt: skip
                start = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, IMGSCRIBE_MODELS=str(models)))
                times["imgscribe describe --host (CLI start included)"].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise SystemExit(f"describe exited {done.returncode}: {done.stderr[-2000:]}")
                records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
                failed = [r for r in records if r.get("error")]
                if len(records) != len(paths) or failed:
                    raise SystemExit(f"describe: {len(records)} records for {len(paths)} images; {failed[:2]}")
    finally:
        stop(serve)
        stop(raw)
    base = min(times["Python loop, 4 threads -> llama-server -np 4"])
    rows = [[f"(c) {len(paths)} JPEGs, tiny LLaVA, {TOKENS} tokens", "images/s", "best s", "ratio time"]]
    for label, values in times.items():
        rows.append([f"  {label}", f"{len(paths) / min(values):.1f}", f"{min(values):.2f}", f"{min(values) / base:.2f}x"])
    return rows


def table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(row[0].ljust(widths[0]) + "".join(cell.rjust(w + 3) for cell, w in zip(row[1:], widths[1:], strict=True)))
    print(flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40, help="measured requests per row (default 40)")
    ap.add_argument("--qwen-requests", type=int, default=8, help="measured requests per Qwen2-VL-2B row (default 8)")
    ap.add_argument("--images", type=int, default=100, help="images in the batch (default 100)")
    ap.add_argument("--rounds", type=int, default=2, help="batch passes each, best kept (default 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--skip-qwen", action="store_true", help="no Qwen2-VL-2B-dimension row in the full mode")
    ap.add_argument("--quick", action="store_true", help="tiny models only, 8 requests a row, 8 images")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.images, args.rounds, args.skip_qwen = min(args.requests, 8), min(args.images, 8), 1, True

    with tempfile.TemporaryDirectory(prefix="imgscribe-bench-peers-") as tmp:
        work = Path(tmp)
        os.environ["IMGSCRIBE_MODELS"] = str(work / "models")  # never the user's store
        src, model, mmproj = tiny_llava(work)
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"imgscribe against its peers: {os.cpu_count()} CPUs, {args.threads} threads, load average {load}; "
              f"{args.requests} requests a row; ratio = imgscribe / peer (1.00x: parity)\n", flush=True)  # fmt: skip
        table(bench_llama("tiny LLaVA-1.5 GGUF (f32)", model, mmproj, args, work))
        if not args.skip_qwen:
            sys.path.insert(0, str(Path(__file__).parent))
            import engines

            q_src = engines.build_checkpoint(engines.CACHE / engines.NAME)
            q4, _, q_mmproj = engines.convert_gguf(q_src, engines.CACHE / "gguf")
            table(bench_llama("Qwen2-VL-2B dimensions Q4_K_M", q4, q_mmproj, args, work, args.qwen_requests))
        if not args.skip_transformers:
            table(bench_transformers(src, args, work))
        table(bench_batch(model, mmproj, args, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
