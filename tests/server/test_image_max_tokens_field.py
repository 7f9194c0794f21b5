"""``image_max_tokens`` from every door: Ollama's ``options`` and the OpenAI API's extension field
(``extra_body``); a bad value is a 400 naming it, before any work."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("bad", ["lots", -3, 1.5, True])
def test_a_bad_budget_is_a_400_from_both_apis(server, bad):
    ollama = httpx.post(server.url + "/api/chat", json={"model": "llava", "stream": False, "options": {"image_max_tokens": bad},
                        "messages": [{"role": "user", "content": "hi"}]}, trust_env=False, timeout=30)  # fmt: skip
    openai = httpx.post(server.url + "/v1/chat/completions", json={"model": "llava", "image_max_tokens": bad,
                        "messages": [{"role": "user", "content": "hi"}]}, trust_env=False, timeout=30)  # fmt: skip
    for answer in (ollama, openai):
        assert answer.status_code == 400, answer.text
        assert "image_max_tokens" in answer.text


def test_a_budget_is_accepted_by_both_apis(server):
    ollama = httpx.post(server.url + "/api/chat", json={"model": "llava", "stream": False, "options": {"image_max_tokens": 256},
                        "messages": [{"role": "user", "content": "hi"}]}, trust_env=False, timeout=30)  # fmt: skip
    openai = httpx.post(server.url + "/v1/chat/completions", json={"model": "llava", "image_max_tokens": 256,
                        "messages": [{"role": "user", "content": "hi"}]}, trust_env=False, timeout=30)  # fmt: skip
    assert ollama.status_code == 200 and openai.status_code == 200, (ollama.text, openai.text)


def test_what_each_image_became_reaches_a_remote_client(server, art):
    """The final object's ``images`` (imgscribe's field) comes back as the chunk's, through the CLI's client."""
    from imgscribe.client.remote import RemoteClient
    from imgscribe.images import intake
    from imgscribe.types import ChatRequest, Message

    request = ChatRequest("llava", [Message("user", "what?", [intake(art.read_bytes())])])
    final = [c for c in RemoteClient(server.url, api_key="").chat(request) if c.done][0]
    assert final.images == [{"original_size": [96, 64], "size": [96, 64], "tokens": 16}]
