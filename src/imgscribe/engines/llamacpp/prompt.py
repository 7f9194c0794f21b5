"""The prompt of a model that carries Ollama's Go template, as Ollama renders it.

A model pulled from Ollama's library is prompted from its TEMPLATE layer, as Ollama prompts it, even
when its GGUF has a chat template of its own (many have none: llama-server would fall back to ChatML,
the wrong format for LLaVA's Vicuna/Mistral prompts or moondream's). A TEMPLATE the user set
(Modelfile, ``/api/create``) replaces it, and ``/api/generate``'s ``template`` replaces both for one
request. A model with no Go template keeps the GGUF's own chat template (``/apply-template``).

Each image becomes llama-server's media marker where Ollama would put its ``[img-N]`` tag; the images
themselves go with the completion, in the same order (``multimodal_data``). The marker is random for
each llama-server start (``/props`` ``media_marker``), so text in a message can never pass for one.
"""

from __future__ import annotations

import re

from ...errors import InvalidRequest
from ...prompts import render_chat
from ...prompts.chat import execute
from ...prompts.gotemplate import Template
from ...types import ChatRequest, ModelManifest

__all__ = ["MEDIA_MARKER", "go_template_prompt"]

#: ``mtmd_default_marker()`` (tools/mtmd/mtmd.cpp of llama.cpp b11434); llama-server uses a random one
MEDIA_MARKER = "<__media__>"
_OLLAMA_TAG = re.compile(r"\[img(?:-\d+)?\]")


def go_template_prompt(request: ChatRequest, manifest: ModelManifest, marker: str = MEDIA_MARKER) -> str | None:
    """The prompt for llama-server's ``/completion``, or None when the GGUF's own chat template renders
    this model's prompts. ``raw`` requests are sent as they are (Ollama's ``[img-N]`` tags, if any,
    become media markers)."""
    if request.raw:
        prompt = "".join(m.content for m in request.messages)
        return _with_markers(_OLLAMA_TAG.sub(marker, prompt), len(request.images), marker)
    text = request.template or manifest.template
    if not text:
        return None
    template = Template.parse(text)
    messages = [{"role": m.role, "content": m.content, "images": m.images} for m in request.messages]
    if request.template:  # /api/generate's own template is executed as it is, as Ollama does
        system = [] if any(m["role"] == "system" for m in messages) or not manifest.system else [
            {"role": "system", "content": manifest.system}]  # fmt: skip
        prompt = execute(template, messages=system + messages, think=request.think)
    else:
        prompt = render_chat(template, messages, system=manifest.system or None, history=manifest.messages,
                             think=request.think, image_marker=marker).prompt  # fmt: skip
    return _with_markers(prompt, len(request.images), marker)


def _with_markers(prompt: str, images: int, marker: str) -> str:
    """The prompt with one media marker per image: missing ones go first (as Ollama places a tag the
    text does not hold); more markers than images (a template that writes its own) is an error, as
    llama-server would refuse it."""
    found = prompt.count(marker)
    if found > images:
        raise InvalidRequest(f"the prompt holds {found} image markers for {images} image(s): the template "
                             "writes image places of its own, or the request has too few images")  # fmt: skip
    return marker * (images - found) + prompt
