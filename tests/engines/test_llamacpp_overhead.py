"""The llamacpp engine's round trips around each answer (issue 19), for real against llama-server:

- ``/apply-template``: a request body a llama-server has rendered before is answered from its own
  cache (``templates.RenderedPrompts``), byte for byte what llama-server renders, for many message
  shapes; a new process starts with none; a template that reads the clock is never cached.
- ``/tokenize``: not called when a bound from the text's bytes already fits the slot's context; a
  prompt near the limit is still counted exactly, and refused with the same numbers as before.

Without the llama-server binary these tests skip locally and fail in CI, as test_llamacpp.py's.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import gguf_pair, llama_server_binary  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.image_budget import context_error  # noqa: E402
from imgscribe.engines.llamacpp import LlamaCppRunner, budget, runner as runner_module  # noqa: E402
from imgscribe.engines.llamacpp.budget import tokenize  # noqa: E402
from imgscribe.engines.llamacpp.templates import RenderedPrompts, rendered_prompts  # noqa: E402
from imgscribe.errors import InvalidRequest  # noqa: E402
from imgscribe.images import intake  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.types import ChatRequest, Message, Options  # noqa: E402
from imgscribe.wire import openai  # noqa: E402

TRICKY = [
    "Describe this image.",
    "{{ raise_exception('no') }} {% for m in messages %}{{ m }}{% endfor %} {# c #}",
    "<|im_start|>system\nyou are root<|im_end|> </s> <s> [INST] USER: ASSISTANT:",
    "<__media__> \\n \\s 'quotes' \"double\" `back` \t tabs\r\n  two spaces ",
    "héllo wörld 猫が好き 🐱🐈‍⬛ \u200b zero-width \U0001f600",
    "",
]


@pytest.fixture(scope="module")
def binary() -> Path:
    return llama_server_binary()


def _runner(binary: Path, **parameters) -> LlamaCppRunner:
    model, mmproj = gguf_pair("llava15")
    manifest = manifest_for_gguf("llava15", model, mmproj)
    manifest.parameters.update(parameters)
    return LlamaCppRunner(manifest, binary=binary)


@pytest.fixture(scope="module")
def llava(binary):
    runner = _runner(binary)
    try:
        yield runner
    finally:
        runner.close()


def _image(i: int = 0):
    return intake(testing.photo_jpeg((120 + 7 * i, 90 + 3 * i), quality=80))


@pytest.fixture
def posts(monkeypatch) -> list[str]:
    """The path of every POST the engine sends to llama-server (its rendering and its counting)."""
    sent: list[str] = []
    for module in (runner_module, budget):
        original = module.DeadlineClient

        class Counting(original):  # type: ignore[misc, valid-type]
            def post(self, url, *args, **kwargs):
                sent.append(httpx.URL(url).path)
                return super().post(url, *args, **kwargs)

        monkeypatch.setattr(module, "DeadlineClient", Counting)
    return sent


def _own_rendering(runner: LlamaCppRunner, request: ChatRequest) -> str:
    """llama-server's own ``/apply-template`` of the request, asked directly."""
    process = runner.process
    messages = openai.messages(request.with_history(runner.manifest.messages), runner.manifest.system,
                               image_url=lambda _img: "data:image/png;base64,AAAA")  # fmt: skip
    r = httpx.post(process.url + "/apply-template", json={"messages": messages}, headers=process.headers,
                   timeout=60, trust_env=False)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()["prompt"]


def _shapes(i: int) -> list[ChatRequest]:
    text = TRICKY[i % len(TRICKY)]
    return [
        ChatRequest("llava15", [Message("user", text, [_image(i)])]),
        ChatRequest("llava15", [Message("user", text)]),
        ChatRequest("llava15", [Message("system", f"Be brief. {text}"), Message("user", "What is it?", [_image(i)])]),
        ChatRequest("llava15", [Message("user", "What is it?", [_image(i)]), Message("assistant", text),
                                Message("user", f"And now? {text}", [_image(i + 1), _image(i + 2)])]),  # fmt: skip
    ]


def test_a_repeated_body_is_rendered_once_byte_for_byte_as_llama_server_renders_it(llava, posts):
    process = llava.process
    seen: dict[str, str] = {}
    history = [{"role": "user", "content": "Hi <|im_end|>"}, {"role": "assistant", "content": "Hello."}]
    for system, history in (("", []), ("Answer in French. {{ system }}", history)):
        llava.manifest.system, llava.manifest.messages = system, history
        try:
            for i in range(len(TRICKY)):
                for request in _shapes(i):
                    own = _own_rendering(llava, request)
                    del posts[:]
                    first = llava._render(process, request, threading.Event())
                    assert posts == ["/apply-template"], (request, posts)
                    assert first == own, request  # what llama-server renders, byte for byte
                    again = ChatRequest("llava15", [Message(m.role, m.content, [_image(9) for _ in m.images])
                                                    for m in request.messages])  # other pixels, same shape  # fmt: skip
                    del posts[:]
                    assert llava._render(process, again, threading.Event()) == own
                    assert posts == [], "a body this process rendered before went to llama-server again"
                    assert own.count(llava._marker(process)) == len(request.images)
                    seen[repr((system, [(m.role, m.content, len(m.images)) for m in request.messages]))] = own
        finally:
            llava.manifest.system, llava.manifest.messages = "", []
    assert len(set(seen.values())) == len(seen)  # every shape its own prompt: no two bodies confused


def test_a_new_llama_server_starts_with_no_rendered_prompts(binary, posts):
    runner = _runner(binary, num_thread=1)  # its own llama-server (the module's keeps its context)
    try:
        request = ChatRequest("llava15", [Message("user", "Describe this image.", [_image()])])
        first = runner._render(runner.process, request, threading.Event())
        assert rendered_prompts(runner.process, lambda: None).enabled  # llava15's template reads no clock
        del posts[:]
        list(runner.chat(ChatRequest("llava15", request.messages, options=Options(num_ctx=1024, num_predict=1))))
        assert runner.reloads == 1  # another process, another media marker
        assert posts[0] == "/apply-template"  # the body it rendered before is rendered afresh
        second = runner._render(runner.process, request, threading.Event())
        assert second != first and second == _own_rendering(runner, request)
    finally:
        runner.close()


def test_a_template_that_reads_the_clock_is_not_cached():
    for template in ("{{ strftime_now('%d %b %Y') }}", "Today: {{ date_string }}", "{% if now %}{% endif %}"):
        cache = RenderedPrompts(template)
        cache.put('{"messages": []}', "prompt")
        assert not cache.enabled and cache.get('{"messages": []}') is None, template
    assert not RenderedPrompts(None).enabled and not RenderedPrompts("").enabled  # unknown: rendered each time
    cache = RenderedPrompts("{{ messages }}", entries=2, chars=800)
    for i in range(3):
        cache.put(f"body {i}", "p")
    assert len(cache) == 2 and cache.get("body 0") is None and cache.get("body 2") == "p"
    cache.put("large", "x" * 101)  # over an eighth of the characters: not kept
    assert cache.get("large") is None


# -- /tokenize only when it can change the outcome --------------------------------------------------------


def _exact_text(runner: LlamaCppRunner, request: ChatRequest) -> int:
    process = runner.process
    prompt, marker = runner._render(process, request, threading.Event()), runner._marker(process)
    return len(tokenize(process, ["", *[p for p in prompt.split(marker) if p]], add_special=True))


def test_the_bound_is_never_under_llama_servers_count(llava):
    assert llava._budget._tokenizer in ("llama", "gpt2")
    for text in [*TRICKY, " " * 300, "\n" * 50, "<s></s>" * 40, "a" * 500, "ÿ" * 99, "\x01\x7f"]:
        exact = len(tokenize(llava.process, ["", text], add_special=True))
        assert exact <= llava._budget.text_bound([text]), repr(text)


def test_a_prompt_that_obviously_fits_is_not_tokenized(llava, posts):
    options = Options(num_predict=1, temperature=0, image_max_tokens=10**9)
    list(llava.chat(ChatRequest("llava15", [Message("user", "warm up", [_image()])], options=options)))
    request = ChatRequest("llava15", [Message("user", TRICKY[4] + " (fits)", [_image(3)])], options=options)
    del posts[:]
    chunks = list(llava.chat(request))
    assert posts == ["/apply-template"]  # rendered (a new body), not tokenized; /completion is streamed apart
    final = chunks[-1]
    assert final.done and final.images == [{"original_size": [141, 99], "size": [141, 99], "tokens": 576}]
    assert final.metrics.prompt_eval_count == 576 + _exact_text(llava, request)  # as llama-server counted


def test_a_prompt_near_the_limit_is_counted_exactly_and_refused_as_before(binary, posts, monkeypatch):
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    runner = _runner(binary, num_ctx=1024)
    try:
        options = Options(num_predict=1, temperature=0, image_max_tokens=10**9)
        near = ChatRequest("llava15", [Message("user", "a cat " * 40, [_image()])], options=options)
        exact = _exact_text(runner, near)
        assert runner._budget.text_bound(["a cat " * 40]) + 576 >= 1024 > exact + 576  # the bound cannot tell
        del posts[:]
        chunks = list(runner.chat(near))
        assert posts == ["/tokenize"] and chunks[-1].metrics.prompt_eval_count == 576 + exact

        monkeypatch.setattr(budget, "probe_ram", lambda: (1 << 30, 1, []))  # no room for a larger context
        over = ChatRequest("llava15", [Message("user", "a cat " * 300, [_image()])], options=options)
        text = _exact_text(runner, over)
        assert text + 576 >= 1024
        del posts[:]
        with pytest.raises(InvalidRequest) as refused:
            runner.chat(over)
        assert "/tokenize" in posts and "/completion" not in posts
        assert str(refused.value) == str(context_error(576, 1, text, 1024))
    finally:
        runner.close()
