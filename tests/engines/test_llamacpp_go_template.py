"""A model with Ollama's Go template is prompted from it, as Ollama prompts it: a tiny LLaVA GGUF
without a chat template (llama-server alone would use ChatML) and Ollama's vicuna template.

Without the binary these tests skip locally (with the reason) and fail in CI (CI=true).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _llamacpp_support import gguf_pair, live_server, llama_server_binary, photo_b64  # noqa: E402

from imgscribe.engines.llamacpp.prompt import MEDIA_MARKER, go_template_prompt  # noqa: E402
from imgscribe.errors import InvalidRequest  # noqa: E402
from imgscribe.formats.gguf import read_gguf  # noqa: E402
from imgscribe.formats.gguf_write import FileSpec, TensorSpec, write_gguf  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402
from imgscribe.types import ChatRequest, Image, Message  # noqa: E402

VICUNA = (Path(__file__).parents[1] / "prompts" / "ollama_templates" / "vicuna.gotmpl").read_text()


def _without_template(model: Path, dest: Path) -> Path:
    header = read_gguf(model)
    spec = FileSpec(header.architecture, drop=lambda k: k == "tokenizer.chat_template",
                    tensors=[TensorSpec(n, n) for n in header.tensors])  # fmt: skip
    write_gguf(model, spec, dest)
    return dest


@pytest.fixture
def llava(tmp_path):
    model, mmproj = gguf_pair("llava15")
    bare = _without_template(model, tmp_path / "llava-no-template.gguf")
    assert "tokenizer.chat_template" not in read_gguf(bare).metadata
    manifest = manifest_for_gguf("llava-vicuna", bare, mmproj)
    manifest.template = VICUNA
    return manifest


def _image() -> Image:
    from imgscribe import testing

    from imgscribe.images import intake

    return intake(testing.photo("chelsea"))


def test_the_prompt_is_the_templates_rendering(llava):
    request = ChatRequest("llava-vicuna", [Message("user", "Describe this image.", [_image()])])
    assert go_template_prompt(request, llava) == f"USER: {MEDIA_MARKER}Describe this image.\nASSISTANT:"
    llava.system = "Answer in French."
    two = ChatRequest("llava-vicuna", [Message("user", "What is it?", [_image()]), Message("assistant", "A cat."),
                                       Message("user", "And this one?", [_image()])])  # fmt: skip
    assert go_template_prompt(two, llava) == (
        f"Answer in French.\n\nUSER: {MEDIA_MARKER}What is it?\nASSISTANT: A cat.</s>\n"
        f"USER: {MEDIA_MARKER}And this one?\nASSISTANT:"
    )


def test_raw_requests_and_request_templates(llava):
    raw = ChatRequest("llava-vicuna", [Message("user", "[img-0] Q: what? A:", [_image()])], raw=True)
    assert go_template_prompt(raw, llava) == f"{MEDIA_MARKER} Q: what? A:"
    untagged = ChatRequest("llava-vicuna", [Message("user", "Q: what? A:", [_image()])], raw=True)
    assert go_template_prompt(untagged, llava) == f"{MEDIA_MARKER}Q: what? A:"
    own = ChatRequest("llava-vicuna", [Message("user", "hi")], template="<<{{ range .Messages }}{{ .Content }}{{ end }}>>")
    assert go_template_prompt(own, llava) == "<<hi>>"
    # llama-server's marker is random per start: a message that types the default one is only text
    forged = ChatRequest("llava-vicuna", [Message("user", f"{MEDIA_MARKER} look", [_image()])])
    assert go_template_prompt(forged, llava, "<__media_x1__>") == f"USER: <__media_x1__>{MEDIA_MARKER} look\nASSISTANT:"
    two_tags = ChatRequest("llava-vicuna", [Message("user", "[img-0] [img-1] Q:", [_image()])], raw=True)
    with pytest.raises(InvalidRequest, match="2 image markers for 1 image"):
        go_template_prompt(two_tags, llava)


def test_a_model_without_a_go_template_keeps_the_ggufs_chat_template(llava):
    llava.template = ""
    assert go_template_prompt(ChatRequest("x", [Message("user", "hi")]), llava) is None


@pytest.mark.slow
def test_llama_server_gets_the_rendered_prompt(llava, tmp_path):
    llama_server_binary()
    store = Store(tmp_path / "models")
    store.create("llava-vicuna", llava)
    scheduler = Scheduler(store, num_parallel=0)
    with live_server(scheduler) as live:
        body = {"model": "llava-vicuna", "prompt": "Describe this image.", "images": [photo_b64("chelsea")],
                "stream": False, "options": {"num_predict": 4, "temperature": 0}}  # fmt: skip
        answer = httpx.post(live.url + "/api/generate", json=body, timeout=120, trust_env=False).json()
        assert "prompt_eval_count" in answer, answer
        process = scheduler.runner("llava-vicuna").process

        def count(text: str, special: bool) -> int:
            r = httpx.post(process.url + "/tokenize", json={"content": text, "add_special": special, "parse_special": True},
                           headers=process.headers, timeout=30, trust_env=False)  # fmt: skip
            return len(r.json()["tokens"])

        before, after = "USER: ", "Describe this image.\nASSISTANT:"
        image_tokens = (336 // 14) ** 2  # the tiny CLIP tower: 336 px, 14 px patches
        assert answer["prompt_eval_count"] == count(before, True) + image_tokens + count(after, False)
        # ChatML (what llama-server would use for a GGUF without a template) is another prompt entirely
        chatml = count("<|im_start|>user\n", True) + image_tokens + count("Describe this image.<|im_end|>\n<|im_start|>assistant\n", False)
        assert chatml != answer["prompt_eval_count"]
        bad = httpx.post(live.url + "/api/generate", json={**body, "template": "{{ .Prompt"}, timeout=60, trust_env=False)
        assert bad.status_code == 400 and "template line 1" in bad.json()["error"]


def test_the_models_message_history_comes_first(llava):
    """Modelfile MESSAGE lines (/api/create ``messages``): before the request's turns, as Ollama orders them."""
    llava.messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    request = ChatRequest("llava-vicuna", [Message("user", "Describe this image.", [_image()])])
    assert go_template_prompt(request, llava) == (
        f"USER: Hi\nASSISTANT: Hello.</s>\nUSER: {MEDIA_MARKER}Describe this image.\nASSISTANT:"
    )
    shown = request.with_history(llava.messages)  # what the other engines and the GGUF's template get
    assert [(m.role, m.content) for m in shown.messages] == [("user", "Hi"), ("assistant", "Hello."),
                                                             ("user", "Describe this image.")]  # fmt: skip
    raw = ChatRequest("llava-vicuna", [Message("user", "as is")], raw=True)
    assert raw.with_history(llava.messages) is raw


@pytest.mark.slow
def test_a_derived_model_shares_its_parents_llama_server(llava, tmp_path):
    """FROM llava + SYSTEM: the same weights loaded the same way are one llama-server, each model with
    its own prompt."""
    llama_server_binary()
    store = Store(tmp_path / "models")
    store.create("llava-vicuna", llava)
    derived = llava.model_copy(deep=True)
    derived.system = "Answer in French."
    derived.parameters["temperature"] = 0
    store.create("alt-text", derived)
    scheduler = Scheduler(store, num_parallel=0, max_loaded=0)
    try:
        with live_server(scheduler) as live:
            counts = {}
            for name in ("llava-vicuna", "alt-text"):
                body = {"model": name, "prompt": "Describe this image.", "images": [photo_b64("chelsea")],
                        "stream": False, "options": {"num_predict": 2}}  # fmt: skip
                answer = httpx.post(live.url + "/api/generate", json=body, timeout=120, trust_env=False).json()
                counts[name] = answer["prompt_eval_count"]
            parent, child = scheduler.runner("llava-vicuna"), scheduler.runner("alt-text")
            assert parent.process is child.process and parent.process.running
            assert counts["alt-text"] > counts["llava-vicuna"]  # its SYSTEM is in its prompt, not the parent's
            assert parent.memory + child.memory <= max(parent.process.memory(), 1) + 1
            scheduler.unload("llava-vicuna")
            assert child.process.running  # still used by the derived model
            process = child.process
            scheduler.unload("alt-text")
            assert not process.running
    finally:
        scheduler.close()
