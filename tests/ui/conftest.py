"""A real headless Chromium (Debian's ``chromium`` package, driven by Playwright through
``executable_path``: no browser download) against a live server with ``builtin`` and echo models.

Without chromium or Playwright the tests are skipped locally and fail in CI (``CI`` set).
Screenshots go to ``tests/ui/artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from server.conftest import add_echo, live_server

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")


def _unavailable(message: str):
    pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    _unavailable("the page tests need Debian's chromium (apt-get install chromium; `make test-setup` does it)")


@pytest.fixture(scope="session")
def browser(chromium_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the page tests need Playwright (pip install playwright==1.65.2; never `playwright install`)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("ui") / "models")
    add_echo(store, "echo-test")
    add_echo(store, "echo-text", capabilities=["completion"])
    add_echo(store, "echo-slow", delay=0.1, tokens=300)
    return store


@pytest.fixture(scope="module")
def ui_server(ui_store) -> Iterator:
    scheduler = Scheduler(ui_store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            yield live
    finally:
        scheduler.close()


@pytest.fixture
def page(browser, ui_server, request):
    """A fresh page on the server's /ui; a screenshot of it is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(ui_server.url + "/ui")
    page.wait_for_selector("#ask-models input[type=checkbox]")
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors
