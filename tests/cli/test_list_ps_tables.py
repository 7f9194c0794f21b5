"""``imgscribe list`` and ``imgscribe ps``: Ollama's columns, names never cut (plain text into a
pipe, Rich on a terminal), ``--json``; sizes and times written as Ollama's ``format`` package
writes them."""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from imgscribe.cli import _register, app
from imgscribe.cli.models import human_time, ollama_size, print_table
from imgscribe.cli.server_cmds import until
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, where pytest imports tests/server as `server`
from server.conftest import add_echo, live_server  # noqa: E402

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()
LONG = "127.0.0.1:18777/library/a-rather-long-model-name-for-vision:q4_K_M-with-a-long-tag"


@pytest.fixture(scope="module", autouse=True)
def _commands():
    _register()


@pytest.fixture
def store() -> Store:
    store = Store(Path(os.environ["IMGSCRIBE_MODELS"]))
    add_echo(store, LONG, size=4_700_000_000)
    add_echo(store, "llava", size=12_345_678)
    return store


def _lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.strip()]


def test_list_into_a_pipe_is_plain_columns_with_whole_names(store):
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    header, *rows = _lines(result.stdout)
    assert header == ["NAME", "ID", "SIZE", "MODIFIED"]
    names = [row[0] for row in rows]  # what `imgscribe list | awk '{print $1}'` reads
    assert LONG in names and "llava:latest" in names and "builtin:latest" in names
    long_row = next(row for row in rows if row[0] == LONG)
    digest = store.resolve(LONG).info.digest.removeprefix("sha256:")
    assert long_row[1] == digest[:12] and len(long_row[1]) == 12
    assert long_row[2:4] == ["4.7", "GB"]
    assert " ".join(long_row[4:]) in ("Less than a second ago", "1 second ago") or long_row[-1] == "ago"
    assert "…" not in result.stdout and "\x1b[" not in result.stdout


def test_list_json(store):
    result = runner.invoke(app, ["list", "--json"])
    names = [m["name"] for m in json.loads(result.stdout)]
    assert LONG in names and "llava:latest" in names


def test_terminal_table_never_cuts_a_name():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=40, color_system=None)
    print_table(["NAME", "ID"], [[LONG, "0123456789ab"]], console)
    assert LONG in out.getvalue().replace("\n", "") and "…" not in out.getvalue()
    assert "0123456789ab" in out.getvalue()


def test_ps_through_a_server(store):
    with live_server(Scheduler(store, num_parallel=0)) as live:
        for name, keep in ((LONG, "5m"), ("llava", -1)):
            r = httpx.post(live.url + "/api/generate", json={"model": name, "prompt": "hi", "stream": False,
                                                             "keep_alive": keep})  # fmt: skip
            assert r.status_code == 200
        result = runner.invoke(app, ["ps", "--host", live.host])
        as_json = runner.invoke(app, ["ps", "--host", live.host, "--json"])
        live.scheduler.close()
    assert result.exit_code == 0, result.output
    header, *rows = _lines(result.stdout)
    assert header == ["NAME", "ID", "SIZE", "PROCESSOR", "UNTIL"]
    by_name = {row[0]: row for row in rows}
    assert by_name[LONG][1] == store.resolve(LONG).info.digest.removeprefix("sha256:")[:12]
    assert by_name[LONG][-3:] == ["minutes", "from", "now"] and by_name[LONG][-4] in ("4", "5")
    assert by_name["llava:latest"][-1] == "Forever"
    assert {row["name"] for row in json.loads(as_json.stdout)} == {LONG, "llava:latest"}


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "-"), (512, "512 B"), (1000, "1 KB"), (1500, "1.5 KB"), (12_345_678, "12 MB"), (4_700_000_000, "4.7 GB"),
     (2_000_000_000_000, "2 TB")],  # fmt: skip
)
def test_sizes_as_ollama_writes_them(size, text):
    assert ollama_size(size) == text


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "text"),
    [(timedelta(seconds=0.5), "Less than a second ago"), (timedelta(seconds=1), "1 second ago"),
     (timedelta(seconds=30), "30 seconds ago"), (timedelta(seconds=70), "About a minute ago"),
     (timedelta(minutes=2), "2 minutes ago"), (timedelta(minutes=61), "About an hour ago"),
     (timedelta(hours=5), "5 hours ago"), (timedelta(days=3), "3 days ago"), (timedelta(days=21), "3 weeks ago"),
     (timedelta(days=90), "3 months ago"), (timedelta(days=800), "2 years ago"),
     (-timedelta(minutes=4, seconds=30), "4 minutes from now"), (-timedelta(days=365 * 300), "Forever")],  # fmt: skip
)
def test_times_as_ollama_writes_them(ago, text):
    assert human_time((NOW - ago).isoformat().replace("+00:00", "Z"), "Never", now=NOW) == text


def test_until():
    assert until(None) == "Forever"
    assert until((datetime.now(UTC) - timedelta(seconds=5)).isoformat()) == "Stopping..."
    assert until((datetime.now(UTC) + timedelta(days=365 * 292)).isoformat()) == "Forever"
    assert human_time("", "Never") == "Never"
