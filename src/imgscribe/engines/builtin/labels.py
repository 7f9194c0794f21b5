"""ImageNet-1k class names and coarse groups ("cat", "dog", "drink"...), for wording and questions.

No model here: the names ship as ``imagenet_labels.json`` in this package (see its "about" field).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

# Coarse groups by ILSVRC-2012 index. A class may be in a specific group and a broad one.
_RANGES: dict[str, list[tuple[int, int]]] = {
    # specific
    "fish": [(0, 6), (389, 397)],
    "bird": [(7, 24), (80, 100), (127, 146)],
    "amphibian": [(25, 32)],
    "turtle": [(33, 37)],
    "lizard": [(38, 48)],
    "crocodile": [(49, 50)],
    "snake": [(52, 68)],
    "spider": [(72, 77)],
    "crab or lobster": [(118, 126)],
    "whale or seal": [(147, 150)],
    "dog": [(151, 268)],
    "wolf or fox": [(269, 280)],
    "cat": [(281, 285)],
    "big cat": [(286, 293)],
    "bear": [(294, 297)],
    "insect": [(300, 326)],
    "rabbit": [(330, 332)],
    "horse": [(339, 339), (603, 603)],
    "monkey or ape": [(365, 384)],
    "elephant": [(101, 101), (385, 386)],
    "vehicle": [(404, 404), (407, 408), (436, 436), (444, 444), (466, 466), (468, 468),
                (511, 511), (555, 555), (565, 565), (569, 569), (573, 573), (575, 575), (586, 586),
                (595, 595), (603, 603), (609, 609), (612, 612), (627, 627), (654, 654), (656, 656),
                (661, 661), (665, 665), (670, 671), (675, 675), (705, 705), (717, 717), (734, 734),
                (751, 751), (757, 757), (779, 779), (803, 803), (817, 817), (829, 829), (847, 847),
                (864, 864), (867, 867), (870, 870), (880, 880)],
    "boat": [(403, 403), (472, 472), (484, 484), (510, 510), (554, 554), (576, 576), (625, 625), (628, 628),
             (724, 724), (780, 780), (814, 814), (833, 833), (871, 871), (913, 914)],
    "aircraft": [(404, 405), (895, 895), (908, 908)],
    "fruit": [(948, 957)],
    "vegetable": [(936, 947)],
    "drink": [(966, 967), (969, 969)],
    "drink container": [(440, 441), (503, 505), (572, 572), (725, 725),
                  (737, 737), (849, 849), (898, 899), (901, 901), (907, 907), (968, 968)],
    "screen or document": [(446, 446), (549, 549), (664, 664), (782, 782), (851, 851), (916, 918),
                           (921, 922)],
    # broad
    "animal": [(0, 397)],
    "food": [(924, 965)],
    "landscape": [(970, 980)],
    "person": [(981, 983)],
    "plant": [(984, 990), (998, 998)],
    "fungus": [(991, 997)],
}
BROAD = ("animal", "food", "drink", "landscape", "person", "plant", "fungus")

# A word in a question -> the label group it asks about. ("person" is absent: ImageNet has no class
# for people in general, so the model cannot tell whether there is one.)
QUESTION_WORDS = {
    "animal": "animal", "creature": "animal", "pet": "animal", "drink": "drink", "beverage": "drink",
    "food": "food", "dish": "food", "meal": "food", "breed": "dog", "dog": "dog", "cat": "cat",
    "bird": "bird", "fish": "fish", "vehicle": "vehicle", "car": "vehicle", "boat": "boat", "ship": "boat",
    "plant": "plant", "flower": "plant", "fruit": "fruit", "vegetable": "vegetable", "insect": "insect",
    "bug": "insect", "snake": "snake", "monkey": "monkey or ape", "ape": "monkey or ape", "bear": "bear",
    "plane": "aircraft", "aircraft": "aircraft", "mushroom": "fungus", "landscape": "landscape",
}


# Names read better without an article ("a photo of red wine", "of jeans").
_NO_ARTICLE = {
    "guacamole", "consommé", "ice cream", "mashed potato", "chocolate sauce", "dough", "red wine",
    "eggnog", "hay", "toilet paper", "chain mail", "jeans", "clogs", "pyjamas", "sunglasses",
    "panpipes", "swimming trunks", "carbonara", "hot pot", "corn", "rapeseed", "velvet", "wool",
    "spaghetti squash", "butternut squash", "broccoli", "cauliflower", "coral fungus",
    "chainmail",
}


@cache
def names() -> list[str]:
    data = json.loads(resources.files(__package__).joinpath("imagenet_labels.json").read_text("utf-8"))
    names = list(data["names"])
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_labels.json: expected 1000 names, found {len(names)}")
    return names


@cache
def _group_table() -> dict[int, list[str]]:
    table: dict[int, list[str]] = {}
    for group, ranges in _RANGES.items():
        for lo, hi in ranges:
            for i in range(lo, hi + 1):
                table.setdefault(i, []).append(group)
    return table


def groups(index: int) -> list[str]:
    """Specific groups first, then broad ones: e.g. 282 -> ["cat", "animal"]."""
    gs = _group_table().get(index, [])
    return [g for g in gs if g not in BROAD] + [g for g in gs if g in BROAD]


def all_groups() -> list[str]:
    return list(_RANGES)


def is_object(index: int) -> bool:
    return 398 <= index <= 923 or index == 999


def article(name: str) -> str:
    """'a tiger cat', 'an espresso machine', 'jeans'."""
    if name in _NO_ARTICLE or name.split(" (")[0] in _NO_ARTICLE:
        return name
    low = name.lower()
    if low.startswith(("eu", "uni", "use", "one", "ewe", "u-")):
        return "a " + name
    if low.startswith(("hour", "honest", "heir")) or low[:1] in "aeiou":
        return "an " + name
    return "a " + name


def plain(name: str) -> str:
    """The name without a disambiguation in brackets: 'crane (bird)' -> 'crane'."""
    return name.split(" (")[0]
