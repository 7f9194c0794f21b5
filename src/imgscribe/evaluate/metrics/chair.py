"""CHAIR: object hallucination in captions and descriptions (Rohrbach et al., EMNLP 2018).

``CHAIR_i = hallucinated object mentions / all object mentions`` and
``CHAIR_s = captions with at least one hallucinated object / captions`` (lower is better), plus
``object_recall = ground-truth objects mentioned / ground-truth objects`` (higher is better).

A mention is a word or phrase of the vocabulary (``data/chair_vocabulary.json``: the 80 COCO
categories with synonyms, plus the objects of the built-in photo set), mapped to its canonical
object; it is hallucinated when that object is not among the image's objects. Every mention
counts (as in the original code: "a dog and another dog" is two mentions).

Offline, no NLTK data: words are lowercased ASCII runs; a word is singularised only to a form
the vocabulary knows (irregular plurals, then ``-ies -> -y``, ``-ves -> -f/-fe``, ``-es``,
``-s``), so "glasses" never becomes a hallucinated "glass" unless the table says so; phrases are
matched longest first ("hot dog" before "dog"). Colour words that are also objects ("orange") count
only when they are not used as a colour ("an orange suit", "orange and brown stripes" are
colours, "an orange on a plate" is fruit); the original counted both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .base import Score

__all__ = ["Chair", "Vocabulary", "extract_objects", "vocabulary"]

_WORD = re.compile(r"[a-z0-9]+")
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "people", "mice": "mouse",
              "geese": "goose", "teeth": "tooth", "feet": "foot", "knives": "knife", "oxen": "ox",
              "calves": "calf", "leaves": "leaf", "wolves": "wolf", "buses": "bus", "skis": "skis",
              "scissors": "scissors", "sheep": "sheep", "fish": "fish", "grass": "grass"}  # fmt: skip
# Words after an attributive colour that still leave it a noun ("an orange on a plate").
_FUNCTION_WORDS = frozenset("and or with on in of at by to from is are was were sits lies next near".split())
_COLOURS = frozenset("red orange yellow green blue purple pink brown black white gray grey golden silver".split())


@dataclass(frozen=True)
class Vocabulary:
    synonyms: dict[tuple[str, ...], str]  # phrase (as words) -> canonical object
    words: frozenset[str]  # every word of every phrase
    attributive: frozenset[str]
    max_len: int

    @classmethod
    def from_table(cls, table: dict[str, Iterable[str]], attributive: Iterable[str] = ()) -> Vocabulary:
        synonyms: dict[tuple[str, ...], str] = {}
        for obj, names in table.items():
            for name in [obj, *names]:
                synonyms[tuple(_WORD.findall(name.lower()))] = obj
        words = frozenset(w for phrase in synonyms for w in phrase)
        return cls(synonyms, words, frozenset(attributive), max(len(p) for p in synonyms))

    def canonical(self, name: str) -> str:
        """The canonical object for a name in an object list ("mug" -> "cup"); unknown names as given."""
        words = tuple(self.singular(w) for w in _WORD.findall(name.lower()))
        return self.synonyms.get(words, name.strip().lower())

    def singular(self, word: str) -> str:
        if word in self.words:
            return word
        if word in _IRREGULAR:
            return _IRREGULAR[word]
        candidates = []
        if word.endswith("ies"):
            candidates.append(word[:-3] + "y")
        if word.endswith("ves"):
            candidates += [word[:-3] + "f", word[:-3] + "fe"]
        if word.endswith("es"):
            candidates.append(word[:-2])
        if word.endswith("s"):
            candidates.append(word[:-1])
        return next((c for c in candidates if c in self.words), word)


@cache
def vocabulary() -> Vocabulary:
    """The project's vocabulary (COCO categories + the photo set's objects)."""
    path = resources.files("imgscribe.evaluate").joinpath("data").joinpath("chair_vocabulary.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocabulary.from_table({**data["coco"], **data["extra"]}, data.get("attributive", ()))


def extract_objects(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """Every object mention in ``text``, as canonical names, in order (duplicates kept)."""
    vocab = vocab or vocabulary()
    raw = _WORD.findall(text.lower())
    words = [vocab.singular(w) for w in raw]
    found: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(vocab.max_len, len(words) - i), 0, -1):
            obj = vocab.synonyms.get(tuple(words[i : i + size]))
            if obj is None:
                continue
            if size == 1 and raw[i] in vocab.attributive:
                if _is_colour(raw, i):
                    break  # a colour here, not the object
            found.append(obj)
            i += size - 1
            break
        i += 1
    return found


def _is_colour(raw: list[str], i: int) -> bool:
    """Whether the colour-like word at ``i`` is used as a colour: "an orange suit", "orange and
    brown stripes", "bright orange" (but not "an orange", "an orange and a banana")."""
    following = raw[i + 1] if i + 1 < len(raw) else None
    after = raw[i + 2] if i + 2 < len(raw) else None
    if following in ("and", "or") and after in _COLOURS:
        return True
    if i > 0 and raw[i - 1] in _COLOURS | {"bright", "dark", "light", "pale", "deep"}:
        return True
    return following is not None and following not in _FUNCTION_WORDS


class Chair:
    name = "chair"

    def __init__(self, vocab: Vocabulary | None = None):
        self.vocab = vocab or vocabulary()

    def score(self, predictions: Sequence[str], references: Sequence[Iterable[str]]) -> Score:
        per: list[dict[str, float]] = []
        mentions = hallucinated = captions_with = gt_total = gt_found = 0
        for text, objects in zip(predictions, references):
            truth = {self.vocab.canonical(o) for o in objects}
            said = extract_objects(text, self.vocab)
            bad = [o for o in said if o not in truth]
            hit = truth.intersection(said)
            mentions += len(said)
            hallucinated += len(bad)
            captions_with += bool(bad)
            gt_total += len(truth)
            gt_found += len(hit)
            per.append({
                "chair_i": len(bad) / len(said) if said else 0.0,
                "chair_s": float(bool(bad)),
                "object_recall": len(hit) / len(truth) if truth else 0.0,
                "mentions": float(len(said)),
            })  # fmt: skip
        n = len(per)
        values = {
            "chair_i": hallucinated / mentions if mentions else 0.0,
            "chair_s": captions_with / n if n else 0.0,
            "object_recall": gt_found / gt_total if gt_total else 0.0,
            "mentions_per_caption": mentions / n if n else 0.0,
        }
        return Score(values, per)
