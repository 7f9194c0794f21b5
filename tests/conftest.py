"""Shared fixtures. Every test runs with its own empty model store and no server in reach."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path_factory.mktemp("models")))
    # A port nothing listens on, so CLI commands never find (and use) a stray server.
    monkeypatch.setenv("IMGSCRIBE_HOST", "127.0.0.1:9")


@pytest.fixture
def cli_env():
    """Environment for running the `imgscribe` command in a subprocess."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def imgscribe_cmd():
    return [sys.executable, "-m", "imgscribe"]
