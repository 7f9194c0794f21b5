"""Chat templates as llama.cpp's Jinja engine reads them.

Python's Jinja keeps an unknown escape in a string literal as it is (``'<\\s>'`` renders a backslash
and an ``s``: the published LLaVA-1.6-Mistral template has one); llama.cpp's lexer refuses it
("unknown escape character \\s") and llama-server does not start. Doubling such backslashes gives
the same text in both.

The prompts a llama-server rendered are kept per process (:class:`RenderedPrompts`), keyed by the
exact request body, so a repeated request shape costs no ``/apply-template`` round trip (issue 19).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RenderedPrompts", "for_llama_cpp", "rendered_prompts"]

_KNOWN = set("ntrbfv\\'\"")
_ESCAPE = re.compile(r"\\(.)", re.S)


def for_llama_cpp(template: str) -> str:
    """``template`` with every backslash llama.cpp's Jinja lexer would refuse doubled."""
    return _ESCAPE.sub(lambda m: m.group(0) if m.group(1) in _KNOWN else "\\\\" + m.group(1), template)


# -- the prompts one llama-server rendered ------------------------------------------------------------

#: what makes a chat template's output depend on more than its messages: the date or time
#: (``strftime_now``; llama-server's ``date_string`` for Llama 3.x). Loose on purpose: a template
#: that merely mentions one of these words is rendered every time, as before.
_TIME_DEPENDENT = re.compile(r"strftime|date|\bnow\b|\btime\b", re.I)
_CACHES: weakref.WeakKeyDictionary[object, RenderedPrompts] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


class RenderedPrompts:
    """The prompts one llama-server rendered (``/apply-template``), by the exact JSON body sent to
    it: the same body gets the same prompt from the same process (its template and settings are
    fixed when it starts), so a repeated request shape (a batch describing many images with one
    prompt: the images are placeholders there) costs no round trip. Off (``enabled`` False) when the
    template reads the clock, or is unknown. A small LRU, bounded in entries and characters."""

    def __init__(self, template: str | None, entries: int = 128, chars: int = 4 << 20):
        self.enabled = bool(template) and not _TIME_DEPENDENT.search(template or "")
        self._entries, self._chars, self._held = entries, chars, 0
        self._prompts: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, body: str) -> str | None:
        with self._lock:
            prompt = self._prompts.get(body)
            if prompt is not None:
                self._prompts.move_to_end(body)
            return prompt

    def put(self, body: str, prompt: str) -> None:
        size = len(body) + len(prompt)
        if not self.enabled or size > self._chars // 8:
            return
        with self._lock:
            if body in self._prompts:
                return
            self._prompts[body] = prompt
            self._held += size
            while len(self._prompts) > self._entries or self._held > self._chars:
                old_body, old_prompt = self._prompts.popitem(last=False)
                self._held -= len(old_body) + len(old_prompt)

    def __len__(self) -> int:
        return len(self._prompts)


def rendered_prompts(process: object, template: Callable[[], str | None]) -> RenderedPrompts:
    """``process``'s cache (made on first use, with ``template()``: the chat template it runs, from
    its ``/props``); it goes with the process, so a restarted llama-server starts with none."""
    with _CACHES_LOCK:
        cache = _CACHES.get(process)
    if cache is None:
        made = RenderedPrompts(template())
        with _CACHES_LOCK:
            cache = _CACHES.setdefault(process, made)
    return cache
