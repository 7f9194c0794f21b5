"""ChatRequest's constructor is the one check of a request: every door refuses the same bad input
with the same sentence (the Python API, the CLI, Ollama's routes), and what passes is what engines
are given."""

from __future__ import annotations

import httpx
import pytest

import imgscribe
from imgscribe.cli.common import parse_format
from imgscribe.errors import InvalidRequest
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.types import ChatRequest, Message, Options

from server.conftest import add_echo, live_server  # tests/server, a package beside this file

BAD_SCHEMA = {"type": 12}
WIZARD = "messages[0].role: invalid role 'wizard': use system, user, assistant or tool"


def _message(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


@pytest.fixture
def served(tmp_path):
    """A live server with an echo model named llava."""
    store = Store(tmp_path / "served")
    add_echo(store, "llava")
    scheduler = Scheduler(store, num_parallel=0)
    try:
        with live_server(scheduler) as live:
            yield live
    finally:
        scheduler.close()


def test_the_constructor_checks_what_every_door_sends():
    with pytest.raises(InvalidRequest) as role:
        ChatRequest("m", [Message("wizard", "hi")])  # type: ignore[arg-type]
    assert _message(role) == WIZARD
    with pytest.raises(InvalidRequest, match="^model is required$"):
        ChatRequest(" ", [])
    with pytest.raises(InvalidRequest, match="^invalid format: not a valid JSON Schema: 12 is not valid"):
        ChatRequest("m", [], format=BAD_SCHEMA)
    with pytest.raises(InvalidRequest, match="^invalid format: \"yaml\"; expected"):
        ChatRequest("m", [], format="yaml")
    with pytest.raises(InvalidRequest, match='^option "temperature": Input should be greater than or equal to 0'):
        ChatRequest("m", [], options={"temperature": -1})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="^invalid think value 'loud'"):
        ChatRequest("m", [], think="loud")


def test_what_passes_is_normalised():
    request = ChatRequest("m", [Message("user", "hi")], options={"temperature": 0.5}, format="")  # type: ignore[arg-type]
    assert isinstance(request.options, Options) and request.options.temperature == 0.5
    assert request.format is None


def test_the_python_api_and_the_server_say_the_same(monkeypatch, tmp_path, served):
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "models"))
    with pytest.raises(InvalidRequest) as api:
        imgscribe.chat("builtin", [{"role": "wizard", "content": "hi"}])
    assert _message(api) == WIZARD
    r = httpx.post(served.url + "/api/chat", json={"model": "llava", "messages": [{"role": "wizard", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"] == WIZARD
    r = httpx.post(served.url + "/api/generate", json={"model": "llava", "prompt": "x", "format": BAD_SCHEMA})
    served_error = r.json()["error"]
    with pytest.raises(InvalidRequest) as direct:
        ChatRequest("m", [], format=BAD_SCHEMA)
    with pytest.raises(InvalidRequest) as cli:
        parse_format('{"type": 12}')
    assert served_error == _message(direct) and _message(cli) == f"--format: {served_error}"


def test_options_are_checked_alike_at_every_door(monkeypatch, tmp_path, served):
    from imgscribe.cli.common import parse_options

    sentence = 'option "temperature" must be of type float, got a boolean'
    with pytest.raises(InvalidRequest) as direct:
        ChatRequest("m", [], options={"temperature": True})  # type: ignore[arg-type]
    assert _message(direct) == sentence
    with pytest.raises(InvalidRequest) as cli:
        parse_options(["temperature=true"])
    assert _message(cli) == f"--option: {sentence}"
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "models"))
    with pytest.raises(InvalidRequest) as api:
        imgscribe.ask(_png(tmp_path), "what", options={"temperature": True})
    assert _message(api) == sentence
    r = httpx.post(served.url + "/api/generate", json={"model": "llava", "prompt": "x", "options": {"temperature": True}})
    assert r.status_code == 400 and r.json()["error"] == sentence
    # Ollama's names that no engine here uses pass everywhere; a name that is no option is the
    # command line's typing mistake, and ignored by the server as Ollama's ignores it.
    assert parse_options(["num_gpu=20"]) == Options()
    with pytest.raises(InvalidRequest, match="^--option: unknown option 'temprature'"):
        parse_options(["temprature=0.2"])


def _png(folder) -> str:
    from PIL import Image as PILImage

    path = folder / "red.png"
    PILImage.new("RGB", (32, 32), "red").save(path)
    return str(path)
