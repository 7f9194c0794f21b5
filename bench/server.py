"""What the HTTP server adds over calling the same runner in-process, measured in the same run.

    python bench/server.py [--seconds 3] [--quick] [--client raw|httpx|both]

The model is the instant ``echo`` engine (8 tokens, no delay), so every microsecond measured is
overhead: in-process, ``images.intake`` + ``Scheduler.chat``; over HTTP, that plus JSON, base64,
the request's thread hop, NDJSON rendering and the network stack. Each request carries one small
PNG. The server is ``imgscribe serve`` in its own process (as users run it); the clients are one
asyncio loop in this process: raw keep-alive sockets by default (about 0.05-0.1 ms of CPU a
request, so on a small machine the figures are the server's), or httpx (as an SDK sends: 1-1.5 ms
a request, 5-8 ms at 64 clients, where it, not the server, is the limit), or both, a row each.

Prints latency with one client (p50, p99; in-process vs ``/api/generate`` non-streamed and
``/api/chat`` streamed, and ``GET /api/version`` as the floor of any HTTP request) with the
server's CPU time per request (steadier than wall time on a busy machine), then requests/s with 1,
8 and 64 concurrent clients, with ratios, and the CPU time a request costs the server and the
clients (one asyncio loop here: with httpx at 64 clients the clients, not the server, are the limit), and the
tokens/s of a 20,000-token answer streamed to a client that reads as fast as it can (the path that
backpressure holds back for a slow one). ``--quick``: 0.3 s a figure (seconds; the same tables).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import tempfile
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image as PILImage

from _serve import start_server

from imgscribe.config import settings
from imgscribe.images import intake
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.types import ChatRequest, Message, ModelInfo, ModelManifest

MODEL = "bench-echo"
PROMPT = "Describe this image."
CONCURRENCY = (1, 8, 64)


def png() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 48), "teal").save(buf, format="PNG")
    return buf.getvalue()


LONG, LONG_TOKENS = "bench-echo-long", 20_000  # a long answer streamed: the backpressure path (jobs.MAX_BEHIND)


def make_store(root: Path) -> Store:
    store = Store(root)
    for name, tokens in ((MODEL, 8), (LONG, LONG_TOKENS)):
        info = ModelInfo(name=name, engine="echo", capabilities=["completion", "vision"])
        store.create(name, ModelManifest(name=name, engine="echo", info=info,
                                         engine_settings={"tokens": tokens, "parallel": 64}))  # fmt: skip
    return store


def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used (Linux); steadier than wall time on a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# -- in-process ------------------------------------------------------------------------------------


def in_process_once(scheduler: Scheduler, data: bytes) -> None:
    request = ChatRequest(MODEL, [Message("user", PROMPT, [intake(data)])])
    for _ in scheduler.chat(request):
        pass


def in_process(scheduler: Scheduler, data: bytes, clients: int, seconds: float) -> list[float]:
    """Latencies (s) of as many requests as ``clients`` threads finish in ``seconds``."""
    deadline = time.perf_counter() + seconds

    def worker() -> list[float]:
        out = []
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            in_process_once(scheduler, data)
            out.append(time.perf_counter() - start)
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [t for ts in pool.map(lambda _: worker(), range(clients)) for t in ts]


# -- over HTTP ---------------------------------------------------------------------------------------


def http(url: str, body: dict | None, path: str, clients: int, seconds: float, client: str = "raw") -> list[float]:
    """Latencies (s) of as many requests as ``clients`` keep-alive connections finish in ``seconds``."""
    run = raw_http if client == "raw" else httpx_http
    return asyncio.run(run(url, body, path, clients, seconds))


async def raw_http(url: str, body: dict | None, path: str, clients: int, seconds: float) -> list[float]:
    """The cheapest client asyncio has: a request's bytes made once, the answer read by its
    Content-Length or chunks (about a tenth of httpx's CPU a request), so the server is measured."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode() if body else b""
    head = (f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: {host}\r\n"
            + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if body else "")
            + "\r\n").encode()  # fmt: skip
    deadline = time.perf_counter() + seconds

    async def worker() -> list[float]:
        reader, writer = await asyncio.open_connection(host, int(port))
        out = []
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(head + payload)
                status, _, rest = (await reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
                if status.split()[1] != b"200":
                    raise SystemExit(f"{path}: {status.decode()}")
                fields = rest.lower()
                if b"transfer-encoding: chunked" in fields:
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                else:
                    length = fields.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]
                    await reader.readexactly(int(length))
                out.append(time.perf_counter() - start)
        finally:
            writer.close()
        return out

    return [t for ts in await asyncio.gather(*(worker() for _ in range(clients))) for t in ts]


async def httpx_http(url: str, body: dict | None, path: str, clients: int, seconds: float) -> list[float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> list[float]:
            out = []
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with client.stream("POST" if body else "GET", path, json=body) as response:
                    async for _ in response.aiter_bytes():
                        pass
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {response.status_code}")
                out.append(time.perf_counter() - start)
            return out

        return [t for ts in await asyncio.gather(*(worker() for _ in range(clients))) for t in ts]


def pieces(data: bytes, generate: dict) -> list[list[str]]:
    """The request path's own pieces, timed in this process in CPU time (best of 5: steady on a busy
    machine, where they are below the noise of the figures above): the body's parse, the Host check,
    reading the image (header, budget, decode; with a loaded engine's image side it is asked per image)."""
    from imgscribe.server.hosts import allowed_host
    from imgscribe.server.inputs import ImageReader
    from imgscribe.server.wire import GenerateBody

    reader, raw = ImageReader(settings()), json.dumps(generate).encode()
    groups = [ImageReader.labelled(generate["images"], "images")]

    def read(side) -> None:
        reader.read_request(groups, None, side, media=True)[1].release()

    def best(fn) -> str:
        return f"{min(timeit.repeat(fn, timer=time.process_time, number=200, repeat=5)) / 200 * 1e6:.1f}"

    return [["the request path's pieces", "CPU us"], ["GenerateBody.parse (the body's JSON, checked)", best(lambda: GenerateBody.parse(raw))],
            ["Host check", best(lambda: allowed_host("127.0.0.1"))],
            ["ImageReader.read_request, 1 PNG (media=True)", best(lambda: read(0))],
            ["the same, the engine's image side asked", best(lambda: read(lambda w, h: 512))],
            ["images.intake alone (what in-process pays)", best(lambda: intake(data))]]  # fmt: skip


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(row[0].ljust(widths[0]) + "".join(cell.rjust(w + 3) for cell, w in zip(row[1:], widths[1:], strict=True)))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="0.3 s a figure")
    parser.add_argument("--client", choices=("raw", "httpx", "both"), default="raw",
                        help="the clients: raw asyncio sockets (default: cheap, so the server is measured), "
                             "httpx (as an SDK sends), or both, one row each")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 0.3)

    data = png()
    b64 = base64.b64encode(data).decode()
    generate = {"model": MODEL, "prompt": PROMPT, "images": [b64], "stream": False}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT, "images": [b64]}]}

    kinds = ("raw", "httpx") if args.client == "both" else (args.client,)
    named = (lambda label, kind: f"{label} ({kind})") if len(kinds) > 1 else (lambda label, kind: label)
    with tempfile.TemporaryDirectory() as tmp:
        scheduler = Scheduler(make_store(Path(tmp)), num_parallel=0)
        proc, url = start_server(Path(tmp))
        try:
            in_process_once(scheduler, data)  # load the model, warm the caches
            for kind in kinds:
                http(url, generate, "/api/generate", 1, 0.3, kind)
            print(f"imgscribe server overhead: echo engine, {os.cpu_count()} CPUs, {args.seconds:g} s a figure, "
                  f"clients: {' and '.join(kinds)}\n")  # fmt: skip

            base = in_process(scheduler, data, 1, args.seconds)
            base50 = percentile(base, 50)
            rows = [
                ["latency, 1 client", "p50 ms", "p99 ms", "added p50 ms", "p50 ratio", "server CPU/request"],
                ["in-process (intake + scheduler)", ms(base50), ms(percentile(base, 99)), "", "", ""],
            ]
            for kind in kinds:
                for label, path, body in [("HTTP GET /api/version (floor)", "/api/version", None),
                                          ("HTTP /api/generate, stream:false", "/api/generate", generate),
                                          ("HTTP /api/chat, streamed", "/api/chat", chat)]:  # fmt: skip
                    cpu = server_cpu(proc.pid)
                    lat = http(url, body, path, 1, args.seconds, kind)
                    cpu = (server_cpu(proc.pid) - cpu) / len(lat)
                    p50 = percentile(lat, 50)
                    rows.append([named(label, kind), ms(p50), ms(percentile(lat, 99)), ms(p50 - base50),
                                 f"{p50 / base50:.1f}x", f"{ms(cpu)} ms"])  # fmt: skip
            table(rows)
            table(pieces(data, generate))

            # A long answer, streamed to a client that reads as fast as it can: tokens/s.
            long_request = ChatRequest(LONG, [Message("user", PROMPT)])
            start = time.perf_counter()
            for _ in range(3):
                for _ in scheduler.chat(long_request):
                    pass
            local_tps = 3 * LONG_TOKENS / (time.perf_counter() - start)
            long_body = {"model": LONG, "prompt": PROMPT}
            rows = [[f"a {LONG_TOKENS:,}-token answer, streamed", "tokens/s", "ratio"],
                    ["in-process (scheduler)", f"{local_tps:,.0f}", ""]]  # fmt: skip
            for kind in kinds:
                remote_tps = LONG_TOKENS / statistics.median(http(url, long_body, "/api/generate", 1, args.seconds, kind))
                rows.append([named("HTTP /api/generate, streamed", kind), f"{remote_tps:,.0f}",
                             f"{remote_tps / local_tps:.2f}"])  # fmt: skip
            table(rows)

            local = [len(in_process(scheduler, data, clients, args.seconds)) / args.seconds for clients in CONCURRENCY]
            rows = [["requests/s", *(f"{c} client{'s' if c > 1 else ''}" for c in CONCURRENCY)],
                    ["in-process", *(f"{r:.0f}" for r in local)]]  # fmt: skip
            for kind in kinds:
                remote, served, client = [], [], []
                for clients in CONCURRENCY:
                    cpu, own = server_cpu(proc.pid), time.process_time()
                    done = len(http(url, generate, "/api/generate", clients, args.seconds, kind))
                    served.append((server_cpu(proc.pid) - cpu) / done)
                    client.append((time.process_time() - own) / done)
                    remote.append(done / args.seconds)
                rows += [
                    [named("HTTP /api/generate", kind), *(f"{r:.0f}" for r in remote)],
                    [named("ratio HTTP / in-process", kind), *(f"{h / b:.2f}" for h, b in zip(remote, local, strict=True))],
                    # Who is busy: more CPU a request in this process (the clients) than in the
                    # server means the figure above is the clients' limit, not the server's.
                    [named("server CPU ms/request", kind), *(ms(c) for c in served)],
                    [named("clients' CPU ms/request (this process)", kind), *(ms(c) for c in client)],
                ]
            table(rows)
        finally:
            proc.terminate()
            proc.wait(10)
            scheduler.close()


if __name__ == "__main__":
    main()
