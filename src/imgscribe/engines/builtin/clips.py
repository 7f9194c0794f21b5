"""How the built-in model describes a clip: from its key frames, one line each, saying what changes
between them and that it is not a video model (it sees stills, not motion)."""

from __future__ import annotations

from typing import Any

from ...types import ChatRequest, Video
from ...video import clock


def latest_clip(request: ChatRequest) -> Video | None:
    """The last video of the latest message with images or videos (as ``_images`` picks images)."""
    for m in reversed(request.messages):
        if m.videos:
            return m.videos[-1]
        if m.images:
            return None
    return None


def describe(video: Video, evs: list[dict[str, Any]], reply: str, answered: bool) -> str:
    """The reply for a clip: a note that this is not a video model, then each key frame at its time
    (``unchanged`` when it looks as the one before), or the answer drawn from all of them."""
    n = len(video.frames)
    head = (f"imgscribe's builtin model is not a video model: it describes this {clock(video.duration)} clip "
            f"from {n} key frame{'s' if n != 1 else ''}, not its motion.")  # fmt: skip
    if answered:
        return f"{head} {reply}"
    lines, before = [head], None
    for t, ev in zip(video.timestamps, evs, strict=False):
        text = ev.get("description", "")
        lines.append(f"Frame at {clock(t, video.duration < 20)}: {'unchanged from the frame before.' if text == before else text}")
        before = text
    return "\n".join(lines)
