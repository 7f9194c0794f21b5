"""Memory from tiny bodies (security finding 6): the server's peak RSS under 300 hostile requests at
once, against a bound stated before the run and a baseline measured in the same run.

    python bench/hostile_memory.py [--requests 300] [--side 7000] [--quick]

A 7000x7000 WebP of one colour is a few dozen bytes and 49 MP: under the 50 MP image limit, ~800 MB
while it decodes. The server is ``imgscribe serve`` in its own process on a loopback port with its
default limits (IMGSCRIBE_MAX_REQUEST_IMAGES 32, IMGSCRIBE_MAX_REQUEST_PIXELS 100 MP,
IMGSCRIBE_DECODE_PIXELS 200 MP) and the instant ``echo`` engine, so all the memory measured is the
server's own: bodies, headers, decoding. The requests, all sent at once (one asyncio loop, one
connection each):

  ten WebPs      10 x 7000^2 WebP (the finding's 26 KB request)   refused from the headers: 413
  three WebPs     3 x 7000^2 WebP (147 MP)                          refused from the headers: 413
  50,000 PNGs    50,000 x 1x1 PNG (a 4.6 MB body)                   refused by the count: 413
  two WebPs       2 x 7000^2 WebP (98 MP, within every limit)       decoded, one at a time: 200
  two JPEGs       2 x 7000^2 JPEG to a model with max_image_side    decoded at 1/2 size: 200
                  3072 (as the builtin model)

Baseline: the server's RSS once warm, and the growth one "two WebPs" request causes alone. The
bound: baseline + max(IMGSCRIBE_DECODE_PIXELS, the largest request's room) x 4 bytes (Pillow's RGB
pixel) x 1.5 (the allocator's slack: freed memory is not always returned at once) + 64 MiB (bodies,
threads). Peak RSS is the kernel's VmHWM of the server process, reset after the warm-up. Prints the
peak, the bound, PASS or FAIL, and what each kind of request got. About a minute on two cores.
Traffic goes to 127.0.0.1 only. ``--quick``: 12 requests (every kind at least once), the same images,
bound and verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image as PILImage

from _serve import start_server

from imgscribe.config import settings
from imgscribe.images import header
from imgscribe.store import Store
from imgscribe.types import ModelInfo, ModelManifest

MODEL, HINTED = "bench-echo", "bench-echo-3072"
SLACK, EXTRA = 1.5, 64 * 2**20
MB = 2**20


def make_store(root: Path) -> None:
    store = Store(root)
    for name, side in ((MODEL, 0), (HINTED, 3072)):
        info = ModelInfo(name=name, engine="echo", capabilities=["completion", "vision"], max_image_side=side)
        echo = {"tokens": 4, "parallel": 64}  # the engine's settings (older manifests: in parameters)
        where = "engine_settings" if "engine_settings" in ModelManifest.model_fields else "parameters"
        store.create(name, ModelManifest(name=name, engine="echo", info=info, **{where: echo}))


def encoded(side: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    im = PILImage.new("RGB", (side, side), (200, 30, 30))
    im.save(buf, fmt, **({"lossless": True, "method": 0} if fmt == "WEBP" else {"quality": 50}))
    return buf.getvalue()


def status(pid: int, field: str) -> int:
    """A /proc/PID/status figure in bytes (VmRSS: now; VmHWM: the peak since the last reset)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """Peak RSS by polling, for kernels whose VmHWM cannot be reset."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status(self.pid, "VmRSS"))
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


async def send_all(url: str, requests: list[tuple[str, dict]]) -> list[tuple[str, int, float]]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one(kind: str, body: dict) -> tuple[str, int, float]:
            started = time.perf_counter()
            try:
                response = await client.post(url + "/api/generate", json=body)
                code = response.status_code
            except httpx.HTTPError:
                code = -1
            return kind, code, time.perf_counter() - started

        return await asyncio.gather(*(one(kind, body) for kind, body in requests))


def mib(n: float) -> str:
    return f"{n / MB:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="hostile requests sent at once (default 300)")
    parser.add_argument("--side", type=int, default=7000, help="side of the large images (default 7000)")
    parser.add_argument("--quick", action="store_true", help="12 requests, every kind at least once")
    args = parser.parse_args()
    if args.quick:
        args.requests = min(args.requests, 12)

    webp, jpeg = encoded(args.side, "WEBP"), encoded(args.side, "JPEG")
    w64, j64 = base64.b64encode(webp).decode(), base64.b64encode(jpeg).decode()
    dot = base64.b64encode(encoded(1, "PNG")).decode()

    def body(images: list[str], model: str = MODEL) -> dict:
        return {"model": model, "prompt": "describe", "images": images, "stream": False}

    kinds = {  # kind: (share of the requests, body, expected status)
        "ten WebPs": (0.33, body([w64] * 10), 413),
        "three WebPs": (0.33, body([w64] * 3), 413),
        "50,000 PNGs": (0.015, body([dot] * 50_000), 413),
        "two WebPs": (0.12, body([w64] * 2), 200),
        "two JPEGs, hinted": (0.205, body([j64] * 2, HINTED), 200),
    }
    requests = []
    for kind, (share, b, _) in kinds.items():
        requests += [(kind, b)] * max(1, round(share * args.requests))
    requests = [requests[i] for i in sorted(range(len(requests)), key=lambda i: (i * 7919) % len(requests))]

    cfg = settings({})  # the defaults the server runs with
    head_w, head_j = header(webp, max_pixels=0), header(jpeg, max_pixels=0, max_side=3072)
    largest = max(max(head.held + head.cost for head in (head_w, head_j)), head_w.cost)
    room = max(cfg.decode_pixels, largest)

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        make_store(models)
        proc, url = start_server(models, default_settings=True)
        try:
            print(f"hostile memory: {len(requests)} requests at once, {os.cpu_count()} CPUs; one {args.side}^2 "
                  f"WebP is {len(webp):,} bytes and {head_w.pixels / 1e6:.0f} MP\n")  # fmt: skip
            httpx.post(url + "/api/generate", json=body([dot]), timeout=60).raise_for_status()  # warm
            httpx.post(url + "/api/generate", json=body([j64], HINTED), timeout=60).raise_for_status()
            time.sleep(0.5)
            baseline = status(proc.pid, "VmRSS")
            bound = baseline + room * 4 * SLACK + EXTRA

            hwm = reset_peak(proc.pid)
            t = time.perf_counter()
            single = asyncio.run(send_all(url, [("two WebPs", kinds["two WebPs"][1])]))
            single_s = time.perf_counter() - t
            single_peak = status(proc.pid, "VmHWM") if hwm else None
            assert single[0][1] == 200, single
            time.sleep(0.5)

            rest = status(proc.pid, "VmRSS")
            hwm = reset_peak(proc.pid)

            async def hostile():
                sampler = Sampler(proc.pid)
                task = asyncio.create_task(sampler.run())
                try:
                    return await send_all(url, requests), sampler.peak
                finally:
                    sampler.stop()
                    await task

            t = time.perf_counter()
            results, sampled = asyncio.run(hostile())
            took = time.perf_counter() - t
            peak = max(status(proc.pid, "VmHWM") if hwm else 0, sampled)
        finally:
            proc.terminate()
            proc.wait(10)

    single_growth = (single_peak - baseline) if single_peak else None
    growth = peak - baseline
    print(f"  baseline RSS (warm, idle)               {mib(baseline):>12}")
    if single_growth is not None:
        print(f"  one 'two WebPs' request alone: peak     {mib(single_peak):>12}  (+{mib(single_growth)}, "
              f"{single_s:.1f} s)")  # fmt: skip
    print(f"  RSS at rest after it                    {mib(rest):>12}")
    print(f"  {len(requests)} hostile requests at once: peak  {mib(peak):>12}  (+{mib(growth)}, {took:.1f} s)")
    print(f"  bound: baseline + {room / 1e6:.0f} MP x 4 B x {SLACK} + {mib(EXTRA)}  {mib(bound):>12}")
    if single_growth:
        print(f"  ratio: hostile growth / one request's growth  {growth / single_growth:.2f}x")
    print(f"  ratio: peak / bound                     {peak / bound:.2f}\n")

    rows = [["request", "sent", "got", "expected", "slowest s"]]
    for kind, (_, _, expected) in kinds.items():
        mine = [r for r in results if r[0] == kind]
        got = Counter(code for _, code, _ in mine)
        rows.append([kind, str(len(mine)), ", ".join(f"{c}x{n}" for c, n in sorted(got.items())), str(expected),
                     f"{max(s for *_, s in mine):.1f}"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    wrong = sum(code != kinds[kind][2] for kind, code, _ in results)
    verdict = "PASS" if peak <= bound and not wrong else "FAIL"
    print(f"\n{verdict}: peak RSS {mib(peak)} {'<=' if peak <= bound else '>'} bound {mib(bound)}"
          f"{f'; {wrong} requests got an unexpected status' if wrong else ''}")  # fmt: skip
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
