"""Describing against running servers (``--host``, several of them)."""

from __future__ import annotations

import json

from imgscribe.batch.job import Job, execute
from imgscribe.batch.prompts import Prompt
from imgscribe.cli.backend import LocalBackend, get_backend
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from server.conftest import live_server


def test_requests_are_spread_over_servers_and_resume_across_them(images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    prompts = [Prompt("response", "Describe.")]
    with live_server(Scheduler(Store(), num_parallel=0)) as a, live_server(Scheduler(Store(), num_parallel=0)) as b:
        job = Job(sources=[str(images)], model=echo_model, prompts=prompts, outputs=[str(out)], hosts=[a.host, b.host])
        stats, _ = execute(job, [get_backend(a.host), get_backend(b.host)])
        assert (stats.done, stats.failed) == (5, 1)
        assert a.scheduler.runner(echo_model).generated and b.scheduler.runner(echo_model).generated
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for r in records if r["response"]) == 5
    # In-process now: the same model digest, so nothing is redone.
    scheduler = Scheduler(Store())
    try:
        job = Job(sources=[str(images)], model=echo_model, prompts=prompts, outputs=[str(out)])
        stats, _ = execute(job, [LocalBackend(scheduler)])
    finally:
        scheduler.close()
    assert (stats.skipped, stats.done) == (5, 0)
