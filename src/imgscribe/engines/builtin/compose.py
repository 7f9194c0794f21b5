"""Evidence -> a short, truthful description. Every claim comes from the evidence, and its
wording says how sure the model was ("probably", "possibly", percentages)."""

from __future__ import annotations

from typing import Any

from . import labels as L

MENTION = 0.15  # a class is mentioned from this probability
PROBABLY = 0.30
SURE = 0.60
QUOTE_WORDS = 40  # a description quotes at most this many words of the image's text
GROUP_MIN = 0.50  # several classes of one group ("cat") are named by the group from this sum


def pct(score: float) -> str:
    return f"{round(score * 100)}%"


def join(items: list[str], word: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def quote(text: str, limit: int = QUOTE_WORDS) -> str:
    words = text.split()
    body = " ".join(words[:limit]) + (" …" if len(words) > limit else "")
    return f"“{body}”"


def hedge(score: float) -> str:
    if score >= SURE:
        return ""
    if score >= PROBABLY:
        return "probably"
    if score >= MENTION:
        return "possibly"
    return "maybe"


def subject(ev: dict[str, Any]) -> dict[str, Any] | None:
    """What the picture most likely shows: a group of classes ("cat") when the classifier's
    mentioned guesses agree on one, else its best class; None when nothing reaches MENTION."""
    ranked = ev["labels"]
    mentioned = [x for x in ranked if x["score"] >= MENTION]
    if not mentioned:
        return None
    top = mentioned[0]
    for group in top["groups"]:
        if group in L.BROAD:
            continue
        members = [x for x in ranked if group in x["groups"] and x["score"] >= 0.05]
        total = sum(x["score"] for x in members)
        if len(members) >= 2 and total >= GROUP_MIN:
            return {"name": group, "score": total, "members": members, "is_group": True}
    return {"name": top["label"], "score": top["score"], "members": [top], "is_group": False}


def guesses(items: list[dict], limit: int = 3) -> str:
    """'tiger cat (38%), Egyptian cat (37%) and tabby cat (16%)'"""
    return join([f"{x['label']} ({pct(x['score'])})" for x in items[:limit]])


def sentence(text: str) -> str:
    """End with one full stop, also after a closing quote that has its own: 'It reads: “... 2027.”'."""
    text = text.rstrip()
    if text.endswith((".", "!", "?", ".”", "!”", "?”", "…”")):
        return text
    return text + "."


def shows(ev: dict[str, Any]) -> str:
    """'shows an espresso', 'probably shows a missile', 'is a document'."""
    kind = ev["kind"]
    if kind == "graphic" and ev["layout"].get("shape"):
        sh = ev["layout"]["shape"]
        return f"is a simple graphic of {L.article(sh['colour'] + ' ' + sh['shape'])}"
    if kind != "photo":
        return f"is {L.article(kind if kind != 'graphic' else 'flat graphic')}"
    s = subject(ev)
    if s is None:
        return "shows nothing the classifier recognises with confidence"
    word, noun = hedge(s["score"]), L.article(s["name"])
    return f"{word} shows {noun}" if word else f"shows {noun}"


def colour_phrase(ev: dict[str, Any], limit: int = 3) -> str:
    cols = [c for c in ev["colours"] if c["share"] >= 0.1][:limit] or ev["colours"][:1]
    return join([c["name"] for c in cols])


def text_phrase(ev: dict[str, Any]) -> str:
    rows = ev["text"].split("\n") if ev["text"] else []
    if not rows:
        return ""
    return quote(" / ".join(rows))


def describe(ev: dict[str, Any]) -> str:
    """A paragraph about one image."""
    by_kind = {"document": _document, "screenshot": _screenshot, "graphic": _graphic}
    return " ".join(by_kind.get(ev["kind"], _photo)(ev))


def _lines(ev: dict[str, Any]) -> str:
    n = len(ev["text"].split("\n")) if ev["text"] else 0
    return f"{n} line{'s' if n != 1 else ''} of text"


def _main_colours(ev: dict[str, Any]) -> str:
    names = colour_phrase(ev)
    if not names:
        return ""
    return f"The main colour{'s are' if ' and ' in names else ' is'} {names}."


def _document(ev: dict[str, Any]) -> list[str]:
    bg = ev["layout"]["background"]["name"]
    parts = [f"A document with {_lines(ev)}, on a mostly {bg} background.", sentence(f"It reads: {text_phrase(ev)}")]
    doc = next((x for x in ev["labels"][:2] if "screen or document" in x["groups"] and x["score"] >= PROBABLY), None)
    if doc is not None:
        parts.append(f"The classifier thinks it looks like {L.article(doc['label'])} ({pct(doc['score'])}).")
    return parts


def _screenshot(ev: dict[str, Any]) -> list[str]:
    return [
        f"A screenshot or other screen image with {_lines(ev)}, mostly {colour_phrase(ev)}.",
        sentence(f"The text includes: {text_phrase(ev)}"),
    ]


def _graphic(ev: dict[str, Any]) -> list[str]:
    top = ev["colours"][0] if ev["colours"] else None
    shape = ev["layout"].get("shape")
    if top is not None and top["share"] >= 0.95:
        parts = [f"A plain image filled with a single colour: {top['name']}."]
    elif shape:
        bg = ev["layout"]["background"]["name"]
        parts = [f"A simple graphic: {L.article(shape['colour'] + ' ' + shape['shape'])} on a {bg} background."]
    else:
        parts = [f"A flat graphic (drawn rather than photographed), mostly {colour_phrase(ev)}."]
    s = subject(ev)
    if s is not None and s["score"] >= SURE:
        parts.append(f"It may depict {L.article(s['name'])} ({pct(s['score'])}).")
    return parts


def _photo(ev: dict[str, Any]) -> list[str]:
    s = subject(ev)
    if s is None:
        best = ev["labels"][0] if ev["labels"] else None
        first = "A photo whose subject the ImageNet classifier could not identify with confidence"
        if best is not None:
            first += f" (its best guess, {best['label']}, has only {pct(best['score'])})"
        parts = [first + "."]
    elif s["score"] >= SURE:
        parts = [f"A photo of {L.article(s['name'])}."]
    else:
        parts = [f"A photo that {hedge(s['score'])} shows {L.article(s['name'])}."]
    if s is not None and s["is_group"]:
        parts.append(f"The classifier's best guesses are {guesses(s['members'])}.")
    elif s is not None:
        others = [x for x in ev["labels"][1:3] if x["score"] >= MENTION]
        if others:
            parts.append(f"It could also be {join([L.article(x['label']) for x in others], 'or')}.")
    if ev["colours"]:
        parts.append(_main_colours(ev))
    if ev["text"]:
        parts.append(sentence(f"There is text in the image: {text_phrase(ev)}"))
    return parts


def caption(ev: dict[str, Any]) -> str:
    """One sentence: 'A photo of an espresso, mostly brown, dark red and beige.'"""
    kind = ev["kind"]
    if kind in ("document", "screenshot"):
        first = ev["text"].split("\n")[0] if ev["text"] else ""
        what = "A document" if kind == "document" else "A screenshot"
        return sentence(f"{what} with {_lines(ev)}" + (f", beginning {quote(first, 12)}" if first else ""))
    if kind == "graphic":
        return _graphic(ev)[0]
    s = subject(ev)
    if s is None:
        head = "A photo of something the ImageNet classifier cannot identify with confidence"
    elif s["score"] >= SURE:
        head = f"A photo of {L.article(s['name'])}"
    else:
        head = f"A photo that {hedge(s['score'])} shows {L.article(s['name'])}"
    colours = colour_phrase(ev)
    text = f", with the text {quote(ev['text'].replace(chr(10), ' / '), 8)}" if ev["text"] else ""
    return sentence(head + (f", mostly {colours}" if colours else "") + text)


def describe_many(evs: list[dict[str, Any]]) -> str:
    if len(evs) == 1:
        return describe(evs[0])
    return " ".join(f"Image {i}: {describe(ev)}" for i, ev in enumerate(evs, 1))
