"""Fixtures for the batch tests: an echo model in the test's store, small images, a Ray node."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgscribe.store import Store
from imgscribe.types import ModelInfo, ModelManifest

ROOT = Path(__file__).resolve().parents[2]


def make_echo(name: str = "echo-test", **settings) -> str:
    """An echo model (instant, deterministic; answers with the image's size and sha256);
    ``settings``: the echo engine's (delay, tokens...)."""
    Store().create(name, ModelManifest(
        name=name, engine="echo", engine_settings=settings,
        info=ModelInfo(name=name, engine="echo", capabilities=["completion", "vision"]),
    ))  # fmt: skip
    return name


@pytest.fixture
def echo_model() -> str:
    return make_echo()


def save_image(path: Path, seed: int, size: tuple[int, int] = (48, 40), **save_args) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, **save_args)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    """photos/: 4 JPEGs (2 in a subfolder), 1 PNG, 1 broken file."""
    folder = tmp_path / "photos"
    for i in range(4):
        save_image(folder / ("sub" if i % 2 else "") / f"img{i}.jpg", i, quality=90)
    save_image(folder / "img4.png", 4)
    (folder / "broken.jpg").write_text("this is not a picture")
    return folder


def lines(path: Path) -> int:
    """Lines written to ``path`` so far (0 before it exists)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_and_kill(args: list[str], env: dict[str, str], out: Path, threshold: int, soon: float = 0.3) -> bool:
    """Start ``args`` (a describe run writing ``out``) and SIGKILL it once ``out`` holds ``threshold``
    lines (0: ``soon`` seconds after it starts); whether it was killed (False: it ended first)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() < started + 60:
        if (threshold == 0 and time.monotonic() > started + soon) or (threshold and lines(out) >= threshold):
            break
        time.sleep(0.002)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed
