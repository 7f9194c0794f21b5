"""Questions about the text in an image: "What does it say?", "Is there any text?", and
questions whose answer is a value in the text ("What is the invoice number?" -> "4821", "Who is
the invoice billed to?" -> the name after "Bill to").

The line that answers is the one sharing the most, and the rarest, words with the question; the
value is then a number, amount, date, phone number, e-mail or web address after the word the
question names, or else the value box beside a key box ("Bill to" | "Emma Novak").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import compose as C


@dataclass
class Reply:
    """An answer in full (a sentence that says where it comes from and how sure it is) and short
    (just the value, for prompts that ask for a single word or phrase)."""

    full: str
    short: str


_STOP = set(
    """a an the this that these those it its is are was were be been of in on at to for from with and or
    what which who whom whose when where why how does do did can could would should will shall may might
    please tell me about image picture photo photograph pic screenshot document there here any some
    you your say says said read reads written write writing text word words show shows shown see
    value name give list all much many""".split()
)
TEXT_WORDS = re.compile(
    r"\b(says?|said|read|reads|written|writing|text|words?|ocr|transcri\w*|sign|letters|typed|printed|"
    r"what does it say|spell)\b",
    re.I,
)
_MONEY = re.compile(r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d{2})\s?(?:USD|EUR|GBP|dollars|euros)?\b")
_DATE = re.compile(
    r"\b\d{1,2}(?:st|nd|rd|th)?\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?,?\s+\d{4}\b|"
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}\b|"
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|"
    r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b|\b\d{1,2}(?::\d{2})?\s?(?:am|pm|AM|PM)\b|\b\d{1,2}:\d{2}\b"
)
_PHONE = re.compile(r"(?<![\w$])\+?\d[\d ().-]{5,}\d\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_CODE = re.compile(r"(?:\bno\.?|\bnumber|#|\bid|\bref\w*|\bcode)\s*[:.]?\s*([A-Z0-9][A-Z0-9-]*\d[A-Z0-9-]*)", re.I)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z][a-z'-]{2,}", text.lower()) if w not in _STOP}


def shares_words_with_text(q: str, ev: dict[str, Any]) -> bool:
    return bool(ev["text"]) and bool(_content_words(q) & _content_words(ev["text"]))


def any_text(ev: dict[str, Any]) -> Reply:
    if not ev["text"]:
        return Reply("No, I can't find any readable text in this image.", "No")
    n = len(ev["text"].split("\n"))
    return Reply(f"Yes. The image contains {n} line{'s' if n != 1 else ''} of text:\n{ev['text']}", "Yes")


def read_text(q: str, ev: dict[str, Any]) -> Reply:
    if not ev["text"]:
        return Reply("I can't find any readable text in this image. " + C.describe(ev), "no text")
    rows = ev["text"].split("\n")
    wanted = _content_words(q) & _content_words(ev["text"])
    hits = _best_rows(rows, wanted)
    fact = extract(q, hits or rows, wanted)
    if fact is not None and (hits or not TEXT_WORDS.search(q)):
        value, line = fact
        asked = _asked_about(q)
        if asked:
            return Reply(f"The {asked} reads {value} (from the line “{line}”).", value)
        return Reply(f"The text gives {value} (from the line “{line}”).", value)
    if hits:
        value = _value_after(hits[0], wanted, ev)
        if value:
            return Reply(f"The line “{hits[0]}” gives {value}.", value)
        said = "\n".join(hits)
        return Reply(f"The text about {C.join(sorted(wanted))} reads:\n{said}", hits[0])
    intro = "The text reads:" if len(rows) > 1 else "It says:"
    return Reply(f"{intro}\n{ev['text']}", " ".join(rows))


def _best_rows(rows: list[str], wanted: set[str]) -> list[str]:
    """The rows that share the most (and the rarest) words with the question, best first."""
    if not wanted:
        return []
    words = [_content_words(r) for r in rows]
    weight = {w: 1.0 / sum(w in ws for ws in words) for w in wanted if any(w in ws for ws in words)}
    scored = [(sum(weight.get(w, 0) for w in ws & wanted), -i, r) for i, (r, ws) in enumerate(zip(rows, words))]
    best = max((s for s, _, _ in scored), default=0)
    return [r for s, _, r in sorted(scored, reverse=True) if s > 0 and s >= best - 1e-9]


def _value_after(row: str, wanted: set[str], ev: dict[str, Any]) -> str:
    """'Bill to Emma Novak' asked about 'billed' -> 'Emma Novak'. A row drawn as a key box and a
    value box gives the value box; otherwise what follows the last asked word."""
    by_row: dict[int, list[str]] = {}
    for ln in ev.get("text_lines", []):
        by_row.setdefault(ln.get("row", -1), []).append(ln["text"])
    for parts in by_row.values():
        if " ".join(parts) == row and len(parts) >= 2 and _content_words(parts[0]) & wanted:
            return " ".join(parts[1:]).strip(" :-")
    end = 0
    for w in wanted:
        for m in re.finditer(rf"\b{re.escape(w)}\w*", row, re.I):
            end = max(end, m.end())
    rest = re.sub(r"^[\s:#.\-–]*(?:(?:to|by|of|is|are|for|at|in|on|the)\b[\s:#.\-–]*)*", "", row[end:])
    return rest.strip() if end and rest.strip() else ""


def _asked_about(q: str) -> str | None:
    """'What is the invoice number?' -> 'invoice number'."""
    m = re.search(
        r"\bwhat(?:'s| is| are| was)\s+(?:the|this|that|your|its)?\s*([a-z][\w' -]{1,40}?)\s*[?.!]*$", q, re.I
    )
    if m and len(m.group(1).split()) <= 5:
        return m.group(1).strip().lower()
    return None


def _widen(row: str, m: re.Match, pattern: re.Pattern) -> str:
    """Join neighbouring matches into one value: 'Friday' + ', ' + '12 March 2027'."""
    start, end = m.span()
    while True:
        nxt = pattern.search(row, end)
        if nxt is None or row[end : nxt.start()].strip(" ,") != "":
            break
        end = nxt.end()
    return row[start:end]


def extract(q: str, rows: list[str], wanted: set[str]) -> tuple[str, str] | None:
    """A specific value the question asks for (a number, an amount, a date...), found in ``rows``
    after the word the question names: ('4821', the line it is on)."""
    ql = q.lower()
    patterns = []
    if re.search(r"\b(total|amount|price|cost|due|pay|balance|fee|sum|owe|much)\b", ql):
        patterns.append(_MONEY)
    if re.search(r"\b(date|when|day|time|deadline|until|before|open|close|hours?)\b", ql):
        patterns.append(_DATE)
    if re.search(r"\b(phone|telephone|call|mobile|fax)\b", ql):
        patterns.append(_PHONE)
    if re.search(r"\b(e-?mail)\b", ql):
        patterns.append(_EMAIL)
    if re.search(r"\b(url|website|web site|link|address)\b", ql):
        patterns.append(_URL)
    if re.search(r"\b(number|no|id|code|reference|ref|#)\b", ql):
        patterns.append(_CODE)
    for pattern in patterns:
        for row in rows:
            start = 0
            for w in sorted(wanted):  # look after the word the question names ("Total due: $1,250.00")
                m = re.search(re.escape(w), row, re.I)
                if m:
                    start = m.start()
                    break
            m = pattern.search(row, start) or pattern.search(row)
            if m:
                if m.groups() and m.group(1):
                    return m.group(1).strip(), row
                return _widen(row, m, pattern).strip(), row
    return None


