"""The harness: answers through the scheduler, the content-keyed cache, resume after an interruption."""

from __future__ import annotations

import json

import pytest
from conftest import CountingClient, make_echo
from PIL import Image

from imgscribe.client import LocalClient
from imgscribe.evaluate import evaluate
from imgscribe.evaluate.harness import PredictionCache, cache_key, model_digest, postprocess

SETS = ["docs", "easyvqa"]  # 3 samples each with limit=3


def _run(scheduler, out, models=("echo-a", "echo-b"), sets=SETS, **kw):
    return evaluate(list(models), list(sets), out, limit=3, client=_client(scheduler), meteor=False, **kw)


def _client(where):
    """A counting client as it is; the plain scheduler in an in-process client."""
    return where if isinstance(where, LocalClient) else LocalClient(where)


@pytest.fixture
def two_models(store):
    make_echo(store, "echo-a")
    make_echo(store, "echo-b", tokens=3)


def test_interrupted_run_resumes_with_only_the_missing_answers(two_models, scheduler, tmp_path):
    out = tmp_path / "out"
    first = CountingClient(scheduler, interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        _run(first, out)
    assert first.total == 5
    lines = (out / "cache" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 5  # every answer was on disk before the interruption

    second = CountingClient(scheduler)
    results = _run(second, out)["results"]
    assert second.total == 2 * 2 * 3 - 5  # only the missing answers ran
    assert sum(r["n_cached"] for r in results["results"]) == 5
    assert all(r["n"] == 3 and r["n_errors"] == 0 for r in results["results"])

    third = CountingClient(scheduler)
    _run(third, out)
    assert third.total == 0  # all cached now; the model is not even loaded
    assert (out / "results.json").is_file() and (out / "report.html").is_file()


def test_changed_prompt_options_or_model_re_run(two_models, store, scheduler, tmp_path):
    out = tmp_path / "out"
    _run(scheduler, out)
    counting = CountingClient(scheduler)
    _run(counting, out, prompt="Q: {question}")
    assert counting.total == 12  # a new prompt: nothing reused
    counting = CountingClient(scheduler)
    _run(counting, out, options={"num_predict": 7})
    assert counting.total == 12  # new options: nothing reused
    make_echo(store, "echo-b", tokens=4)  # same name, new settings: a new digest
    counting = CountingClient(scheduler)
    _run(counting, out)
    assert counting.calls == {"echo-b": 6}


def test_changed_image_re_runs_only_that_sample(store, scheduler, tmp_path):
    make_echo(store, "echo-a")
    for i, color in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (16, 16), color).save(tmp_path / f"{i}.png")
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"image": f"{i}.png", "question": "Colour?", "answers": ["x"]}) + "\n"
                            for i in range(3)))  # fmt: skip
    out = tmp_path / "out"
    _run(scheduler, out, models=["echo-a"], sets=[str(data)])
    Image.new("RGB", (16, 16), "white").save(tmp_path / "1.png")  # same name, new content
    counting = CountingClient(scheduler)
    _run(counting, out, models=["echo-a"], sets=[str(data)])
    assert counting.total == 1


def test_errors_and_empty_answers_are_not_cached(store, scheduler, tmp_path):
    make_echo(store, "broken", fail_after=0)
    make_echo(store, "silent", tokens=0)
    out = tmp_path / "out"
    results = _run(scheduler, out, models=["broken", "silent"], sets=["docs"])["results"]
    by_model = {r["model"]: r for r in results["results"]}
    assert by_model["broken"]["n_errors"] == 3 and "simulated failure" in by_model["broken"]["errors"][0]
    assert by_model["broken"]["primary_value"] is None  # no answer at all: no score, not a zero
    assert by_model["silent"]["n_errors"] == 0 and by_model["silent"]["scores"]["anls"] == 0.0
    assert not (out / "cache" / "predictions.jsonl").exists()
    counting = CountingClient(scheduler)
    _run(counting, out, models=["broken", "silent"], sets=["docs"])
    assert counting.calls == {"broken": 3, "silent": 3}  # retried


def test_unknown_model_fails_before_any_work(scheduler, tmp_path):
    from imgscribe.errors import ModelNotFound

    with pytest.raises(ModelNotFound):
        _run(scheduler, tmp_path / "out", models=["nope"])
    assert not (tmp_path / "out").exists()


def test_cache_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    cache = PredictionCache(path)
    cache.put({"key": "k1", "prediction": "a"})
    with path.open("a") as f:
        f.write('{"key": "k2", "predic')  # killed mid-write
    again = PredictionCache(path)
    assert again.get("k1")["prediction"] == "a" and again.get("k2") is None and again.skipped == 1


def test_cache_key_covers_model_prompt_options_and_image():
    base = cache_key("sha256:m", "p", {"temperature": 0}, "img")
    assert base == cache_key("sha256:m", "p", {"temperature": 0}, "img")
    others = [cache_key("sha256:n", "p", {"temperature": 0}, "img"), cache_key("sha256:m", "q", {"temperature": 0}, "img"),
              cache_key("sha256:m", "p", {"temperature": 1}, "img"), cache_key("sha256:m", "p", {"temperature": 0}, "img2")]  # fmt: skip
    assert base not in others and len(set(others)) == 4


def test_model_digest_follows_the_manifest(store, scheduler):
    make_echo(store, "echo-a")
    first = model_digest(LocalClient(scheduler), "echo-a")
    make_echo(store, "echo-a")  # re-created, identical: same digest (modified_at is left out)
    assert model_digest(LocalClient(scheduler), "echo-a") == first
    make_echo(store, "echo-a", tokens=2)
    assert model_digest(LocalClient(scheduler), "echo-a") != first


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes!", "Yes"), ("The answer is 3.5.\nMore text", "The answer is 3.5."), ("**Paris**", "Paris"),
    ("\n\n  INV-4345  \n", "INV-4345"), ("\"circle\"", "circle"), ("Red. It is a red circle.", "Red."), ("", ""),
])  # fmt: skip
def test_short_answer_postprocess(text, expected):
    assert postprocess(text, "short-answer") == expected


def test_a_model_that_does_not_load_is_reported_not_fatal(store, scheduler, tmp_path):
    make_echo(store, "echo-a")
    make_echo(store, "unloadable", fail_load=True)
    out = _run(scheduler, tmp_path / "out", models=["unloadable", "echo-a"], sets=["docs"])
    results = out["results"]
    assert "cannot load unloadable" in results["models"]["unloadable"]["error"]
    assert any("cannot load unloadable" in n for n in results["notes"])
    by_model = {r["model"]: r for r in results["results"]}
    assert by_model["unloadable"]["n_errors"] == 3 and by_model["echo-a"]["n_errors"] == 0
    assert "cannot load unloadable" in out["paths"]["html"].read_text()


def test_each_prediction_records_what_its_image_became(two_models, scheduler, tmp_path):
    """The image's size as the model got it and its prompt tokens, beside the answer (from the engine's report)."""
    out = tmp_path / "out"
    _run(scheduler, out, models=("echo-a",), sets=["docs"])
    records = [json.loads(line) for line in (out / "cache" / "predictions.jsonl").read_text().splitlines()]
    assert records and all(len(r["images"]) == 1 and r["images"][0]["tokens"] == 16 for r in records)
    assert all(r["images"][0]["size"] == r["images"][0]["original_size"] for r in records)
