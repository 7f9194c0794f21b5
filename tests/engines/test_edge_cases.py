"""Valid but extreme requests, through the Scheduler as the server calls it: every one gets an answer
or an imgscribe error that says what is wrong, never a raw torch / llama.cpp failure.

Transformers on a tiny Gemma 3; llama.cpp on a tiny Qwen2-VL (converted once per session; without
llama-server these skip locally and fail in CI, as test_llamacpp.py's do)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _llamacpp_support as llama_support  # noqa: E402
from _transformers_support import checkpoint  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.transformers.generation import LOGIT_LIMIT, RepeatPenalty, torch_seed  # noqa: E402
from imgscribe.errors import InvalidRequest  # noqa: E402
from imgscribe.images import intake  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402

BAD_SCHEMAS = [
    {"type": "string", "pattern": "(unclosed"},
    {"type": "object", "minProperties": "x"},
    {"type": "foo"},
]


@pytest.fixture(scope="module")
def photo():
    return intake(testing.photo("chelsea"))


def ask(scheduler, model, photo=None, text="Describe this image.", format=None, **options):
    request = ChatRequest(model, [Message("user", text, [photo] if photo is not None else [])],
                          options=Options(**options), format=format)  # fmt: skip
    chunks = list(scheduler.chat(request))
    final = chunks[-1]
    assert final.done and all(not c.done for c in chunks[:-1])
    return "".join(c.text for c in chunks), final


# -- transformers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    from imgscribe.store.importer import create_from_path

    store = Store(tmp_path_factory.mktemp("edge-hf"))
    create_from_path(store, "tiny-gemma3", checkpoint("gemma3"))
    scheduler = Scheduler(store, keep_alive=600)
    yield scheduler, "tiny-gemma3"
    scheduler.close()


def test_num_predict_zero_is_an_empty_answer(hf, photo):
    text, final = ask(*hf, photo, num_predict=0)
    assert text == "" and final.done_reason == "length" and final.metrics.eval_count == 0
    assert final.metrics.prompt_eval_count > 0


def test_top_p_zero_is_greedy(hf, photo):
    greedy, _ = ask(*hf, photo, temperature=0, num_predict=8)
    assert ask(*hf, photo, temperature=1.5, top_p=0, seed=3, num_predict=8)[0] == greedy
    assert ask(*hf, photo, temperature=1.5, top_p=0, seed=4, num_predict=8)[0] == greedy


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 1e-45},
        {"temperature": 1e-300},
        {"temperature": 1e300},
        {"temperature": 1.0, "repeat_penalty": 1e-40},
        {"temperature": 1.0, "repeat_penalty": 1e300},
        {"temperature": 0, "repeat_penalty": 1e-300},
        {"temperature": 1.0, "presence_penalty": 1e300, "frequency_penalty": -1e300},
        {"temperature": 1.0, "min_p": 1.0, "top_k": 10**12},
        {"seed": 2**64},
        {"seed": 10**30},
        {"seed": -(10**30)},
        {"seed": 2**63 - 1},
        {"num_ctx": 1_000_000},
        {"stop": ["", "x" * 5000] + [f"stop{i}" for i in range(100)]},
    ],
    ids=lambda o: ",".join(f"{k}={v if not isinstance(v, list) else len(v)}" for k, v in o.items()),
)
def test_extreme_options_still_answer(hf, photo, options):
    options = {"temperature": 1.0, "seed": 1, **options}
    _, final = ask(*hf, photo, num_predict=3, **options)
    assert final.done_reason in ("length", "stop") and final.metrics.eval_count >= 1


def test_negative_seed_means_random(hf, photo):
    assert torch_seed(-1) is None and torch_seed(2**64 + 5) == 5 and torch_seed(0) == 0
    answers = {ask(*hf, photo, temperature=1.5, seed=-1, num_predict=12)[0] for _ in range(3)}
    assert len(answers) > 1, "seed -1 is a new random sample each time, as in Ollama and llama.cpp"


def test_num_ctx_below_the_prompt_names_num_ctx(hf, photo):
    for ctx in (1, 20):
        with pytest.raises(InvalidRequest, match="num_ctx"):
            ask(*hf, photo, num_ctx=ctx)


def test_extreme_penalties_keep_logits_finite():
    import torch

    scores = torch.tensor([[2.0, -2.0, float("-inf"), 1.0]])
    ids = torch.tensor([[0, 1, 2, 2]])
    for repeat, presence, frequency in ((1e-300, 0.0, 0.0), (1e300, 0.0, 0.0), (1.0, 1e300, -1e300)):
        out = RepeatPenalty(repeat, 4, presence, frequency, prompt_tokens=0)(ids, scores)
        assert not out.isnan().any() and out[0, 2] == float("-inf"), "a masked token stays masked"
        assert out[0, [0, 1, 3]].abs().max() <= LOGIT_LIMIT


# -- llama.cpp ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    from imgscribe.store.import_gguf import manifest_for_gguf

    llama_support.llama_server_binary()  # skips locally, fails in CI, without the binary
    model, mmproj = llama_support.gguf_pair("qwen2_vl")
    store = Store(tmp_path_factory.mktemp("edge-gguf"))
    store.create("tiny-qwen2-vl", manifest_for_gguf("tiny-qwen2-vl", model, mmproj))
    scheduler = Scheduler(store, keep_alive=600, num_parallel=1)
    yield scheduler, "tiny-qwen2-vl"
    scheduler.close()


def test_llamacpp_num_predict_zero_generates_nothing(gguf, photo):
    text, final = ask(*gguf, photo, num_predict=0)
    assert text == "" and final.done_reason == "length" and final.metrics.eval_count == 0


@pytest.mark.parametrize(
    "options",
    [{"repeat_last_n": -1, "repeat_penalty": 1.5}, {"repeat_penalty": 1e-40}, {"repeat_penalty": 1e300},
     {"temperature": 1e-45}, {"seed": 2**64}, {"seed": -(10**30)}],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)  # fmt: skip
def test_llamacpp_extreme_options_still_answer(gguf, photo, options):
    _, final = ask(*gguf, photo, num_predict=2, **{"temperature": 0, **options})
    assert final.done_reason in ("length", "stop")


def test_llamacpp_empty_stop_is_ignored(gguf, photo):
    plain, a = ask(*gguf, photo, temperature=0, num_predict=4)
    with_empty, b = ask(*gguf, photo, temperature=0, num_predict=4, stop=[""])
    assert with_empty == plain and b.metrics.eval_count == a.metrics.eval_count


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=["pattern", "minProperties", "type"])
def test_llamacpp_uncompilable_schema_is_refused(gguf, photo, schema):
    """llama-server would answer unconstrained; the request's own check (ChatRequest) refuses it first."""
    with pytest.raises(InvalidRequest, match="^invalid format: not a valid JSON Schema: "):
        ask(*gguf, photo, format=schema, num_predict=2)


def test_llamacpp_prompt_over_the_context_names_num_ctx(gguf):
    with pytest.raises(InvalidRequest, match="num_ctx"):
        ask(*gguf, text="word " * 6000, num_predict=2)


def test_llamacpp_a_request_for_another_num_ctx_restarts_llama_server_with_it(tmp_path, photo):
    """As Ollama reloads its runner for another num_ctx; a request that does not ask keeps it, and
    one beyond the model's trained context is capped there."""
    from imgscribe.store.import_gguf import manifest_for_gguf, read_gguf

    llama_support.llama_server_binary()
    model, mmproj = llama_support.gguf_pair("qwen2_vl")
    head = read_gguf(model)
    trained = int(head.metadata[f"{head.architecture}.context_length"])
    store = Store(tmp_path / "models")
    store.create("ctx", manifest_for_gguf("ctx", model, mmproj))
    scheduler = Scheduler(store, keep_alive=600, num_parallel=1)
    try:
        ask(scheduler, "ctx", photo, num_predict=1)
        runner = scheduler.runner("ctx")
        assert runner.ctx == 4096 and runner.reloads == 0
        long_text = "word " * 600  # several hundred tokens: more than llama-server's smallest context (256)
        ask(scheduler, "ctx", text=long_text, num_predict=1)
        with pytest.raises(InvalidRequest, match="num_ctx"):
            ask(scheduler, "ctx", text=long_text, num_predict=1, num_ctx=64)
        assert runner.ctx == 64 and runner.reloads == 1
        _, final = ask(scheduler, "ctx", photo, num_predict=1, num_ctx=1024)
        assert final.metrics.prompt_eval_count > 64 and runner.ctx == 1024
        assert runner.props()["default_generation_settings"]["n_ctx"] == 1024
        ask(scheduler, "ctx", photo, num_predict=1)  # no num_ctx asked: the loaded one stays
        assert runner.ctx == 1024 and runner.reloads == 2
        ask(scheduler, "ctx", text="hi", num_predict=1, num_ctx=trained * 4)
        assert runner.ctx == trained and runner.reloads == 3
        assert runner.restarts == 0  # none of this was a crash
    finally:
        scheduler.close()
