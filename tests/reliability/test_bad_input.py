"""The bad-input corpus (corpus.py) through every front door: image intake, the Python API, the CLI and
every HTTP route that takes images. Each case is a clear refusal (InvalidImage/ImageTooLarge, an
exit code 1 with one ``Error:`` line, an error row, a 4xx in the route's dialect) or, for a damaged
but decodable or an odd but valid image, an answer; never another exception, a 500, a hang or a
leaked file descriptor, and the server answers a normal request after each.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from imgscribe import api
from imgscribe.errors import ImageTooLarge, InvalidImage
from imgscribe.images import header, intake
from imgscribe.store import Store

from . import corpus
from .conftest import (
    IMAGE_ROUTES,
    NORMAL,
    add_echo,
    answer_text,
    available_routes,
    error_message,
    open_fds,
    settle_fds,
)

pytestmark = pytest.mark.timeout(120)

CASES = corpus.synthetic()
IDS = [c.name for c in CASES]
REFUSED = (InvalidImage, ImageTooLarge)
CASE_SECONDS = 10  # any one case through any one door
ROUTES = available_routes()
STREAM_ENDS = ('"done":true', "[DONE]", "response.completed", "message_stop")  # each dialect's last event
ANSWER = re.compile(r"^echo: .*\b\d+ image\(s\)", re.DOTALL)  # an animation may come as its sampled frames


def through_intake(data) -> str:
    """"ok" or the refusal's class name; any other exception propagates (and fails the test)."""
    try:
        header(data)
        intake(data)
        intake(data, all_frames=True)
        intake(data, max_side=32)
    except REFUSED as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_intake(case, corpus_dir, tally):
    """Each synthetic case as bytes, a path, a path string and base64, through header() and intake()
    (first frame, all frames, reduced): a refusal or an image, under 10 s, no descriptor left open."""
    path = corpus_dir[case.name]
    before = open_fds()
    started = time.monotonic()
    outcomes = {through_intake(src) for src in (case.data, path, str(path), base64.b64encode(case.data).decode())}
    assert time.monotonic() - started < CASE_SECONDS
    assert open_fds() == before, "a file descriptor leaked"
    for outcome in outcomes:
        tally.add(outcome)
    if case.expect == "error":
        assert outcomes <= {"InvalidImage", "ImageTooLarge"}, outcomes


def test_pillow_test_images_through_intake(pillow_cases, record_property):
    """Pillow's own Tests/images (its fuzzers' crash files among them), each as bytes, all frames too."""
    bad, slow, counts = [], [], {}
    before = open_fds()
    for case in pillow_cases:
        started = time.monotonic()
        try:
            outcome = through_intake(case.data)
        except Exception as exc:  # noqa: BLE001 - collected, the test fails below
            bad.append(f"{case.name}: {exc!r}"[:300])
            outcome = "other exception"
        counts[outcome] = counts.get(outcome, 0) + 1
        if time.monotonic() - started > CASE_SECONDS:
            slow.append(case.name)
    record_property("outcomes", json.dumps({"counts": counts, "files": len(pillow_cases)}))
    assert not bad and not slow, (bad, slow)
    assert open_fds() == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_python_api(case, corpus_dir, echo_scheduler, tally):
    """``imgscribe.api.describe(path, ...)`` with an echo model, per synthetic case."""
    before = open_fds()
    started = time.monotonic()
    try:
        result = api.describe(corpus_dir[case.name], "llava", scheduler=echo_scheduler)
        assert ANSWER.search(result.text), result.text
        tally.add("answer")
    except REFUSED as exc:
        tally.add(type(exc).__name__)
        assert str(exc)
    else:
        assert case.expect == "either", "a case that must be refused was answered"
    assert time.monotonic() - started < CASE_SECONDS
    assert settle_fds(before) == before


def test_python_api_pillow_images(pillow_cases, echo_scheduler, record_property):
    """``imgscribe.api.describe(bytes, ...)`` for each of Pillow's Tests/images."""
    counts, bad = {}, []
    for case in pillow_cases:
        try:
            api.describe(case.data, "llava", scheduler=echo_scheduler)
            outcome = "answer"
        except REFUSED as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - collected, the test fails below
            bad.append(f"{case.name}: {exc!r}"[:300])
            outcome = "other exception"
        counts[outcome] = counts.get(outcome, 0) + 1
    record_property("outcomes", json.dumps({"counts": counts, "files": len(pillow_cases)}))
    assert not bad, bad


# -- HTTP ---------------------------------------------------------------------------------------------


def post_case(client: httpx.Client, route: str, data: bytes, stream: bool = False) -> str:
    """One case on one route: "answer" or "4xx <status>"; a 5xx, another shape or a hang fails.
    Streamed: a refusal comes before the stream starts, an answer is a whole stream."""
    response = client.post(route, json={**IMAGE_ROUTES[route](data), "stream": stream})
    assert response.status_code < 500, (route, response.status_code, response.text[:500])
    if response.status_code == 200 and stream:
        assert "image(s)" in response.text and any(end in response.text for end in STREAM_ENDS), response.text[-500:]
        return "answer (streamed)"
    if response.status_code == 200:
        assert ANSWER.search(answer_text(route, response)), response.text[:500]
        return "answer"
    assert 400 <= response.status_code < 500
    assert error_message(route, response), response.text
    return f"{response.status_code}"


def normal_request_works(client: httpx.Client) -> None:
    response = client.post("/api/generate", json=NORMAL)
    assert response.status_code == 200 and response.json()["done"], response.text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", ROUTES)
def test_http_routes(route, stream, live, tally):
    """Every synthetic case on one route, whole and streamed, each followed by a normal request on
    the same connection."""
    before = open_fds()
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for case in CASES:
            started = time.monotonic()
            outcome = post_case(client, route, case.data, stream)
            assert time.monotonic() - started < CASE_SECONDS, case.name
            if case.expect == "error":
                assert not outcome.startswith("answer"), f"{case.name} was answered on {route}"
            tally.add(outcome)
            normal_request_works(client)
    assert settle_fds(before) <= before, "the server kept file descriptors"


def test_http_pillow_images(pillow_cases, live, record_property):
    """Pillow's Tests/images on Ollama's /api/generate and OpenAI's /v1/chat/completions."""
    counts, before = {}, open_fds()
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for i, case in enumerate(pillow_cases):
            route = "/api/generate" if i % 2 == 0 else "/v1/chat/completions"
            outcome = post_case(client, route, case.data)
            counts[outcome] = counts.get(outcome, 0) + 1
        normal_request_works(client)
    record_property("outcomes", json.dumps({"counts": counts, "files": len(pillow_cases)}))
    assert settle_fds(before) <= before


# -- the CLI --------------------------------------------------------------------------------------------


def cli(*args, env, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgscribe", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)  # fmt: skip


REFUSED_NAMES = [c.name for c in CASES if c.expect == "error"]


def test_cli_run_builtin_refuses_each_bad_image(corpus_dir, cli_env, record_property):
    """``imgscribe run builtin "..." <path>`` for every case that must be refused: exit code 1 and one
    ``Error:`` line naming the file, before any model is loaded (4 at a time)."""

    def one(name):
        path = corpus_dir[name]
        return name, cli("run", "builtin", f"what is in {path}", "--image", path, "--local", env=cli_env)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, REFUSED_NAMES))
    for name, result in results:
        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, (name, result.stderr)
        assert "Error:" in result.stderr, (name, result.stderr)
    record_property("outcomes", json.dumps({"counts": {"exit 1, one Error: line": len(results)}}))


def test_cli_describe_gives_each_case_a_row(corpus_dir, cli_env, tmp_path, record_property):
    """``imgscribe describe`` over the whole corpus folder (an echo model): one record per file, an
    error row for each refused one, the others answered; no traceback and no library warning on
    stderr (Pillow's 'Corrupt EXIF data'); all in one run."""
    add_echo(Store(), "llava")  # the test's own store (IMGSCRIBE_MODELS), which the child reads too
    out = tmp_path / "out.jsonl"
    folder = next(iter(corpus_dir.values())).parent
    result = cli("describe", folder, "-m", "llava", "--out", out, "--local", env=cli_env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    # Pillow warns as it reads the malformed EXIF cases; the CLI keeps its stderr to its own lines.
    assert "Warning" not in result.stderr and "site-packages" not in result.stderr, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    counts = {"error row": 0, "answered": 0}
    for case in CASES:
        row = by_name.get(case.filename)
        if row is None:  # describe finds images by extension
            counts["not an image by its name (skipped)"] = counts.get("not an image by its name (skipped)", 0) + 1
            continue
        if row.get("error"):
            counts["error row"] += 1
        else:
            assert case.expect == "either", row
            counts["answered"] += 1
    record_property("outcomes", json.dumps({"counts": counts}))
    assert counts["error row"] >= len(REFUSED_NAMES) - 5


# -- the built-in model on the valid extremes ----------------------------------------------------------


@pytest.mark.parametrize("size", [(65_000, 1), (20_000, 3)], ids=["65000x1", "20000x3"])
def test_builtin_ocr_reads_extreme_strips(size):
    """The built-in model's OCR stage on a 65,000 x 1 and a 20,000 x 3 strip (what the corpus's strip
    cases reach through ``imgscribe run builtin``; its full model takes a minute to load here)."""
    from PIL import Image as PILImage

    from imgscribe.engines.builtin import ocr

    assert ocr.read(PILImage.new("RGB", size, "red")) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_builtin_model_over_http(tmp_path, tally):
    """Every synthetic case sent to the built-in model itself (a real model, not the echo stand-in),
    alternately on Ollama's /api/generate and OpenAI's /v1/chat/completions: a refusal is a 4xx in
    the route's dialect, every other case gets a non-empty description; never a 500; a normal image
    request is answered at the end."""
    from server.conftest import live_server

    from imgscribe.scheduler import Scheduler

    store = Store(tmp_path / "models")
    store.copy("builtin", "llava")
    scheduler = Scheduler(store)
    try:
        with live_server(scheduler) as server, httpx.Client(base_url=server.url, timeout=120) as client:
            for i, case in enumerate(CASES):
                route = "/api/generate" if i % 2 == 0 else "/v1/chat/completions"
                response = client.post(route, json=IMAGE_ROUTES[route](case.data))
                assert response.status_code < 500, (case.name, route, response.text[:500])
                if response.status_code == 200:
                    assert case.expect == "either", f"{case.name} was answered on {route}"
                    assert answer_text(route, response).strip(), (case.name, response.text[:500])
                    tally.add("described")
                else:
                    assert error_message(route, response), response.text
                    tally.add(f"{response.status_code}")
            ok = client.post("/api/generate", json=IMAGE_ROUTES["/api/generate"](corpus.encode(corpus.photo(), "PNG")))
            assert ok.status_code == 200 and ok.json()["response"].strip(), ok.text[:500]
    finally:
        scheduler.close()
