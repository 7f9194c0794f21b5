"""The local runner end to end, in-process, on the echo model."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import shutil
import threading

import pytest

from imgscribe.batch.job import Job, execute
from imgscribe.batch.prompts import Prompt
from imgscribe.client import LocalClient
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store

from .conftest import make_echo

SCHEMA = {"type": "object", "properties": {"prompt": {"type": "string"}, "images": {"type": "array", "items": {"type": "string"}}},
          "required": ["prompt", "images"]}  # fmt: skip


@pytest.fixture
def client():
    scheduler = Scheduler(Store(), num_parallel=0)  # every slot the engine offers
    yield LocalClient(scheduler)
    scheduler.close()


def run(client, sources, model="echo-test", prompts=None, **kw):
    job = Job(sources=[str(s) for s in sources], model=model, prompts=prompts or [Prompt("response", "Describe {filename}.")], **kw)
    return execute(job, [client])


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_with_a_broken_file(client, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    stats, _ = run(client, [images], outputs=[str(out)])
    records = read_jsonl(out)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert len(records) == 6 and set(by_name) == {"broken.jpg", "img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "img4.png"}
    assert "not a supported image" in by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["response"] is None
    good = by_name["img0.jpg"]
    assert good["error"] is None and good["response"].startswith("echo: Describe img0.jpg.")
    assert good["sha256"][:12] in good["response"]  # echo names the bytes it got
    assert good["model"] == "echo-test" and good["model_digest"].startswith("sha256:")
    assert good["timings"]["wall_duration"] > 0 and good["done_reason"] == "stop"
    assert good["timings"]["images"] == [{"original_size": [48, 40], "size": [48, 40], "tokens": 16}]  # as the engine saw it
    assert (stats.done, stats.failed, stats.skipped) == (5, 1, 0) and len(stats.walls) == 5
    assert "described 5 image(s), 1 failed" in stats.summary() and "images/s, p50" in stats.summary()


def test_rerun_skips_what_is_done_and_retries_failures(client, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    run(client, [images], outputs=[str(out)])
    first = read_jsonl(out)
    generated = client.scheduler.runner(echo_model).generated
    (images / "broken.jpg").unlink()
    from .conftest import save_image

    save_image(images / "broken.jpg", 99, quality=90)  # fixed
    stats, _ = run(client, [images], outputs=[str(out)])
    assert (stats.done, stats.failed, stats.skipped) == (1, 0, 5)
    second = read_jsonl(out)
    assert len(second) == 6 and len({r["id"] for r in second}) == 6 and not any(r["error"] for r in second)
    assert [r for r in second if r["path"].endswith("img0.jpg")] == [r for r in first if r["path"].endswith("img0.jpg")]
    assert client.scheduler.runner(echo_model).generated > generated  # only broken.jpg was asked about


def test_overwrite_redoes_and_keeps_each_image_once(client, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    run(client, [images], outputs=[str(out)])
    stats, _ = run(client, [images], outputs=[str(out)], overwrite=True)
    assert (stats.done, stats.skipped) == (5, 0)
    assert len(read_jsonl(out)) == 6


def test_identical_images_are_described_once(client, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    run(client, [images], outputs=[str(out)], prompts=[Prompt("response", "Describe.")])
    shutil.copy(images / "img0.jpg", images / "copy.jpg")
    generated = client.scheduler.runner(echo_model).generated
    stats, _ = run(client, [images], outputs=[str(out)], prompts=[Prompt("response", "Describe.")])
    assert (stats.done, stats.reused, stats.skipped) == (1, 1, 5)
    assert client.scheduler.runner(echo_model).generated == generated
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in read_jsonl(out)}
    assert rows["copy.jpg"]["response"] == rows["img0.jpg"]["response"] and rows["copy.jpg"]["id"] != rows["img0.jpg"]["id"]


def test_a_new_prompt_or_model_is_new_work(client, images, tmp_path, echo_model):
    out = tmp_path / "out.jsonl"
    run(client, [images / "img0.jpg"], outputs=[str(out)])
    run(client, [images / "img0.jpg"], outputs=[str(out)], prompts=[Prompt("response", "Other {filename}")])
    make_echo("echo-same")  # the same model (same digest) under another name: already done
    stats, _ = run(client, [images / "img0.jpg"], outputs=[str(out)], model="echo-same")
    assert stats.skipped == 1
    make_echo("echo-other", tokens=3)  # another model
    stats, _ = run(client, [images / "img0.jpg"], outputs=[str(out)], model="echo-other")
    assert stats.done == 1 and not stats.reused
    rows = read_jsonl(out)
    assert [r["model"] for r in rows] == ["echo-test", "echo-test", "echo-other"]
    assert len({r["key"] for r in rows}) == 3


def test_requests_stay_in_flight(client, images, tmp_path):
    make_echo("slow-echo", delay=0.02, parallel=4)
    run(client, [images], outputs=[str(tmp_path / "o.jsonl")], model="slow-echo", parallel=4)
    assert client.scheduler.runner("slow-echo").max_active == 4


def test_named_prompts_structured_fields_and_tables(client, images, tmp_path, echo_model):
    prompts = [Prompt("caption", "Caption {stem}."), Prompt("meta", "Facts.", format=SCHEMA)]
    outs = [tmp_path / "o.jsonl", tmp_path / "o.csv", tmp_path / "o.parquet"]
    stats, _ = run(client, [images / "img0.jpg", images / "img4.png"], prompts=prompts, outputs=[str(o) for o in outs])
    assert stats.done == 2
    record = read_jsonl(outs[0])[0]
    assert record["caption"].startswith("echo: Caption img") and json.loads(record["meta"])["prompt"] == "Facts."
    assert record["fields"]["prompt"] == "Facts." and len(record["fields"]["images"]) == 1
    assert set(record["prompt"]) == {"caption", "meta"} and set(record["done_reason"]) == {"caption", "meta"}
    rows = list(csv.DictReader(outs[1].open()))
    assert rows[0]["caption"].startswith("echo: Caption") and rows[0]["images"].count("sha256:") == 1
    assert rows[0]["fields.prompt"] == "Facts."  # a field named like a column gets a prefix
    import pyarrow.parquet as pq

    table = pq.read_table(outs[2])
    assert table.num_rows == 2 and str(table.schema.field("images").type) == "list<element: string>"
    assert table.column_names[:5] == ["path", "caption", "meta", "fields.prompt", "images"]


def test_an_answer_that_breaks_the_schema_is_an_error_row(client, images, tmp_path, echo_model):
    schema = {"type": "object", "required": ["caption"]}
    out = tmp_path / "o.jsonl"
    stats, _ = run(client, [images / "img0.jpg"], outputs=[str(out)], prompts=[Prompt("response", "x", format=schema)])
    (record,) = read_jsonl(out)
    assert stats.failed == 1 and "does not match the schema" in record["error"] and record["response"]


def test_sidecars_and_adding_them_on_a_rerun(client, images, tmp_path, echo_model):
    out = tmp_path / "o.jsonl"
    run(client, [images], outputs=[str(out)])
    assert not list(images.rglob("*.txt"))
    (images / "img2.txt").write_text("hand-written caption\n")
    stats, sink = run(client, [images], outputs=[str(out)], sidecar="{response}")
    assert stats.skipped == 5
    assert sorted(p.name for p in images.rglob("*.txt")) == ["img0.txt", "img1.txt", "img2.txt", "img3.txt", "img4.txt"]
    assert (images / "img2.txt").read_text() == "hand-written caption\n"  # kept
    assert (images / "img0.txt").read_text().startswith("echo: Describe img0.jpg.")
    rows = read_jsonl(out)
    assert len(rows) == 6 and sum(bool(r.get("written", {}).get("sidecar")) for r in rows) == 4
    assert sink.effects[0].kept == 1


def test_urls_are_downloaded(client, images, tmp_path, echo_model):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(images))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        listing = tmp_path / "urls.txt"
        base = f"http://127.0.0.1:{server.server_address[1]}"
        listing.write_text(f"{base}/img0.jpg\n{base}/missing.jpg\n")
        out = tmp_path / "o.jsonl"
        stats, _ = run(client, [], lists=[str(listing)], outputs=[str(out)])
    finally:
        server.shutdown()
    rows = {r["path"]: r for r in read_jsonl(out)}
    assert rows[f"{base}/img0.jpg"]["response"] and "HTTP 404" in rows[f"{base}/missing.jpg"]["error"]
    assert (stats.done, stats.failed) == (1, 1)


def test_stdout_when_no_output_is_named(client, images, capsys, echo_model):
    stats, sink = run(client, [images / "img0.jpg"])
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["path"].endswith("img0.jpg") and sink.manifest is None
