"""Questions -> answers from the evidence alone. A question is routed by its words:

* no question, or "describe / caption / what do you see"          -> the description
* "keywords / tags / labels"                                       -> a comma-separated list
* several images and "compare / difference / same / both"        -> what they share and what differs
* "is there (any) text"                                           -> yes or no, and the text
* "what does it say / read / text / written", or a question that
  names a word found in the image's text ("What is the invoice number?")  -> the text, or the value
* a flat graphic of one shape: "what shape", "is there a red circle?" -> from its geometry
* "what colour"                                                   -> the colours
* "is this a photo / screenshot / document", "what kind of image" -> the kind
* "what is this / what animal, object, drink, food", "is this a cat?"  -> the ImageNet labels
* anything else (counting, where, who, why, actions, attributes)  -> an honest "I can't", with what
  the model can see and a pointer to a vision-language model.

Every answer has a full form (a sentence that says where it comes from and how sure it is) and a
short form, sent when the prompt asks for one ("Answer the question using a single word or
phrase.", the usual VQA instruction; or "in one sentence" for a caption).
"""

from __future__ import annotations

import re
from typing import Any

from . import compose as C
from . import labels as L
from .reading import TEXT_WORDS, Reply, any_text, extract, read_text, shares_words_with_text

VLM_HINT = (
    "For open questions like this, use a vision-language model, e.g. `imgscribe pull llava` and ask "
    "`llava` instead."
)
LIMITS = (
    "I'm the built-in model, not a vision-language model: I can only report ImageNet labels, the "
    "text in an image (OCR), its colours and what kind of image it is. I can't count things, locate "
    "them, or judge actions, attributes or relations."
)
NO_IMAGE = (
    "I'm imgscribe's built-in image model: I describe images and answer simple questions about them "
    "(what they show, the text in them, their colours). There is no image in this conversation, so "
    "there is nothing for me to look at. Attach an image and ask again."
)
UNKNOWN = "unknown (the built-in model is not a vision-language model)"


# Instructions that ask for a short answer; they are removed from the question before routing.
_SHORT = re.compile(
    r"\s*(?:please\s+)?(?:answer|reply|respond)(?: the question| briefly)?\s*(?:using|with|in)\s+(?:a|one|only one)?\s*"
    r"(?:single\s+)?(?:word|phrase|number|term)(?:\s+or\s+(?:a\s+)?(?:short\s+)?(?:phrase|word|number))?\s*\.?\s*$"
    r"|\s*(?:please\s+)?answer\s+(?:briefly|shortly|with yes or no|yes or no)\s*\.?\s*$"
    r"|\s*(?:be brief|keep it short|short answer(?: only)?|one word(?: only)?)\s*\.?\s*$",
    re.I,
)
_ONE_SENTENCE = re.compile(r"\b(one|single|a short|1)[ -]sentence\b|\bin a sentence\b|\bbrief(ly)?\b|\bshort\b", re.I)

_DESCRIBE = re.compile(
    r"^\s*$|\b(describe|description|caption|alt[ -]?text|summari[sz]e|summary|what do you see|what can you see|"
    r"what'?s (in|on) (the|this) (image|picture|photo|pic)|what is (in|on) (the|this) (image|picture|photo|pic)|"
    r"tell me about)\b",
    re.I,
)
_KEYWORDS = re.compile(
    r"\b(keywords?|tags?|hashtags?|labels?|list (the |all )?(objects|things|items|contents))\b", re.I
)
_COMPARE = re.compile(
    r"\b(compare|comparison|differen\w*|differ|same|similar\w*|both|alike|in common|versus|vs)\b", re.I
)
_ANY_TEXT = re.compile(
    r"\b(is there|are there|does (it|this|the image) (have|contain|show)|any)\b.*\b(text|writing|words?|letters)\b",
    re.I,
)
_COLOUR = re.compile(r"\bcolou?rs?\b|\bcolou?red\b|\bhue\b|\bshade\b", re.I)
_KIND = re.compile(
    r"\b(what (kind|type|sort) of (image|picture|file)|is (this|it) an? (photo|photograph|screenshot|document|"
    r"scan|drawing|graphic|picture of text)|is this a real photo)\b",
    re.I,
)
_IDENTITY = re.compile(
    r"\b(what('?s| is| are)? (this|that|it|these|those|shown|pictured|depicted)|what (animal|object|thing|item|"
    r"drink|beverage|food|dish|breed|species|kind of|type of|sort of|vehicle|plant|bird|dog|cat|fish)|"
    r"which (animal|object|breed|species)|identify|recogni[sz]e|classify|label|is (this|it|that) an?|"
    r"is there an?|are there|does (it|this|the image) (show|contain|have) an?|can you see an?|do you see an?)\b",
    re.I,
)
_OPEN = re.compile(
    r"\b(how many|count|where|left|right|above|below|behind|front|next to|beside|between|top|bottom|corner|"
    r"why|who|whose|doing|wearing|holding|looking|feel|feeling|emotion|mood|happy|sad|angry|age|old|young|"
    r"gender|size|big|large|small|tall|far|near|weather|season|time of day|position|located|direction)\b",
    re.I,
)
_ASKED_THING = re.compile(
    r"\b(?:is (?:this|it|that|there)|are there|does (?:it|this|the image|the picture|the photo) (?:show|contain|have)|"
    r"can you see|do you see)\s+(?:an?|any|some|the)?\s*([a-z][a-z -]{1,40}?)\s*(?:in (?:it|this|the)\b.*)?[?.!]*$",
    re.I,
)
_SHAPE = re.compile(r"\b(shapes?|circles?|squares?|rectangles?|triangles?|ellipses?|ovals?|figure)\b", re.I)
_SHAPE_WORDS = {"circle": "circle", "oval": "ellipse", "ellipse": "ellipse", "square": "square",
                "rectangle": "rectangle", "triangle": "triangle"}  # fmt: skip
_COLOUR_WORDS = {  # a colour named in a question -> the palette names it covers
    "red": {"red", "dark red"}, "brown": {"brown", "dark red"}, "orange": {"orange"}, "yellow": {"yellow"},
    "green": {"green", "dark green", "olive"}, "teal": {"teal", "turquoise"}, "turquoise": {"turquoise", "teal"},
    "cyan": {"turquoise", "teal"}, "blue": {"blue", "navy", "light blue"}, "navy": {"navy"},
    "purple": {"purple", "magenta"}, "violet": {"purple"}, "pink": {"pink", "magenta"}, "magenta": {"magenta"},
    "black": {"black"}, "white": {"white"}, "grey": {"grey", "dark grey", "light grey"},
    "gray": {"grey", "dark grey", "light grey"}, "beige": {"beige"}, "olive": {"olive"},
}
def answer(question: str, evs: list[dict[str, Any]]) -> str:
    """The reply to ``question`` about the images whose evidence is ``evs``."""
    if not evs:
        return NO_IMAGE
    q, short = split_instruction(question)
    if len(evs) > 1 and _COMPARE.search(q):
        return compare(evs)
    replies = [answer_one(q, ev) for ev in evs]
    picked = [r.short if short else r.full for r in replies]
    if len(picked) == 1:
        return picked[0]
    return " ".join(f"Image {i}: {text}" for i, text in enumerate(picked, 1))


def split_instruction(question: str) -> tuple[str, bool]:
    """('What is the total?', True) from 'What is the total?\\nAnswer using a single word.'"""
    q = " ".join(question.split())
    m = _SHORT.search(q)
    if m and m.start() > 0:
        return q[: m.start()].strip(), True
    return q, False


def is_describe(question: str) -> bool:
    """An empty prompt or a request for a description (not a specific question)."""
    q, _ = split_instruction(question)
    return bool(_DESCRIBE.search(q)) and not TEXT_WORDS.search(q) and not _COLOUR.search(q)


def answer_one(q: str, ev: dict[str, Any]) -> Reply:
    if is_describe(q):
        caption = C.caption(ev)
        return Reply(caption if _ONE_SENTENCE.search(q) else C.describe(ev), caption)
    if _KEYWORDS.search(q):
        words = ", ".join(keywords(ev))
        return Reply(words, words)
    if _ANY_TEXT.search(q):
        return any_text(ev)
    if TEXT_WORDS.search(q) or shares_words_with_text(q, ev):
        return read_text(q, ev)
    if ev["text"] and not _OPEN.search(q) and extract(q, ev["text"].split("\n"), set()) is not None:
        return read_text(q, ev)  # "What is the phone number?" on an image with text
    if ev["layout"].get("shape") and _SHAPE.search(q):
        return _spelled(shape(q, ev), q)
    if _COLOUR.search(q):
        return _spelled(colours(q, ev), q)
    if _KIND.search(q):
        return kind(ev)
    if re.search(r"\bhow many (lines|rows)\b", q, re.I):
        n = len(ev["text"].split("\n")) if ev["text"] else 0
        return Reply(f"I can read {n} line{'s' if n != 1 else ''} of text in the image.", str(n))
    if _IDENTITY.search(q) and not _OPEN.search(q):
        return identity(q, ev)
    return cannot(ev)


def _spelled(reply: Reply, q: str) -> Reply:
    """Answer in the asker's spelling: 'gray' to someone who writes 'color' or 'gray'."""
    if re.search(r"\b(colors?|colored|gray)\b", q, re.I):
        return Reply(*(re.sub(r"\bgrey\b", "gray", t) for t in (reply.full, reply.short)))
    return reply


def keywords(ev: dict[str, Any]) -> list[str]:
    """Tags from the evidence: what it shows (confident labels and their group), kind, colours."""
    words: list[str] = []
    s = C.subject(ev)
    if s is not None:
        words.append(s["name"])
        words += [x["label"] for x in ev["labels"] if x["score"] >= C.MENTION]
        words += [g for x in s["members"] for g in x["groups"] if g in L.BROAD]
    words.append(ev["kind"])
    if ev["text"]:
        words.append("text")
    words += [c["name"] for c in ev["colours"] if c["share"] >= 0.1][:3]
    return list(dict.fromkeys(words))


# ------------------------------------------------------------------------------------- colours


def colours(q: str, ev: dict[str, Any]) -> Reply:
    cols = ev["colours"]
    if not cols:
        return Reply("I couldn't measure the colours of this image.", "unknown")
    if cols[0]["share"] >= 0.95:
        return Reply(f"The image is a single solid colour: {cols[0]['name']} ({cols[0]['hex']}).", cols[0]["name"])
    listed = C.join([f"{c['name']} ({C.pct(c['share'])})" for c in cols[:4]])
    named = _asked_thing(q)
    if named and named not in ("image", "picture", "photo", "background", "it", "this"):
        full = f"I can't pick out the colour of one thing in the picture. Overall, the main colours are {listed}."
        return Reply(full, cols[0]["name"])
    return Reply(f"The main colours are {listed}.", C.colour_phrase(ev))


# --------------------------------------------------------------------------------------- shape


def shape(q: str, ev: dict[str, Any]) -> Reply:
    """Questions about the one shape of a flat graphic ("What shape is the red one?", "Is there
    not a blue circle?"): answered from the geometry in shapes.py."""
    sh = ev["layout"]["shape"]
    seen = f"{sh['colour']} {sh['shape']}"
    where = f"on a {ev['layout']['background']['name']} background"
    ql = q.lower()
    asked_shape = next((_SHAPE_WORDS[w] for w in re.findall(r"[a-z]+", ql) if w in _SHAPE_WORDS), None)
    asked_colour = next((w for w in re.findall(r"[a-z]+", ql) if w in _COLOUR_WORDS), None)
    shape_ok = asked_shape is None or asked_shape == sh["shape"] or {asked_shape, sh["shape"]} in (
        {"square", "rectangle"}, {"circle", "ellipse"})  # fmt: skip
    colour_ok = asked_colour is None or sh["colour"] in _COLOUR_WORDS[asked_colour]
    if re.match(r"^(is|are|does|do|can|has|have)\b", ql):
        present = shape_ok and colour_ok
        if re.search(r"\b(not|no)\b", ql):
            present = not present
        word = "Yes" if present else "No"
        return Reply(f"{word}: the image shows one {seen} {where}.", word)
    if not (shape_ok and colour_ok):
        asked = " ".join(w for w in (asked_colour, asked_shape) if w) if asked_shape else f"{asked_colour} shape"
        return Reply(f"I see no {asked}: the only shape is {L.article(seen)} {where}.", f"no {asked}")
    if _COLOUR.search(q):
        return Reply(f"The {sh['shape']} is {sh['colour']}.", sh["colour"])
    return Reply(f"It is {L.article(sh['shape'])} ({sh['colour']}, {where}).", sh["shape"])


# ---------------------------------------------------------------------------------------- kind


def kind(ev: dict[str, Any]) -> Reply:
    k = ev["kind"]
    noun = {"photo": "a photo", "document": "a document", "screenshot": "a screenshot"}.get(k, "a flat graphic")
    return Reply(f"It looks like {noun}: {ev['kind_reason']}.", k)


# ------------------------------------------------------------------------------------ identity


def _asked_thing(q: str) -> str | None:
    m = _ASKED_THING.search(q.strip())
    if m:
        return m.group(1).strip().lower()
    m = re.search(r"\bcolou?r (?:is|are) (?:the|this|that|these|those)\s+([a-z][a-z -]{1,30}?)\s*[?.!]*$", q, re.I)
    return m.group(1).strip().lower() if m else None


def _matches(thing: str, label: dict[str, Any]) -> bool:
    """Does the thing a question names ("cats", "tabby", "animal") fit this label?"""
    name = label["label"].lower()
    for w in {thing, thing[:-1] if thing.endswith("s") else thing}:
        if w == name or re.search(rf"\b{re.escape(w)}\b", name):
            return True
        if w in label["groups"] or L.QUESTION_WORDS.get(w) in label["groups"]:
            return True
    return False


def _it_is(score: float) -> str:
    if score >= C.SURE:
        return "It is"
    if score >= C.PROBABLY:
        return "It is probably"
    if score >= C.MENTION:
        return "It is possibly"
    return "It might be"


def identity(q: str, ev: dict[str, Any]) -> Reply:
    ranked = ev["labels"]
    best = C.guesses([x for x in ranked if x["score"] >= 0.05] or ranked[:1])
    ql = q.lower()
    thing = _asked_thing(q)
    if thing and re.match(r"^(is|are|does|can|do)\b", ql):
        return yes_no(thing, ev, best)
    for word, group in L.QUESTION_WORDS.items():
        if not re.search(rf"\b(what|which)\s+(kind of |type of |sort of )?{word}s?\b", ql):
            continue
        wanted_groups = {"dog", "cat"} if word == "breed" else {group}
        members = [x for x in ranked if wanted_groups & set(x["groups"]) and x["score"] >= 0.05]
        if not members:
            missing = "a dog or a cat" if word == "breed" else L.article(word)
            return Reply(f"I don't see {missing} among the classifier's guesses. Its best guesses are {best}.", "none")
        s = None if word in ("breed", "species") else C.subject({"labels": members})
        name, score = (s["name"], s["score"]) if s else (members[0]["label"], members[0]["score"])
        return Reply(f"{_it_is(score)} {L.article(name)}. The classifier's guesses: {C.guesses(members)}.", name)
    if ev["kind"] in ("document", "screenshot"):
        return Reply(C.describe(ev), ev["kind"])
    s = C.subject(ev)
    if s is None:
        full = f"I'm not sure: the ImageNet classifier is not confident about this image. Its best guesses are {best}."
        return Reply(full, ranked[0]["label"] if ranked else UNKNOWN)
    return Reply(f"{_it_is(s['score'])} {L.article(s['name'])}. The classifier's guesses: {best}.", s["name"])


def yes_no(thing: str, ev: dict[str, Any], best: str) -> Reply:
    ranked = ev["labels"]
    hits = [x for x in ranked if _matches(thing, x)]
    total = sum(x["score"] for x in hits)
    if hits and total >= C.SURE:
        return Reply(f"Yes, most likely: the classifier says {C.guesses(hits)}.", "Yes")
    if hits and total >= C.PROBABLY:
        return Reply(f"Probably: the classifier says {C.guesses(hits)}, but it is not certain.", "Yes")
    if hits and total >= C.MENTION:
        return Reply(f"Possibly: the classifier says {C.guesses(hits)}; its best guesses are {best}.", "Yes")
    if hits:
        full = f"Possibly, but unlikely: {C.guesses(hits)} is only a weak guess. The best guesses are {best}."
        return Reply(full, "No")
    known = thing in L.QUESTION_WORDS or any(thing == n.lower() or thing == L.plain(n).lower() for n in L.names())
    if known:
        return Reply(f"Probably not: {thing} is not among the classifier's guesses, which are {best}.", "No")
    full = (
        f"I can't tell: “{thing}” is not one of the 1,000 ImageNet categories I recognise, and I can't look "
        f"for other things. My best guesses for this image are {best}. {VLM_HINT}"
    )
    return Reply(full, UNKNOWN)


# ------------------------------------------------------------------------------------- compare


def compare(evs: list[dict[str, Any]]) -> str:
    parts = [f"Image {i} {C.shows(ev)}, mostly {C.colour_phrase(ev)}." for i, ev in enumerate(evs, 1)]
    kinds = {ev["kind"] for ev in evs}
    if len(kinds) == 1:
        parts.append(f"All {len(evs)} are {evs[0]['kind']}s." if len(evs) > 2 else f"Both are {evs[0]['kind']}s.")
    label_sets = [{x["label"] for x in ev["labels"] if x["score"] >= 0.1} for ev in evs]
    group_sets = [{g for x in ev["labels"] if x["score"] >= 0.1 for g in x["groups"]} for ev in evs]
    shared_labels = set.intersection(*label_sets)
    shared_groups = set.intersection(*group_sets)
    if shared_labels:
        parts.append(f"The classifier finds the same things in them: {C.join(sorted(shared_labels))}.")
    elif shared_groups - {"animal"}:
        parts.append(f"They show the same kind of thing ({C.join(sorted(shared_groups - {'animal'}))}).")
    elif "animal" in shared_groups:
        parts.append("Both show animals, but different ones.")
    else:
        parts.append("The classifier finds nothing in common between them.")
    common = set.intersection(*({c["name"] for c in ev["colours"] if c["share"] >= 0.1} for ev in evs))
    parts.append(f"Colours they share: {C.join(sorted(common))}." if common else "They have no main colour in common.")
    which = [str(i) for i, ev in enumerate(evs, 1) if ev["text"]]
    if which:
        parts.append(f"Text appears in image{'s' if len(which) > 1 else ''} {C.join(which)}.")
    return " ".join(parts)


# -------------------------------------------------------------------------------------- cannot


def cannot(ev: dict[str, Any]) -> Reply:
    full = f"I can't answer that reliably. {LIMITS} What I can tell you: {C.describe(ev)} {VLM_HINT}"
    return Reply(full, UNKNOWN)
