"""From a ChatRequest to model inputs, through the family's own processor and chat template.

Each message becomes ``{"role", "content": [{"type": "image", "image": PIL}..., {"type": "text"}]}``
(images first, as Ollama places them), consecutive messages of one role are merged (several
templates require alternating roles), and ``processor.apply_chat_template(..., tokenize=True)``
renders, tokenizes and preprocesses the images in one call, exactly as the family's own examples do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InvalidRequest
from ...types import ChatRequest

_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "user"}


def conversation(
    request: ChatRequest, system: str = "", *, system_text: bool = False, pils: Sequence[Any] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The chat-template messages for ``request`` (``system``: the model's default system prompt, used
    when the request has none) and the number of images in them. ``system_text``: a system message's
    content is its text, a string (Llama 3.2 Vision's template trims it as one). ``pils``: the picture
    to give the processor for each of ``request.images``, in order (default: each image's own ``pil``;
    the image budget passes scaled ones)."""
    given = iter(pils if pils is not None else [image.pil for image in request.images])
    messages: list[dict[str, Any]] = []
    if system and not any(m.role == "system" for m in request.messages):
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    images = 0
    for m in request.messages:
        role = _ROLES.get(m.role)
        if role is None:
            raise InvalidRequest(f"unknown message role {m.role!r} (system, user, assistant or tool)")
        parts: list[dict[str, Any]] = [{"type": "image", "image": next(given)} for _ in m.images]
        parts += [{"type": "video", "video": [f.pil for f in v.frames]} for v in m.videos]  # native video
        images += len(m.images)
        if m.content or not parts:
            parts.append({"type": "text", "text": m.content})
        if messages and messages[-1]["role"] == role:
            _merge(messages[-1]["content"], parts)
        else:
            messages.append({"role": role, "content": parts})
    if not messages or all(m["role"] == "system" for m in messages):
        raise InvalidRequest("the request has no user message")
    if system_text:
        for m in messages:
            if m["role"] == "system":
                m["content"] = "\n\n".join(p["text"] for p in m["content"] if p["type"] == "text" and p["text"])
    return messages, images


def _merge(into: list[dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    """Put ``parts`` into the same turn: images with images (first), text joined by a blank line."""
    images = [p for p in parts if p["type"] in ("image", "video")]
    texts = [p["text"] for p in parts if p["type"] == "text" and p["text"]]
    first_text = next((i for i, p in enumerate(into) if p["type"] == "text"), len(into))
    into[first_text:first_text] = images
    if texts:
        last = next((p for p in reversed(into) if p["type"] == "text"), None)
        if last is None:
            into.append({"type": "text", "text": "\n\n".join(texts)})
        else:
            last["text"] = "\n\n".join([t for t in (last["text"], *texts) if t])


GRID = 100.0  # frames a second of the index grid the video metadata is given on


def video_kwargs(videos: Sequence[Any], processor: Any = None) -> dict[str, Any]:
    """The processor's arguments for native clips (any family's video processor): each clip's frames
    are already sampled, so its metadata says so (the sampled rate sets Qwen2.5-VL's
    ``second_per_grid_ts``: temporal_patch_size / fps, and SmolVLM's "Frame from" times); the
    per-frame pixel cap of Qwen2-VL's reference code, where the video processor takes it."""
    if not videos:
        return {}
    from transformers.video_utils import VideoMetadata

    # Frame indices on a 1/100 s grid, so that the metadata's timestamps are the frames' own (scene
    # sampling spaces them unevenly) and its sampled rate is the clip's: frames / duration.
    metadata = [
        VideoMetadata(total_num_frames=max(1, round(v.duration * GRID)), fps=GRID, duration=v.duration or None,
                      frames_indices=[round(t * GRID) for t in v.timestamps])  # fmt: skip
        if v.duration and len(v.timestamps) == len(v.frames) else
        VideoMetadata(total_num_frames=len(v.frames), fps=1.0, duration=None,
                      frames_indices=list(range(len(v.frames))))  # fmt: skip
        for v in videos
    ]
    kwargs: dict[str, Any] = {"video_metadata": metadata, "do_sample_frames": False}
    takes = getattr(getattr(getattr(processor, "video_processor", None), "valid_kwargs", None), "__annotations__", {})
    if processor is None or "cap_pixels_per_frame" in takes:
        kwargs["cap_pixels_per_frame"] = True
    return {"processor_kwargs": kwargs}


def encode(processor, messages: list[dict[str, Any]], videos: Sequence[Any] = ()):
    """Render the chat template, tokenize and preprocess the images (and ``videos``, the request's
    native clips, in order: :func:`video_kwargs`): the processor's BatchFeature."""
    from jinja2 import TemplateError

    continue_final = messages[-1]["role"] == "assistant"  # an assistant prefix to continue (Ollama does so)
    try:
        return processor.apply_chat_template(
            messages,
            add_generation_prompt=not continue_final,
            continue_final_message=continue_final,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            **video_kwargs(videos, processor),
        )
    except TemplateError as exc:
        raise InvalidRequest(f"the model's chat template refused these messages: {exc}") from exc
    except ValueError as exc:
        # processors raise ValueError for a mismatch of image tokens and images, among others
        raise InvalidRequest(f"the model's processor refused this request: {exc}") from exc
