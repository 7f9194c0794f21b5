"""The same job on Ray Data (a private local node), with the same outputs and resume.

Every test here runs under a timeout: a Ray pipeline whose actors hold every CPU hangs silently
(notes/distributed.md section 4; ray-project/ray#44687).
"""

from __future__ import annotations

import json
import subprocess

import pytest
import ray  # the test extras install it: a missing ray is a failure here, not a skip

from imgscribe.batch.job import Job, execute
from imgscribe.batch.prompts import Prompt
from imgscribe.client import LocalClient
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # a throwaway node: no token in ~/.ray


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # a throwaway local node, never a cluster named by RAY_ADDRESS
        env.delenv("RAY_ADDRESS", raising=False)
        for name, value in RAY_ENV.items():
            env.setenv(name, value)
        ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 1024**2, _temp_dir=str(tmp_path_factory.mktemp("ray")))  # fmt: skip
        yield ray
        ray.shutdown()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_run_matches_a_local_run_and_resumes(ray_local, images, tmp_path, echo_model):
    prompts = [Prompt("caption", "Caption {filename}."), Prompt("tags", "Tags.")]
    scheduler = Scheduler(Store())
    client = LocalClient(scheduler)
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    try:
        execute(Job(sources=[str(images)], model=echo_model, prompts=prompts, outputs=[str(local_out)]), [client])
        job = Job(sources=[str(images)], model=echo_model, prompts=prompts,
                  outputs=[str(ray_out), str(tmp_path / "ray.parquet")], sidecar="caption")  # fmt: skip
        ray_options = {"actors": 1, "batch_size": 2}
        stats, _ = execute(job, [client], ray=ray_options)
        assert (stats.done, stats.failed, stats.skipped) == (5, 1, 0)
        strip = lambda r: {k: v for k, v in r.items() if k not in ("timings", "written")}  # noqa: E731
        assert sorted(map(json.dumps, map(strip, read_jsonl(ray_out)))) == sorted(map(json.dumps, map(strip, read_jsonl(local_out))))
        assert (images / "img0.txt").read_text().startswith("echo: Caption img0.jpg.")
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / "ray.parquet").num_rows == 6
        again, _ = execute(job, [client], ray=ray_options)  # resume: nothing left to do
        assert (again.done, again.skipped, again.failed) == (0, 5, 1)
        assert len(read_jsonl(ray_out)) == 6
    finally:
        scheduler.close()


def test_cli_ray_starts_a_private_instance(imgscribe_cmd, cli_env, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    env = dict(cli_env, **RAY_ENV)
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([*imgscribe_cmd, "describe", str(images / "img0.jpg"), str(images / "img4.png"),
                             "-m", echo_model, "--ray", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in read_jsonl(out)) == ["img0.jpg", "img4.png"]
    assert "described 2 image(s), 0 failed" in result.stderr
