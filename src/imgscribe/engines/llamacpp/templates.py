"""Chat templates as llama.cpp's Jinja engine reads them.

Python's Jinja keeps an unknown escape in a string literal as it is (``'<\\s>'`` renders a backslash
and an ``s``: the published LLaVA-1.6-Mistral template has one); llama.cpp's lexer refuses it
("unknown escape character \\s") and llama-server does not start. Doubling such backslashes gives
the same text in both.
"""

from __future__ import annotations

import re

__all__ = ["for_llama_cpp"]

_KNOWN = set("ntrbfv\\'\"")
_ESCAPE = re.compile(r"\\(.)", re.S)


def for_llama_cpp(template: str) -> str:
    """``template`` with every backslash llama.cpp's Jinja lexer would refuse doubled."""
    return _ESCAPE.sub(lambda m: m.group(0) if m.group(1) in _KNOWN else "\\\\" + m.group(1), template)
