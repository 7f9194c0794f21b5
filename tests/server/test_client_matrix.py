"""Third-party clients against the live server, each with an image, as a new user would call them
(``notes/clients.md``): LangChain (``langchain-ollama``, ``langchain-openai`` with chat completions
and with the Responses API), litellm (``ollama_chat/``, ``ollama/``, ``openai/``, and
``get_model_info``'s context length), simonw's ``llm`` with ``llm-ollama`` (a prompt with an
attachment, aliases grouped by digest). A regression in any of them fails here."""

from __future__ import annotations

import base64

import httpx
import pytest

from .conftest import image_bytes

pytestmark = pytest.mark.timeout(120)
PNG = image_bytes()
URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
WANT = "1 image(s): 64x48"


def _langchain_message(text: str):
    from langchain_core.messages import HumanMessage

    return HumanMessage(content=[{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": URI}}])


def test_langchain_ollama(server):
    from langchain_ollama import ChatOllama

    chat = ChatOllama(model="llava", base_url=server.url)
    answer = chat.invoke([_langchain_message("describe")])
    assert answer.content.startswith("echo: describe") and WANT in answer.content
    streamed = "".join(chunk.content for chunk in chat.stream([_langchain_message("stream")]))
    assert streamed.startswith("echo: stream") and WANT in streamed


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat-completions", "responses"])
def test_langchain_openai(server, responses_api):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="llava", base_url=server.url + "/v1", api_key="imgscribe", max_retries=0,
                      use_responses_api=responses_api)  # fmt: skip
    answer = chat.invoke([_langchain_message("describe")])
    assert answer.text.startswith("echo: describe") and WANT in answer.text
    streamed = "".join(chunk.text for chunk in chat.stream([_langchain_message("stream")]))
    assert streamed.startswith("echo: stream") and WANT in streamed


@pytest.fixture
def litellm(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list
    import litellm

    litellm.telemetry = False
    return litellm


@pytest.mark.parametrize("prefix", ["ollama_chat", "ollama", "openai"])
def test_litellm(server, litellm, prefix):
    base = server.url + "/v1" if prefix == "openai" else server.url
    messages = [{"role": "user", "content": [{"type": "text", "text": "describe"},
                                             {"type": "image_url", "image_url": {"url": URI}}]}]  # fmt: skip
    res = litellm.completion(model=f"{prefix}/llava", api_base=base, api_key="imgscribe", messages=messages)
    text = res.choices[0].message.content  # ollama/ goes to /api/generate in litellm's own prompt format
    assert text.startswith("echo: ") and "describe" in text and WANT in text


def test_litellm_model_info_has_the_context_length(server, litellm, monkeypatch):
    monkeypatch.setenv("OLLAMA_API_BASE", server.url)
    assert litellm.get_model_info("ollama/llava")["max_tokens"] == 4096  # the echo model's
    assert litellm.get_model_info("ollama/builtin")["max_tokens"] == 4096  # builtin's own


@pytest.fixture
def llm_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    import llm

    return llm


def test_llm_ollama_prompt_with_an_attachment(llm_env):
    llm = llm_env
    model = llm.get_model("ollama/llava:latest")
    text = model.prompt("describe", attachments=[llm.Attachment(content=PNG)], stream=False).text()
    assert text.startswith("echo: describe") and WANT in text


def test_llm_ollama_groups_copies_by_digest(server, llm_env):
    assert httpx.post(server.url + "/api/copy", json={"source": "llava", "destination": "llava-alias"}).status_code == 200
    ids = ("ollama/llava:latest", "ollama/llava-alias:latest")
    models = [m for m in llm_env.get_models_with_aliases() if m.model.model_id in ids]
    assert len(models) == 1, [m.model.model_id for m in models]  # one model, the other name an alias
    assert set(ids) <= {models[0].model.model_id, *models[0].aliases}
    copied = [m for m in llm_env.get_models_with_aliases() if m.model.model_id.startswith("ollama/builtin")]
    httpx.post(server.url + "/api/copy", json={"source": "builtin", "destination": "my-builtin"})
    again = [m for m in llm_env.get_models_with_aliases() if "ollama/my-builtin:latest" in (m.model.model_id, *m.aliases)]
    assert len(copied) == 1 and len(again) == 1 and "ollama/builtin:latest" in (again[0].model.model_id, *again[0].aliases)
