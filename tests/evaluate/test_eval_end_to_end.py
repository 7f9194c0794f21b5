"""``imgscribe eval`` end to end: builtin against a tiny transformers model (a random-weight Gemma 3
built in the test) on the built-in sets, through the CLI, interrupted part-way and resumed, then
``--compare``. The transformers runner sits behind a wrapper that counts requests and raises
KeyboardInterrupt on request k.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from imgscribe import testing
from imgscribe.cli import main
from imgscribe.engines import get_engine, register
from imgscribe.store.importer import create_from_path

SETS = "docs,easyvqa,photos,photos-pope"
LIMIT = 1  # the builtin model takes seconds per image on a 2-core machine


class _CountingRunner:
    def __init__(self, inner, engine):
        self.inner, self.engine = inner, engine
        self.info, self.parallel, self.memory = inner.info, inner.parallel, inner.memory

    def chat(self, request, cancel=None):
        self.engine.calls += 1
        if self.engine.calls == self.engine.interrupt_at:
            raise KeyboardInterrupt  # Ctrl-C while this model answers
        return self.inner.chat(request, cancel)

    def close(self):
        self.inner.close()


class _CountingEngine:
    name = "eval-test-counting"
    calls = 0
    interrupt_at: int | None = None

    def load(self, manifest):
        real = manifest.model_copy(deep=True)
        real.engine = "transformers"
        return _CountingRunner(get_engine("transformers").load(real), self)


@pytest.fixture
def second_model(store, tmp_path):
    engine = _CountingEngine()
    module = types.ModuleType("imgscribe_eval_test_engine")
    module.ENGINE = engine
    sys.modules[module.__name__] = module
    register("eval-test-counting", module.__name__)
    create_from_path(store, "tiny", testing.build("gemma3", tmp_path / "gemma3"))
    manifest = store.resolve("tiny")
    manifest.engine = "eval-test-counting"
    manifest.info.digest = ""  # the store computes a new one (the engine is part of it)
    store.create("tiny", manifest)
    yield engine
    sys.modules.pop(module.__name__, None)


def test_eval_builtin_against_a_second_model_with_resume(second_model, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--models", "builtin,tiny", "--dataset", SETS, "--limit", str(LIMIT), "--out", str(out), "--no-meteor"]
    per_model = 4 * LIMIT

    second_model.interrupt_at = 3  # builtin finishes, then tiny is interrupted on its 3rd answer
    assert main(argv) == 130
    cached = [json.loads(line) for line in (out / "cache" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["model"] == "tiny" for r in cached) == 2
    builtin_cached = sum(r["model"] == "builtin" for r in cached)

    second_model.interrupt_at, second_model.calls = None, 0
    assert main(argv) == 0
    assert second_model.calls == per_model - 2  # only the missing answers ran

    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"builtin", "tiny"}
    assert results["models"]["tiny"]["answers_cached"] == 2
    assert results["models"]["builtin"]["answers_cached"] == builtin_cached
    assert {t: s["n"] for t, s in results["tasks"].items()} == {t: LIMIT for t in SETS.split(",")}
    assert len(results["results"]) == 8
    for r in results["results"]:
        assert r["n"] == LIMIT and r["primary_value"] is not None, r
        assert r["latency_s"]["mean"] is not None
    for task in results["tasks"].values():
        assert task["prompt"] and task["options"]["temperature"] == 0 and task["source"]
    assert results["models"]["builtin"]["digest"] and results["models"]["tiny"]["memory"]["memory_bytes"] > 0

    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * per_model
    assert all(r["prompt"] and r["image_sha256"] and "scores" in r for r in rows)

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # one plot per task
    assert "Answer the question using a single word or phrase." in page and "easy-vqa" in page
    assert "<script" not in page and "http://" not in page.split("</style>")[1].split("scikit-image")[0]

    capsys.readouterr()
    assert main(["eval", "--compare", str(out), str(out)]) == 0
    shown = capsys.readouterr().out
    assert "builtin" in shown and "tiny" in shown and "photos-pope" in shown


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["eval", "--dataset", "docs"]) == 2
    assert "--models" in capsys.readouterr().err
    assert main(["eval", "--models", "builtin"]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["eval", "--compare"]) == 2
    assert main(["eval", "--compare", str(tmp_path)]) == 1
    assert "no results.json" in capsys.readouterr().err
    assert main(["eval", "--list-datasets"]) == 0
    assert "photos-pope" in capsys.readouterr().out
