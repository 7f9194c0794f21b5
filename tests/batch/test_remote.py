"""Describing against running servers (``--host``, several of them)."""

from __future__ import annotations

import json

from server.conftest import live_server

from imgscribe.batch.job import Job, execute
from imgscribe.batch.prompts import Prompt
from imgscribe.client import LocalClient, connect
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store


def test_requests_are_spread_over_servers_and_resume_across_them(images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    prompts = [Prompt("response", "Describe.")]
    with live_server(Scheduler(Store(), num_parallel=0)) as a, live_server(Scheduler(Store(), num_parallel=0)) as b:
        job = Job(sources=[str(images)], model=echo_model, prompts=prompts, outputs=[str(out)], hosts=[a.host, b.host])
        stats, _ = execute(job, [connect(a.host), connect(b.host)])
        assert (stats.done, stats.failed) == (5, 1)
        assert a.scheduler.runner(echo_model).generated and b.scheduler.runner(echo_model).generated
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for r in records if r["response"]) == 5
    # In-process now: the same model digest, so nothing is redone.
    scheduler = Scheduler(Store())
    try:
        job = Job(sources=[str(images)], model=echo_model, prompts=prompts, outputs=[str(out)])
        stats, _ = execute(job, [LocalClient(scheduler)])
    finally:
        scheduler.close()
    assert (stats.skipped, stats.done) == (5, 0)


def test_ray_actors_get_recipes_not_the_environment(tmp_path, monkeypatch):
    """What an actor makes its clients from: the servers --host named (with the key), else a
    scheduler of its own over the driver's models folder that keeps the model for the whole run."""
    import math

    from imgscribe import config
    from imgscribe import scheduler as sched
    from imgscribe.batch.ray_runner import actor_recipes
    from imgscribe.client import LocalRecipe, RemoteClient, RemoteRecipe

    remote = RemoteClient("http://127.0.0.1:9", api_key="k")
    assert actor_recipes([remote, remote], servers=True) == [RemoteRecipe("http://127.0.0.1:9", "k")] * 2
    scheduler = Scheduler(Store(tmp_path), max_queue=7)
    try:
        (recipe,) = actor_recipes([LocalClient(scheduler)], servers=False)
    finally:
        scheduler.close()
    assert recipe == LocalRecipe(tmp_path, math.inf, scheduler.max_loaded, scheduler.num_parallel, 7, False)
    monkeypatch.setattr(config, "_overrides", {})
    sched.configure(ignore_memory=True)  # --force
    (recipe,) = actor_recipes([remote], servers=False)  # a server IMGSCRIBE_HOST found: the actors run in-process
    assert recipe.models_dir == sched.process_settings().models_dir and recipe.keep_alive == math.inf
    client = recipe.open()
    assert recipe.ignore_memory and client.scheduler.ignore_memory
    client.close()
