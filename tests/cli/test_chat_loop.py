"""The interactive chat, driven line by line."""

from __future__ import annotations

from PIL import Image

from imgscribe.cli.run import chat_loop
from imgscribe.types import Chunk, Metrics


class Recorder:
    """A backend that records requests and answers with the number of images it saw."""

    where = "test"

    def __init__(self):
        self.requests = []

    def chat(self, request):
        self.requests.append(request)
        yield Chunk(text=f"saw {len(request.images)} image(s)")
        yield Chunk(done=True, done_reason="stop", metrics=Metrics())


def drive(lines, backend, **kwargs):
    feed, out = iter(lines), []

    def read_line(_prompt):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    chat_loop(backend, "m", read_line, out.append, **kwargs)
    return "".join(out)


def test_images_in_a_line_are_attached_and_history_kept(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    backend = Recorder()
    out = drive(["what is ./a.png", "and now?", "/bye", "never read"], backend)
    assert out.count("saw 1 image(s)") == 2
    first, second = backend.requests
    assert first.messages[-1].content == "what is" and len(first.messages[-1].images) == 1
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]


def test_a_bad_line_does_not_end_the_session(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backend = Recorder()
    out = drive(["look at ./missing.png", "/clear", "hello"], backend)
    assert "Error: image not found: ./missing.png" in out
    assert "Cleared" in out and len(backend.requests) == 1


def test_system_prompt_survives_clear():
    backend = Recorder()
    drive(["/clear", "hi"], backend, system="be brief")
    assert [m.role for m in backend.requests[0].messages] == ["system", "user"]
