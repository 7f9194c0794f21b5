"""The transformers runner honours Ollama's options, structured output, cancellation and the
conversation, on a tiny Gemma 3 (the smallest prompt of the families: quick to run many times)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_support import checkpoint, reference_processor  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.transformers import ENGINE  # noqa: E402
from imgscribe.engines.transformers.generation import Detokenizer, RepeatPenalty, hold_back  # noqa: E402
from imgscribe.errors import InvalidRequest  # noqa: E402
from imgscribe.images import intake  # noqa: E402
from imgscribe.store.importer import describe_hf_folder  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402

FAMILY = "gemma3"


@pytest.fixture(scope="module")
def manifest():
    m = describe_hf_folder(checkpoint(FAMILY))
    m.name = m.info.name = "tiny-gemma3:latest"
    return m


@pytest.fixture(scope="module")
def runner(manifest):
    r = ENGINE.load(manifest)
    yield r
    r.close()


@pytest.fixture(scope="module")
def photo():
    return intake(testing.photo("chelsea"))


def ask(runner, photo=None, text="Describe this image.", cancel=None, messages=None, format=None, **options):
    msgs = messages or [Message("user", text, [photo] if photo is not None else [])]
    chunks = list(runner.chat(ChatRequest("tiny", msgs, options=Options(**options), format=format), cancel))
    final = chunks[-1]
    assert final.done and all(not c.done for c in chunks[:-1])
    return "".join(c.text for c in chunks), final


def test_greedy_is_repeatable_and_num_predict_limits(runner, photo):
    a, fa = ask(runner, photo, temperature=0, num_predict=12)
    b, fb = ask(runner, photo, temperature=0, num_predict=12)
    assert a == b and fa.metrics.eval_count == fb.metrics.eval_count
    short, fs = ask(runner, photo, temperature=0, num_predict=3)
    assert fs.done_reason == "length" and fs.metrics.eval_count == 3


def test_seed_top_k_and_top_p(runner, photo):
    greedy, _ = ask(runner, photo, temperature=0, num_predict=16)
    one, _ = ask(runner, photo, temperature=1.5, seed=7, num_predict=16)
    again, _ = ask(runner, photo, temperature=1.5, seed=7, num_predict=16)
    other, _ = ask(runner, photo, temperature=1.5, seed=8, num_predict=16)
    assert one == again, "the same seed gives the same sample"
    assert one != other, "another seed gives another sample"
    assert one != greedy
    assert ask(runner, photo, temperature=1.5, top_k=1, seed=3, num_predict=16)[0] == greedy, "top_k=1 is greedy"
    assert ask(runner, photo, temperature=1.5, top_p=1e-6, seed=3, num_predict=16)[0] == greedy, "tiny top_p too"


def test_stop_sequence_cuts_the_answer(runner, photo):
    full, _ = ask(runner, photo, temperature=0, num_predict=16)
    visible = [i for i, ch in enumerate(full) if not ch.isspace()]
    assert len(visible) >= 4, full
    stop = full[visible[2] : visible[3] + 1]  # two visible characters from the middle of the answer
    text, final = ask(runner, photo, temperature=0, num_predict=16, stop=[stop])
    assert text == full[: full.index(stop)] and final.done_reason == "stop"
    assert final.metrics.eval_count < 16


def test_repeat_penalty_changes_the_greedy_answer(runner, photo):
    plain, _ = ask(runner, photo, temperature=0, num_predict=24)
    penalised, _ = ask(runner, photo, temperature=0, num_predict=24, repeat_penalty=8.0, repeat_last_n=64)
    assert plain != penalised


def test_repeat_penalty_processor_follows_llama_cpp():
    import torch

    scores = torch.tensor([[2.0, -2.0, 1.0, 4.0]])
    ids = torch.tensor([[9, 0, 1, 1]])  # 9: outside the window of 3; token 1 twice
    out = RepeatPenalty(2.0, last_n=3, presence=0.5, frequency=0.25, prompt_tokens=0)(ids, scores)
    assert out.tolist() == [[2.0 / 2 - 0.5 - 0.25, -2.0 * 2 - 0.5 - 0.5, 1.0, 4.0]]


def test_json_schema_output_is_valid(runner, photo):
    schema = {
        "type": "object",
        "properties": {
            "animal": {"type": "string", "enum": ["cat", "dog", "bird"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
            "indoor": {"type": "boolean"},
        },
        "required": ["animal", "count", "indoor"],
        "additionalProperties": False,
    }
    for seed in (1, 2):
        text, final = ask(runner, photo, format=schema, temperature=1.0, seed=seed, num_predict=64)
        assert final.done_reason == "stop", text
        jsonschema.validate(json.loads(text), schema)


def test_json_format_starts_an_object(runner, photo):
    text, final = ask(runner, photo, format="json", temperature=0, num_predict=24)
    assert text.startswith("{")
    if final.done_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_bad_schema_is_refused_before_any_token(runner, photo):
    with pytest.raises(InvalidRequest):
        bad = {"type": "object", "minProperties": "x"}
        runner.chat(ChatRequest("tiny", [Message("user", "x", [photo])], format=bad))
    with pytest.raises(InvalidRequest):
        runner.chat(ChatRequest("tiny", [Message("user", "x")], format="yaml"))


def test_cancel_and_early_close_stop_generation(runner, photo):
    cancel = threading.Event()
    stream = runner.chat(ChatRequest("tiny", [Message("user", "Describe.", [photo])], Options(num_predict=500)), cancel)
    next(stream)
    cancel.set()
    final = list(stream)[-1]
    assert final.done_reason == "cancel" and final.metrics.eval_count < 500
    stream = runner.chat(ChatRequest("tiny", [Message("user", "Describe.", [photo])], Options(num_predict=2000)))
    next(stream)
    stream.close()  # the client went away
    start = time.monotonic()
    _, final = ask(runner, photo, num_predict=1)
    assert time.monotonic() - start < 30 and final.metrics.eval_count == 1, "the abandoned generation ended"


def test_prompt_over_the_context_is_refused(runner, photo):
    with pytest.raises(InvalidRequest, match="context"):
        runner.chat(ChatRequest("tiny", [Message("user", "Describe.", [photo])], Options(num_ctx=20)))


def test_conversation_with_history_system_and_no_image(runner, photo, manifest):
    processor = reference_processor(checkpoint(FAMILY), FAMILY)
    history = [
        Message("system", "You are terse."),
        Message("user", "What is this?", [photo]),
        Message("assistant", "A cat."),
        Message("user", "What colour is it?"),
    ]
    _, final = ask(runner, messages=history, num_predict=2)
    reference = processor.apply_chat_template(
        [
            {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
            {"role": "user", "content": [{"type": "image", "image": photo.pil},
                                         {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
            {"role": "user", "content": [{"type": "text", "text": "What colour is it?"}]},
        ],
        add_generation_prompt=True, tokenize=True, return_dict=True,
    )  # fmt: skip
    assert final.metrics.prompt_eval_count == len(reference["input_ids"][0])
    assert final.metrics.image_encode_duration > 0

    _, text_only = ask(runner, text="Hello", num_predict=1)
    assert text_only.metrics.image_encode_duration == 0
    expected = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}], add_generation_prompt=True, tokenize=True,
        return_dict=True,
    )["input_ids"]  # fmt: skip
    assert text_only.metrics.prompt_eval_count == len(expected[0])


def test_manifest_system_and_default_options(manifest, photo):
    custom = manifest.model_copy(deep=True)
    custom.system = "Always answer in French."
    custom.parameters = {"num_predict": 2, "temperature": 0}
    r = ENGINE.load(custom)
    try:
        _, final = ask(r, photo)
        assert final.done_reason == "length" and final.metrics.eval_count == 2, "the model's default num_predict"
        _, final3 = ask(r, photo, num_predict=3)
        assert final3.metrics.eval_count == 3, "a request's option wins over the model's"
        plain = reference_processor(checkpoint(FAMILY), FAMILY).apply_chat_template(
            [{"role": "user", "content": [{"type": "image", "image": photo.pil},
                                          {"type": "text", "text": "Describe this image."}]}],
            add_generation_prompt=True, tokenize=True, return_dict=True,
        )["input_ids"]  # fmt: skip
        assert final.metrics.prompt_eval_count > len(plain[0]), "the system prompt is in the prompt"
    finally:
        r.close()


def test_runner_reports_memory_and_one_slot(runner):
    assert runner.parallel == 1 and runner.memory > 100_000
    assert runner.info.name == "tiny-gemma3:latest"


def test_detokenizer_releases_whole_characters():
    tok = reference_processor(checkpoint(FAMILY), FAMILY).tokenizer
    text = "Café 🐱 naïve"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    d = Detokenizer(tok)
    pieces = [d.add(i) for i in ids] + [d.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)


def test_hold_back_keeps_a_possible_stop_prefix():
    assert hold_back("hello wo", ["world"]) == ("hello ", "wo", False)
    assert hold_back("hello world!", ["world"]) == ("hello ", "", True)
    assert hold_back("abc", []) == ("abc", "", False)


def test_consecutive_turns_merge_and_an_assistant_prefix_is_continued(runner, photo):
    from imgscribe.engines.transformers.prompt import conversation

    messages, n = conversation(ChatRequest("tiny", [Message("user", "First."), Message("user", "Second.", [photo])]))
    assert n == 1 and len(messages) == 1
    assert [p["type"] for p in messages[0]["content"]] == ["image", "text"]
    assert messages[0]["content"][1]["text"] == "First.\n\nSecond."

    prefix = [Message("user", "What is this?", [photo]), Message("assistant", "It is a")]
    _, final = ask(runner, messages=prefix, num_predict=1)
    reference = reference_processor(checkpoint(FAMILY), FAMILY).apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "image": photo.pil}, {"type": "text", "text": "What is this?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "It is a"}]}],
        continue_final_message=True, tokenize=True, return_dict=True,
    )["input_ids"]  # fmt: skip
    assert final.metrics.prompt_eval_count == len(reference[0])
