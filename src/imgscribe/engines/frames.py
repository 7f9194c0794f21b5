"""A video for a model without native video: its sampled frames as images, their times in the text.

Every engine gets a request's clips this way (the scheduler calls :func:`for_runner`), unless its
runner says ``native_video = True`` (transformers with Qwen2-VL / Qwen2.5-VL, which take the clip
itself; ``builtin``, which describes the key frames one by one). A message with a video becomes the
same message with the frames appended to its images and, before its text, one line that names them::

    Video clip.mp4 (0:12 long): the 8 images after any others are its frames, in order: frame at 0:00, ...
"""

from __future__ import annotations

import dataclasses

from ..types import ChatRequest, Message, Video
from ..video import clock

__all__ = ["flatten", "for_runner", "frame_line"]


def frame_line(video: Video) -> str:
    """The text that tells a model which images are which frames of ``video``."""
    name = video.source if video.source and not video.source.startswith("<") else "clip"
    times = ", ".join(f"frame at {clock(t, video.duration < 20)}" for t in video.timestamps)
    n = len(video.frames)
    return (f"Video {name} ({clock(video.duration)} long): the {n} image{'s' if n != 1 else ''} "
            f"after any others {'are its frames' if n != 1 else 'is its frame'}, in order: {times}.")  # fmt: skip


def flatten(request: ChatRequest) -> ChatRequest:
    """``request`` with each video turned into frames and a line of text (the module docstring)."""
    if not request.videos:
        return request
    return dataclasses.replace(request, messages=[_flat(m) for m in request.messages])


def _flat(message: Message) -> Message:
    if not message.videos:
        return message
    images = list(message.images)
    lines = []
    for video in message.videos:
        images.extend(video.frames)
        lines.append(frame_line(video))
    text = "\n".join(lines) + (f"\n\n{message.content}" if message.content else "")
    return dataclasses.replace(message, content=text, images=images, videos=[])


def for_runner(request: ChatRequest, runner: object) -> ChatRequest:
    """The request as ``runner`` takes it: as it is when it reads videos itself, else :func:`flatten`."""
    return request if getattr(runner, "native_video", False) else flatten(request)


def frame_count(request: ChatRequest) -> int:
    """The images a request amounts to, each video's frames counted (a capability check)."""
    return len(request.images) + sum(len(v.frames) for v in request.videos)
