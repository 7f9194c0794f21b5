"""``imgscribe serve`` in a child process on a free loopback port, as the benchmarks start it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_server(models: Path, *, default_settings: bool = False) -> tuple[subprocess.Popen, str]:
    """``imgscribe serve`` as users run it (access log included), its log in the models folder;
    with ``default_settings`` every other IMGSCRIBE_* variable of this process is left out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not (default_settings and k.startswith("IMGSCRIBE_"))}
    env.update(IMGSCRIBE_HOST=f"127.0.0.1:{port}", IMGSCRIBE_MODELS=str(models), IMGSCRIBE_NUM_PARALLEL="0")
    log = open(models / "server.log", "wb")  # noqa: SIM115  (the server process writes it)
    proc = subprocess.Popen([sys.executable, "-m", "imgscribe", "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/api/version", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit(f"the server did not start: {(models / 'server.log').read_text()}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")
