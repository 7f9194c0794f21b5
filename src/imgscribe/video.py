"""Video intake: a clip wherever an image is accepted, sampled into a few frames with their times.

A video is recognised by its content (MP4/MOV ``ftyp``, WebM/MKV EBML, AVI), never its name, and
decoded with PyAV (whose wheels bundle FFmpeg) **without decoding the whole file**: for each sample
time the demuxer seeks to the key frame before it and decodes from there, so a 2-hour clip costs a
few groups of pictures, not two hours. An animated GIF, WebP or APNG is read by image intake with all
its frames and sampled the same way. Frames are upright (the stream's display matrix applied),
scaled by FFmpeg to their share of the budget, and JPEG-encoded (engines that forward files get them).

The budget: a clip costs at most ``video_max_tokens`` (the request's option, else the model's
``PARAMETER video_max_tokens``, else :data:`DEFAULT_VIDEO_TOKENS`, a few images' worth on a CPU:
:func:`clip_settings`, as every door reads it). It is split over the frames: as many
frames as leave each at least :data:`MIN_FRAME_TOKENS` (at most ``max_frames``, and no more than
two a second), each scaled to about ``tokens_per_frame`` x 28 x 28 pixels (a 14-px-patch ViT with a
2 x 2 merge: Qwen2-VL's rate, an upper bound for the others); each engine's own image budget then
applies to each frame as to any image.

Limits, with the image errors: duration (:data:`MAX_DURATION`), frames in an animation
(:data:`MAX_ANIMATION_FRAMES`), the frame's pixels (``IMGSCRIBE_MAX_IMAGE_PIXELS``), the file's bytes
(``IMGSCRIBE_MAX_IMAGE_BYTES``).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import io
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from PIL import Image as PILImage

from .config import settings
from .errors import ImageTooLarge, InvalidImage, InvalidRequest
from .image_codecs import check_pixels, identify
from .images import intake, read_bytes
from .types import Image, Video

__all__ = ["DEFAULT_VIDEO_TOKENS", "SAMPLINGS", "ClipHeader", "Video", "clip_settings", "clock", "container_of",
           "is_media", "probe", "read_media", "read_media_args", "read_video", "sample_times"]  # fmt: skip

#: A clip's tokens by default: four images' worth of the CPU image budget (image_budget.CPU_BUDGET).
DEFAULT_VIDEO_TOKENS = 4 * 1024
MIN_FRAME_TOKENS = 512
MAX_FRAMES = 32
MAX_DURATION = 4 * 3600.0  # seconds
MAX_ANIMATION_FRAMES = 10_000
PIXELS_PER_TOKEN = 28 * 28
_MAX_DECODE_PER_SAMPLE = 1_000  # frames decoded from a key frame to a sample time, at most
_EBML = b"\x1a\x45\xdf\xa3"
#: how a clip's frames may be chosen (the ``video_sampling`` option)
SAMPLINGS = ("uniform", "scenes")
_ANIMATED = ("GIF", "PNG", "WEBP")


def container_of(data: bytes) -> str | None:
    """The video container the bytes are ("MP4", "MOV", "WEBM", "MKV", "AVI"), or None."""
    if data[4:8] == b"ftyp" and identify(data) not in ("HEIF", "AVIF"):
        return "MOV" if data[8:12] == b"qt  " else "MP4"
    if data[:4] == _EBML:
        return "WEBM" if b"webm" in data[:64] else "MKV"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    return None


def clock(seconds: float, tenths: bool = False) -> str:
    """A time as a viewer reads it: 0:04, 1:02:03; ``tenths``: 0:04.5 (a short clip's frames)."""
    if tenths and seconds < 60:
        return f"0:{seconds:04.1f}"
    s = int(seconds + 0.5)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def plan(duration: float, size: tuple[int, int], max_tokens: int | None, max_frames: int = MAX_FRAMES):
    """(frames, tokens per frame, frame size) for a clip of ``duration`` seconds at ``size``."""
    budget = max_tokens if max_tokens and max_tokens > 0 else DEFAULT_VIDEO_TOKENS
    n = max(1, min(max_frames, budget // MIN_FRAME_TOKENS, math.ceil(max(duration, 0.01) * 2)))
    per = budget // n
    w, h = size
    scale = min(1.0, math.sqrt(per * PIXELS_PER_TOKEN / max(1, w * h)))
    return n, per, (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))  # even: yuv420p


def sample_times(duration: float, n: int) -> list[float]:
    """``n`` times spread uniformly over ``duration``: the middle of each of ``n`` equal parts."""
    return [round((i + 0.5) * duration / n, 3) for i in range(n)]


def clip_settings(options: Any = None, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`read_video`'s ``max_tokens`` and ``sampling`` for a request: each from the request's
    ``options`` (an :class:`~imgscribe.types.Options` or a mapping), else the model's ``parameters``
    (its manifest's: a Modelfile's ``PARAMETER video_max_tokens``), else the default."""
    def pick(name: str) -> Any:
        mine = options.get(name) if isinstance(options, Mapping) else getattr(options, name, None)
        return mine if mine is not None else (parameters or {}).get(name)

    return {"max_tokens": pick("video_max_tokens") or None, "sampling": pick("video_sampling") or "uniform"}


def read_media_args(options: Any = None, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`clip_settings` as :func:`read_media`'s keywords (``video_max_tokens``, ``video_sampling``)."""
    got = clip_settings(options, parameters)
    return {"video_max_tokens": got["max_tokens"], "video_sampling": got["sampling"]}


def is_media(data: bytes) -> bool:
    """Whether the bytes are a clip or an animated image: :func:`read_video` reads them."""
    return container_of(data) is not None or _animated(data)


def read_media(
    source: str | bytes | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    source_name: str | None = None,
    max_side: int = 0,
    video_max_tokens: int | None = None,
    video_sampling: str = "uniform",
) -> Image | Video:
    """An image (:func:`imgscribe.images.intake`) or, for a clip or an animation, a :class:`Video`."""
    data, label = read_bytes(source, max_bytes=max_bytes, source_name=source_name)
    if is_media(data):
        return read_video(data, source_name=label, max_pixels=max_pixels, max_tokens=video_max_tokens,
                          sampling=video_sampling)  # fmt: skip
    return intake(data, max_bytes=max_bytes, max_pixels=max_pixels, source_name=label, max_side=max_side)


def read_video(
    source: str | bytes | os.PathLike,
    *,
    max_tokens: int | None = None,
    max_frames: int = MAX_FRAMES,
    max_duration: float = MAX_DURATION,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    source_name: str | None = None,
    sampling: str = "uniform",
) -> Video:
    """Sample a clip (the module docstring). ``sampling="scenes"``: of three times as many evenly
    spread candidates, the first and those that differ most from the one before (scene changes),
    in time order. InvalidImage: not a video, damaged, no frames; ImageTooLarge: over a limit."""
    if sampling not in SAMPLINGS:
        raise InvalidRequest(f"video_sampling must be 'uniform' or 'scenes', not {sampling!r}")
    data, label = read_bytes(source, max_bytes=max_bytes, source_name=source_name)
    if max_pixels is None:
        max_pixels = settings().max_image_pixels
    kind = container_of(data)
    if kind is None:
        if _animated(data):
            return _animation(data, label, max_tokens, max_frames, max_pixels, sampling == "scenes")
        raise InvalidImage(f"{label} is not a video (MP4, MOV, WebM, MKV, AVI, or an animated GIF/WebP/PNG)")
    return _decode(data, label, kind, max_tokens, max_frames, max_duration, max_pixels, sampling == "scenes")


def _animated(data: bytes) -> bool:
    fmt = identify(data)
    if fmt not in _ANIMATED or (fmt != "GIF" and _still(data, fmt)):
        return False
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - image intake says what is wrong with it
        return False


def _still(data: bytes, fmt: str) -> bool:
    """Whether a PNG or WebP is surely one still image, from its chunks, without opening it (a
    server asks this of every image): a PNG without an ``acTL`` chunk before its pixels, a WebP
    that is not extended with the animation flag set. False: ask Pillow."""
    if fmt == "WEBP":
        return not (data[12:16] == b"VP8X" and len(data) > 20 and data[20] & 0x02)
    at = 8  # PNG: 8 bytes of signature, then chunks of (length, type, data, CRC)
    while at + 8 <= len(data):
        kind = data[at + 4 : at + 8]
        if kind in (b"IDAT", b"fdAT"):
            return True
        if kind == b"acTL":
            return False
        at += 12 + int.from_bytes(data[at : at + 4], "big")
    return False  # no pixels found: damaged, Pillow says what it makes of it


def _animation(data: bytes, label: str, max_tokens, max_frames: int, max_pixels: int, scenes: bool = False) -> Video:
    with PILImage.open(io.BytesIO(data)) as im:
        count = getattr(im, "n_frames", 1)
    if count > MAX_ANIMATION_FRAMES:
        raise ImageTooLarge(f"{label} has {count:,} frames, over the limit of {MAX_ANIMATION_FRAMES:,}")
    image = intake(data, all_frames=True, max_pixels=max_pixels, source_name=label)
    frames = list(image.frames) or [image.pil]
    starts, duration = [], 0.0
    for f in frames:  # each frame's own delay: encoders merge repeated frames into one longer one
        starts.append(duration)
        duration += (f.info.get("duration") or 100) / 1000
    n, per, size = plan(duration, image.size, max_tokens, max_frames)
    n = min(n, len(frames))
    times = sample_times(duration, 3 * n if scenes else n)  # repeated picks of a held frame are one
    picks = sorted({max(0, bisect.bisect_right(starts, t) - 1) for t in times})
    chosen = [(round(starts[i], 3), frames[i].resize(size, PILImage.Resampling.LANCZOS) if size != frames[i].size
               else frames[i]) for i in picks]  # fmt: skip
    if scenes:
        chosen = _scene_changes(chosen, n)
    return Video([_frame(pil, label, t) for t, pil in chosen], [t for t, _ in chosen], round(duration, 3), image.size,
                 label, image.format, round(len(frames) / duration, 3), image.sha256, per)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ClipHeader:
    """What sampling a clip will cost, read from its header without decoding a frame (a server
    checks a whole request, and takes room in its decode budget, before decoding anything)."""

    frames: int  # sampled frames, at most
    size: tuple[int, int]  # each one's (width, height)
    cost: int  # room decoding needs at its peak, in pixels of 4 bytes

    @property
    def held(self) -> int:
        """Pixels the sampled frames keep once decoding is over."""
        return self.frames * self.size[0] * self.size[1]


#: Full-size frames alive at once while a clip decodes, counted in 4-byte pixels: the decoder's
#: reference frames and frame threads (YUV 4:2:0, 1.5 bytes a pixel) and the frame being converted.
DECODE_COPIES = 4


def probe(data: bytes, label: str = "<bytes>", *, max_tokens: int | None = None, max_frames: int = MAX_FRAMES,
          max_duration: float = MAX_DURATION, max_pixels: int | None = None, sampling: str = "uniform") -> ClipHeader:  # fmt: skip
    """The :class:`ClipHeader` of a clip or animation that :func:`read_video` would sample with the
    same arguments, and its errors for a damaged file or one over a limit, without decoding it."""
    if max_pixels is None:
        max_pixels = settings().max_image_pixels
    candidates = 3 if sampling == "scenes" else 1  # scenes: three times as many frames decoded, then chosen
    kind = container_of(data)
    if kind is None:  # an animation: image intake decodes all its frames (their delays are known after)
        with PILImage.open(io.BytesIO(data)) as im:
            count, size = getattr(im, "n_frames", 1), im.size
        if count > MAX_ANIMATION_FRAMES:
            raise ImageTooLarge(f"{label} has {count:,} frames, over the limit of {MAX_ANIMATION_FRAMES:,}")
        check_pixels(size[0] * size[1], max_pixels)
        n, _, out = plan(max_duration, size, max_tokens, max_frames)  # as many as the budget allows: at most
        n = min(n, count)
        return ClipHeader(n, out, count * size[0] * size[1] + min(count, candidates * n) * out[0] * out[1])
    import av

    container = _open(av, data, label, kind)
    try:
        _, width, height, duration = _stream(container, label, kind, max_pixels, max_duration)
    finally:
        container.close()
    n, _, out = plan(duration, (width, height), max_tokens, max_frames)
    return ClipHeader(n, out, DECODE_COPIES * width * height + candidates * n * out[0] * out[1])


def _open(av, data: bytes, label: str, kind: str):
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidImage(f"{label} could not be read as {_a(kind)} video: {_why(exc)}") from None


def _stream(container, label: str, kind: str, max_pixels: int, max_duration: float):
    """The first video stream, its frame size and duration, checked against the limits."""
    if not container.streams.video:
        raise InvalidImage(f"{label} has no video stream (audio only?)")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise InvalidImage(f"{label} could not be read as {_a(kind)} video: no frame size in its header")
    check_pixels(width * height, max_pixels, "a frame of the video")
    duration = _duration(container, stream)
    if duration > max_duration:
        raise ImageTooLarge(f"{label} is {clock(duration)} long, over the limit of {clock(max_duration)}")
    return stream, width, height, duration


def _decode(data, label, kind, max_tokens, max_frames, max_duration, max_pixels, scenes=False) -> Video:
    import av

    container = _open(av, data, label, kind)
    try:
        stream, width, height, duration = _stream(container, label, kind, max_pixels, max_duration)
        stream.thread_type = "AUTO"
        rotation = _rotation(stream)
        shown = (height, width) if rotation in (90, 270) else (width, height)
        n, per, size = plan(duration, shown, max_tokens, max_frames)
        target = (size[1], size[0]) if rotation in (90, 270) else size
        rate = stream.frames / duration if stream.frames and duration else float(stream.guessed_rate or 0)
        fps = round(rate, 3) if rate > 0 else 0.0
        times = sample_times(duration, 3 * n if scenes else n) if duration else [0.0]
        picked = _seek_frames(container, stream, times, target, label)
        if scenes:
            picked = _scene_changes(picked, n)
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise InvalidImage(f"{label} could not be decoded as {_a(kind)} video: {_why(exc)}") from None
    finally:
        container.close()
    if not picked:
        raise InvalidImage(f"{label} has no frame that could be decoded")
    frames = [_frame(_turn(pil, rotation), label, t) for t, pil in picked]
    return Video(frames, [t for t, _ in picked], round(duration, 3), shown, label, kind, fps,
                 hashlib.sha256(data).hexdigest(), per)  # fmt: skip


#: frames decoded by the last :func:`read_video` (tests check that a long clip is not decoded whole)
decoded_frames = 0


def _seek_frames(container, stream, times: list[float], size: tuple[int, int], label: str):
    """The first frame at or after each time (the last one before it at the end of the clip)."""
    global decoded_frames
    decoded_frames = 0
    base = stream.time_base
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    out: list[tuple[float, PILImage.Image]] = []
    for t in times:
        if base:
            container.seek(int((start + t) / base), stream=stream, backward=True, any_frame=False)
        best, count = None, 0
        for frame in container.decode(stream):
            decoded_frames += 1
            count += 1
            at = float(frame.time) - start if frame.time is not None else t
            best = (at, frame)  # the first at or after t; else the last before it (the clip's end)
            if at >= t - 1e-3 or count >= _MAX_DECODE_PER_SAMPLE:
                break
        if best is None:
            continue
        at, frame = best
        if out and abs(out[-1][0] - at) < 1e-6:
            continue  # a clip shorter than its frames: the same frame again
        pil = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
        out.append((round(max(at, 0.0), 3), pil))
    return out


def _scene_changes(frames: list[tuple[float, PILImage.Image]], n: int) -> list[tuple[float, PILImage.Image]]:
    """The first frame and the ``n - 1`` that differ most from the frame before, in time order."""
    if len(frames) <= n:
        return frames
    import numpy as np

    small = [np.asarray(pil.convert("L").resize((32, 32)), dtype=np.float32) for _, pil in frames]
    change = [float(np.abs(b - a).mean()) for a, b in zip(small, small[1:], strict=False)]
    keep = {0, *(i + 1 for i in sorted(range(len(change)), key=lambda i: -change[i])[: n - 1])}
    return [frames[i] for i in sorted(keep)]


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _rotation(stream) -> int:
    """Degrees counter-clockwise to show the frames upright (the display matrix, or a ``rotate`` tag)."""
    import av

    degrees = 0
    try:
        for frame in stream.container.decode(stream):  # the first frame carries the display matrix
            degrees = int(round(getattr(frame, "rotation", 0) or 0))
            break
    except av.FFmpegError:
        degrees = 0
    stream.container.seek(0, stream=stream, backward=True, any_frame=False) if stream.time_base else None
    if not degrees and stream.metadata.get("rotate"):
        try:
            degrees = -int(stream.metadata["rotate"])  # the tag is clockwise
        except ValueError:
            degrees = 0
    return degrees % 360


def _turn(pil: PILImage.Image, rotation: int) -> PILImage.Image:
    turns = {90: PILImage.Transpose.ROTATE_90, 180: PILImage.Transpose.ROTATE_180, 270: PILImage.Transpose.ROTATE_270}
    return pil.transpose(turns[rotation]) if rotation in turns else pil


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "AEIMOU" else f"a {kind}"


def _frame(pil: PILImage.Image, label: str, at: float) -> Image:
    """One sampled frame as an image an engine can take: RGB, with JPEG bytes for engines that forward files."""
    pil = pil.convert("RGB") if pil.mode != "RGB" else pil
    out = io.BytesIO()
    pil.save(out, "JPEG", quality=90)
    data = out.getvalue()
    return Image(pil=pil, sha256=hashlib.sha256(data).hexdigest(), format="JPEG", original_size=pil.size,
                 byte_size=len(data), data=data, source=f"{label}@{clock(at)}")  # fmt: skip


def _why(exc: Exception) -> str:
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)).split(": '<", 1)[0]
    return (text or type(exc).__name__).rstrip(".").lower() + " (damaged or cut short?)"


def with_frames(video: Video, frames: list[Image]) -> Video:
    """``video`` with other frames (an engine's scaled ones)."""
    return dataclasses.replace(video, frames=frames)


_FRAME_LINE = re.compile(r"^\s*frame at (\d+(?::\d{2}){1,2}(?:\.\d)?)\s*[:\-–]\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def webvtt(duration: float, timestamps: list[float], text: str) -> str:
    """WebVTT captions of a clip's description: a cue per sampled frame, from its time to the next
    frame's, when the text describes frames one by one ("Frame at 0:04: ..." lines, as builtin
    writes them; "unchanged" frames extend the cue before); else one cue for the whole clip."""
    described = [(_seconds(t), body.strip()) for t, body in _FRAME_LINE.findall(text)]
    cues: list[tuple[float, float, str]] = []
    if described:
        ends = [t for t, _ in described[1:]] + [max(duration, described[-1][0])]
        for (start, body), end in zip(described, ends, strict=True):
            if cues and body.lower().startswith("unchanged"):
                cues[-1] = (cues[-1][0], end, cues[-1][2])
            else:
                cues.append((start if cues else 0.0, end, body))
    else:
        cues.append((0.0, duration or (timestamps[-1] if timestamps else 0.0), text.strip()))
    lines = ["WEBVTT", ""]
    for i, (start, end, body) in enumerate(cues, 1):
        lines += [str(i), f"{_vtt_time(start)} --> {_vtt_time(max(end, start + 0.001))}", body.replace("-->", "->"), ""]
    return "\n".join(lines)


def _seconds(text: str) -> float:
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + float(part)
    return value


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    return f"{h:02d}:{m:02d}:{rest // 1000:02d}.{rest % 1000:03d}"
