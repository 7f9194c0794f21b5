"""Kill the run at any moment (SIGKILL), rerun: every image is in the output exactly once."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest

from .conftest import make_echo, run_and_kill, save_image

N = 40


@pytest.mark.timeout(300)
def test_sigkill_at_any_moment_then_rerun(imgscribe_cmd, cli_env, tmp_path):
    make_echo("slow-echo", delay=0.01, parallel=4)
    photos = tmp_path / "photos"
    for i in range(N):
        save_image(photos / f"{i:02}.jpg", i, quality=85)
    out = tmp_path / "out.jsonl"
    args = [*imgscribe_cmd, "describe", str(photos), "-m", "slow-echo", "-j", "4", "--out", str(out),
            "--out", str(tmp_path / "out.csv"), "--out", str(tmp_path / "out.parquet"), "--sidecar", "response"]  # fmt: skip
    env = dict(cli_env, IMGSCRIBE_NUM_PARALLEL="0")
    kills = 0
    for threshold in (0, 3, 12, 25):  # 0: kill as soon as it has started
        kills += run_and_kill(args, env, out, threshold, soon=0.5)
    assert kills >= 3  # the run was really cut short (it takes several seconds)
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    paths = sorted(r["path"].rsplit("/", 1)[-1] for r in records)
    assert paths == [f"{i:02}.jpg" for i in range(N)], "every image exactly once"
    assert len({r["id"] for r in records}) == N and not any(r["error"] for r in records)
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in records)
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(tmp_path / "out.parquet").column("path").to_pylist()) == sorted(r["path"] for r in rows)
    assert len(list(photos.glob("*.txt"))) == N
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")], "no temporary files left behind"
    # and one more rerun does nothing
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"{N} skipped" in again.stderr
    assert out.read_text().count("\n") == N
