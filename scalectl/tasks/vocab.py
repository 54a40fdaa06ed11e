"""Vocabulary and small helpers shared by the synthetic skill generators (:mod:`.skills`, :mod:`.distractors`).

Every word list and name here was written for scalectl; no benchmark file is read.
"""

from __future__ import annotations

import random

from ..errors import TaskError

NAMES = [
    "Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo",
    "Mia", "Ned", "Oda", "Pia", "Raj", "Sol", "Tess", "Uma", "Vic", "Wes", "Yara", "Zed",
]

WORDS = [
    "acorn", "anchor", "apron", "badge", "bamboo", "banner", "basket", "beacon", "biscuit", "blanket",
    "bottle", "bucket", "cabin", "candle", "canyon", "carpet", "castle", "cedar", "chimney", "circus",
    "cliff", "clover", "cobalt", "comet", "copper", "cotton", "crayon", "crystal", "dagger", "desert",
    "dolphin", "donkey", "dragon", "drum", "eagle", "echo", "ember", "engine", "falcon", "feather",
    "fiddle", "forest", "fossil", "garden", "garlic", "glacier", "goblet", "granite", "gravel", "harbor",
    "harvest", "helmet", "hollow", "honey", "island", "ivory", "jacket", "jigsaw", "jungle", "kernel",
    "kettle", "kitten", "ladder", "lantern", "lemon", "lizard", "lobster", "magnet", "maple", "marble",
    "meadow", "mirror", "mitten", "monkey", "mustard", "needle", "nickel", "noodle", "oasis", "oyster",
    "paddle", "pebble", "pepper", "pillow", "planet", "pocket", "puzzle", "quartz", "quiver", "rabbit",
    "raven", "ribbon", "river", "rocket", "saddle", "salmon", "sandal", "shadow", "silver", "spider",
    "stable", "sunset", "tablet", "thimble", "thunder", "tiger", "timber", "tunnel", "turnip", "umbrella",
    "valley", "velvet", "violin", "walnut", "wagon", "whistle", "willow", "window", "wizard", "yarn",
    "yogurt", "zebra", "zipper",
]

# category -> (singular, plural) nouns; no item belongs to two categories
CATEGORIES: dict[str, list[tuple[str, str]]] = {
    "fruit": [("apple", "apples"), ("banana", "bananas"), ("cherry", "cherries"), ("grape", "grapes"),
              ("peach", "peaches"), ("plum", "plums"), ("mango", "mangoes"), ("pear", "pears"),
              ("kiwi", "kiwis"), ("orange", "oranges")],
    "vegetable": [("carrot", "carrots"), ("onion", "onions"), ("potato", "potatoes"), ("cabbage", "cabbages"),
                  ("leek", "leeks"), ("radish", "radishes"), ("turnip", "turnips"), ("beet", "beets")],
    "animal": [("dog", "dogs"), ("cat", "cats"), ("rabbit", "rabbits"), ("goat", "goats"), ("horse", "horses"),
               ("duck", "ducks"), ("frog", "frogs"), ("sheep", "sheep"), ("cow", "cows"), ("mouse", "mice")],
    "musical instrument": [("violin", "violins"), ("flute", "flutes"), ("drum", "drums"), ("trumpet", "trumpets"),
                           ("piano", "pianos"), ("guitar", "guitars"), ("harp", "harps"), ("cello", "cellos")],
    "tool": [("hammer", "hammers"), ("wrench", "wrenches"), ("saw", "saws"), ("screwdriver", "screwdrivers"),
             ("chisel", "chisels"), ("drill", "drills"), ("shovel", "shovels"), ("rake", "rakes")],
    "vehicle": [("bus", "buses"), ("truck", "trucks"), ("bicycle", "bicycles"), ("tractor", "tractors"),
                ("scooter", "scooters"), ("van", "vans"), ("taxi", "taxis"), ("train", "trains")],
    "piece of furniture": [("chair", "chairs"), ("table", "tables"), ("sofa", "sofas"), ("bed", "beds"),
                           ("desk", "desks"), ("bookcase", "bookcases"), ("stool", "stools"), ("dresser", "dressers")],
}
CATEGORY_PLURALS = {
    "fruit": "fruits", "vegetable": "vegetables", "animal": "animals", "musical instrument": "musical instruments",
    "tool": "tools", "vehicle": "vehicles", "piece of furniture": "pieces of furniture",
}

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white", "gray", "teal"]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
LETTERS = "ABCDEFGH"


# --------------------------------------------------------------------------------------------
# helpers shared by the skill generators


def lettered_options(rng: random.Random, correct: str, distractors: list[str]) -> tuple[str, str]:
    """Shuffle ``correct`` among ``distractors``; return (the ``Options:`` block, the correct ``(X)``)."""
    choices = [correct, *distractors]
    if len(set(choices)) != len(choices):  # pragma: no cover - a generator bug, not user input
        raise TaskError(f"duplicate option among {choices}")
    rng.shuffle(choices)
    lines = [f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return "Options:\n" + "\n".join(lines), f"({LETTERS[choices.index(correct)]})"


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def join_and(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"



LONG_WORDS = [
    "strawberry", "bookkeeper", "committee", "assessment", "parallel", "balloon", "coffee", "pepperoni", "referee",
    "occurrence", "success", "address", "millennium", "hippopotamus", "pineapple", "broccoli", "accommodate",
    "giraffe", "butterfly", "cinnamon", "possession", "embarrass", "raccoon", "necessary", "caterpillar",
    "grasshopper", "excellent", "difficult", "beginning", "banana", "mammoth", "tomorrow", "llama", "avocado",
    "peppermint", "cucumber", "blueberry", "kangaroo", "mosquito", "volleyball",
]
