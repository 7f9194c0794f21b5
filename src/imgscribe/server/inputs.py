"""Images as clients send them: base64 (Ollama), data URIs (OpenAI, and tolerated on Ollama's
routes too, where Ollama fails with "illegal base64 data"), or http(s) URLs fetched by
:mod:`.urls` when the server allows it.

A string is never read as a path on the server: a client must not be able to make the server read
its own files.

A request's images are read together (:meth:`ImageReader.read_request`), in three steps, so that a
small body cannot make the server allocate a lot: every image's header first (the count against
``IMGSCRIBE_MAX_REQUEST_IMAGES`` before anything, then each image's size against the per-image and
per-request pixel limits, before any pixel is decoded); then the room to decode them from the
machine-wide :class:`~.budget.PixelBudget` (``IMGSCRIBE_DECODE_PIXELS``; waiting its turn, or a 503
when too many wait); then decoding, at a reduced size where the model looks at less. The room is
kept until the answer is finished, since the images live until then.

A clip (``media``) goes through the same steps: its header (:func:`imgscribe.video.probe`) says how
many frames it will give, each counted as an image, at what size, and what decoding it costs; it is
sampled once the room is granted.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..errors import ImageTooLarge, InvalidImage
from ..images import Header, decode_base64, header, intake
from ..types import Image, Video
from ..video import ClipHeader, clip_settings, is_media, probe, read_video
from .budget import Lease, PixelBudget
from .urls import UrlFetcher

# "file:", "javascript:", "ftp:"...: base64 has no ':', so a string that starts like this is a URL.
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")

# One image as a route found it: the value the client sent, and where (for messages).
Labelled = tuple[Any, str]


class ImageReader:
    def __init__(self, cfg: Settings, fetcher: UrlFetcher | None = None):
        self.max_bytes = cfg.max_image_bytes
        self.max_pixels = cfg.max_image_pixels
        self.max_request_images = cfg.max_request_images
        self.max_request_pixels = cfg.max_request_pixels
        self.budget = PixelBudget(cfg.decode_pixels, max_waiting=cfg.max_queue)
        self.fetcher = fetcher or UrlFetcher.from_settings(cfg)

    @staticmethod
    def labelled(values: list[Any] | None, where: str) -> list[Labelled]:
        """``values`` named ``where[0]``, ``where[1]``... (one group of :meth:`read_request`)."""
        return [(v, f"{where}[{i}]") for i, v in enumerate(values or [])]

    def read_request(
        self,
        groups: Sequence[Sequence[Labelled]],
        cancel: threading.Event | None = None,
        max_side: int | Callable[[int, int], int] = 0,
        *,
        media: bool = False,
        clips: Callable[[], dict[str, Any]] | None = None,
    ) -> tuple[list[list[Image | Video]], Lease]:
        """Every image of one request (in groups, e.g. one per message), checked as a whole, decoded
        under the pixel budget (the module docstring); ``max_side``: the model's
        :attr:`~imgscribe.types.ModelInfo.max_image_side`, or for each image ``max_side(width, height)``
        (the long side the loaded engine needs under the request's image budget; 0: all of it). The caller releases the lease when the
        answer is finished (``Server.answer`` does).

        ``media``: a clip (or an animated GIF/WebP/PNG) comes back as a :class:`~imgscribe.types.Video`
        in its place, sampled as ``clips()`` says (:func:`~imgscribe.video.clip_settings`, asked only
        when a clip is there: :func:`clip_settings_for`; None: the defaults); each of its frames
        counts as an image against the request's images and pixels, and its decode takes its room
        in the budget (:class:`~imgscribe.video.ClipHeader`) before any frame is decoded; otherwise
        it is refused as an image would be.

        Raises ImageTooLarge (413) over a limit, InvalidImage (400), Busy (503) when too many requests
        wait for the budget, Cancelled when ``cancel`` is set while waiting.
        """
        count = sum(len(group) for group in groups)
        if count == 0:
            return [[] for _ in groups], Lease.none()
        if 0 < self.max_request_images < count:
            raise ImageTooLarge(
                f"the request has {count:,} images, over the limit of {self.max_request_images:,} images "
                "in one request (set IMGSCRIBE_MAX_REQUEST_IMAGES to change it)"
            )
        found: list[tuple[bytes, Header | ClipHeader, str, int]] = []
        pixels = need = held = 0
        images = count
        clip: dict[str, Any] | None = None
        for group in groups:
            for value, where in group:
                data = self._named(where, self._bytes, value, where)
                if media and is_media(data):  # a few small frames, decoded one at a time once there is room
                    if clip is None:
                        clip = clips() if clips else clip_settings()
                    head = self._named(where, probe, data, where, max_pixels=self.max_pixels, **clip)
                    images += head.frames - 1
                    self._check_images(images, where, head.frames)
                    pixels += head.held
                    self._check_pixels(pixels, where)
                    need = max(need, held + head.cost)
                    held += head.held
                    found.append((data, head, where, 0))
                    continue
                side = 0 if callable(max_side) else max_side
                head = self._named(where, header, data, max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                                   source_name=where, max_side=side)  # fmt: skip
                if callable(max_side) and (side := max_side(*head.size)):  # the engine's need, for its budget
                    head = head.at_side(side)
                pixels += head.pixels
                self._check_pixels(pixels, where)
                # Decoded one after the other: the worst moment is one image decoding while the
                # ones before it are held.
                need = max(need, held + head.cost)
                held += head.held
                found.append((data, head, where, side))
        lease = self.budget.acquire(need, cancel)
        try:
            decoded = [
                self._named(where, read_video, data, max_pixels=self.max_pixels, source_name=where, **clip)
                if isinstance(head, ClipHeader) else
                self._named(where, intake, data, max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                            source_name=where, max_side=side)  # fmt: skip
                for data, head, where, side in found
            ]
            lease.shrink(sum(_pixels(im) for im in decoded))  # decoders' extra copies are gone
        except BaseException:
            lease.release()
            raise
        out, at = [], 0
        for group in groups:
            out.append(decoded[at : at + len(group)])
            at += len(group)
        return out, lease

    def _check_images(self, images: int, where: str, frames: int) -> None:
        if 0 < self.max_request_images < images:
            raise ImageTooLarge(
                f"the request has {images:,} images or more, counting each frame sampled from a clip ({where}: "
                f"{frames:,} frames), over the limit of {self.max_request_images:,} images in one request "
                "(lower video_max_tokens for fewer frames, or set IMGSCRIBE_MAX_REQUEST_IMAGES)"
            )

    def _check_pixels(self, pixels: int, where: str) -> None:
        if 0 < self.max_request_pixels < pixels:
            raise ImageTooLarge(
                f"the request's images have {pixels:,} pixels or more together (at {where}), over the "
                f"limit of {self.max_request_pixels:,} pixels in one request "
                "(set IMGSCRIBE_MAX_REQUEST_PIXELS to change it)"
            )

    def read(self, value: Any, where: str) -> Image:
        """One image from a base64 string, a data URI or a URL; ``where`` names it in errors.

        Outside the request limits and the budget: routes use :meth:`read_request`."""
        data = self._named(where, self._bytes, value, where)
        return self._named(where, intake, data, max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                           source_name=where)  # fmt: skip

    def read_all(self, values: list[Any] | None, where: str) -> list[Image]:
        return [self.read(v, w) for v, w in self.labelled(values, where)]

    def _bytes(self, value: Any, where: str) -> bytes:
        if not isinstance(value, str):
            raise InvalidImage(f"{where}: expected a base64 string, got {type(value).__name__}")
        text = value.strip()
        scheme = _SCHEME.match(text)
        if scheme and scheme[1].lower() not in ("http", "https", "data"):
            raise InvalidImage(
                f"{where}: {scheme[1]}: URLs are not accepted: send the image as base64 or a data: URI "
                "(or an http(s) URL, where the server fetches URLs)"
            )
        if text[:8].lower().startswith(("http://", "https://")):
            return self.fetcher.fetch(text)
        return decode_base64(text, max_bytes=self.max_bytes)

    @staticmethod
    def _named(where: str, fn, *args, **kwargs):
        """``fn(...)``, its InvalidImage saying which image it is about."""
        try:
            return fn(*args, **kwargs)
        except InvalidImage as exc:
            if str(exc).startswith(where) or f"'{where}'" in str(exc):
                raise
            raise type(exc)(f"{where}: {exc}") from None


def _pixels(media: Image | Video) -> int:
    """Pixels an image, or a clip's sampled frames, hold."""
    return sum(_pixels(f) for f in media.frames) if isinstance(media, Video) else media.size[0] * media.size[1]


def clip_settings_for(scheduler: Any, model: str, options: Any) -> Callable[[], dict[str, Any]]:
    """:meth:`ImageReader.read_request`'s ``clips`` for a request to ``model``: ``read_video``'s
    ``max_tokens`` and ``sampling`` from the request's options, else the model's parameters (a
    Modelfile's ``PARAMETER video_max_tokens``), else the defaults (:func:`imgscribe.video.clip_settings`).
    The manifest is the loaded runner's, else the store's, read only when the request has a clip."""
    def settings() -> dict[str, Any]:
        manifest = getattr(scheduler.loaded_runner(model), "manifest", None) or scheduler.store.resolve(model)
        return clip_settings(options, manifest.parameters)

    return settings
