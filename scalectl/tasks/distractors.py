"""Seeded generators for *distractor skills*: a share of the adapter pool that no BIG-Bench Hard task needs.

A pool in which every adapter helps some benchmark task makes retrieval look better than it is.
These twelve skills (letter ciphers, vowel removal, pig latin, acronyms, Roman numerals, number
words, binary, title case, spelling backwards, plurals, capital cities, first letters) train
adapters that none of the 23 BBH task families calls for, so retrieval and composition have
something to reject. As in :mod:`scalectl.tasks.skills`, no benchmark file is read, imported or
copied: every template and word list was written for this module (some vocabulary is reused from
``skills``), and every answer is computed from the generated structure. Each generator takes a
``random.Random`` and returns one ``(input, target)`` pair; inputs are short (under 60 words),
targets are one line, and the generators are stdlib-only and deterministic.
"""

from __future__ import annotations

import random
import re
from typing import Callable

from .vocab import CATEGORIES, LONG_WORDS, WORDS, lettered_options

__all__ = ["DISTRACTORS"]

# --------------------------------------------------------------------------------------------
# vocabulary (hand-written for this module)

SHORT_WORDS = [
    "ant", "bell", "boat", "brick", "broom", "cloud", "crab", "crown", "desk", "dust", "fern", "flag", "frost",
    "glove", "harp", "hill", "horn", "jar", "kite", "lamp", "leaf", "milk", "mint", "moss", "nest", "nut", "owl",
    "plum", "pond", "rope", "salt", "seed", "shell", "silk", "snail", "sock", "star", "stone", "storm", "swan",
    "tent", "toad", "torch", "tulip", "wheel", "wind", "wolf", "wool", "oven", "elbow", "igloo", "orbit", "udder",
]
WORD_POOL = list(dict.fromkeys(WORDS + LONG_WORDS + SHORT_WORDS))  # order-preserving dedupe
VOWELS = "aeiou"

ADJECTIVES = [
    "quiet", "golden", "rapid", "hidden", "silent", "broken", "gentle", "lucky", "brave", "tiny", "ancient", "frozen",
    "bright", "crimson", "dusty", "early", "fierce", "humble", "lonely", "misty", "noble", "proud", "rusty",
    "sleepy", "swift", "wild", "wooden", "young", "happy", "secret",
]

PLURALS = [  # (singular, plural), irregular and regular; merged below with the CATEGORIES pairs of skills.py
    ("man", "men"), ("woman", "women"), ("child", "children"), ("tooth", "teeth"), ("foot", "feet"),
    ("goose", "geese"), ("person", "people"), ("ox", "oxen"), ("louse", "lice"), ("cactus", "cacti"),
    ("fungus", "fungi"), ("nucleus", "nuclei"), ("crisis", "crises"), ("thesis", "theses"),
    ("phenomenon", "phenomena"), ("criterion", "criteria"), ("deer", "deer"), ("fish", "fish"), ("moose", "moose"),
    ("series", "series"), ("knife", "knives"), ("leaf", "leaves"), ("wolf", "wolves"), ("loaf", "loaves"),
    ("shelf", "shelves"), ("half", "halves"), ("wife", "wives"), ("life", "lives"), ("calf", "calves"),
    ("elf", "elves"), ("hero", "heroes"), ("tomato", "tomatoes"), ("echo", "echoes"), ("city", "cities"),
    ("baby", "babies"), ("berry", "berries"), ("party", "parties"), ("puppy", "puppies"), ("story", "stories"),
    ("lady", "ladies"), ("fly", "flies"), ("key", "keys"), ("day", "days"), ("toy", "toys"), ("monkey", "monkeys"),
    ("boy", "boys"), ("box", "boxes"), ("fox", "foxes"), ("church", "churches"), ("dish", "dishes"),
    ("brush", "brushes"), ("glass", "glasses"), ("kiss", "kisses"), ("match", "matches"), ("bench", "benches"),
    ("quiz", "quizzes"), ("buzz", "buzzes"), ("tax", "taxes"), ("witch", "witches"), ("photo", "photos"),
    ("roof", "roofs"), ("chef", "chefs"), ("cliff", "cliffs"), ("zoo", "zoos"), ("radio", "radios"),
    ("book", "books"), ("tree", "trees"), ("lamp", "lamps"),
]
PLURAL_TABLE = list(({s: p for items in CATEGORIES.values() for s, p in items} | dict(PLURALS)).items())

CAPITALS = [  # (country as it reads mid-sentence, capital); only long-settled, unambiguous capitals
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"), ("the United Kingdom", "London"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Iceland", "Reykjavik"), ("Poland", "Warsaw"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Greece", "Athens"), ("Romania", "Bucharest"),
    ("Ukraine", "Kyiv"), ("Russia", "Moscow"), ("Turkey", "Ankara"), ("Egypt", "Cairo"), ("Morocco", "Rabat"),
    ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ethiopia", "Addis Ababa"), ("Ghana", "Accra"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("South Korea", "Seoul"), ("India", "New Delhi"), ("Pakistan", "Islamabad"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("the Philippines", "Manila"), ("Iran", "Tehran"),
    ("Saudi Arabia", "Riyadh"), ("Canada", "Ottawa"), ("Cuba", "Havana"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogota"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"),
]

ROMAN = [(100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# --------------------------------------------------------------------------------------------
# letter and word transformations


def make_caesar_shift(rng: random.Random) -> tuple[str, str]:
    word, k = rng.choice(WORD_POOL), rng.randint(1, 5)
    abc = "abcdefghijklmnopqrstuvwxyz"
    shifted = word.translate(str.maketrans(abc, abc[k:] + abc[:k]))
    templ = rng.choice(['Shift each letter of "{w}" forward by {k} in the alphabet, wrapping from z to a.',
                        'Apply a Caesar shift of {k} to the word "{w}".',
                        'Encode "{w}" by moving every letter {k} places later in the alphabet (z wraps to a).'])
    return templ.format(w=word, k=k), shifted


def make_vowel_removal(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORD_POOL)
    templ = rng.choice(['Remove every vowel (a, e, i, o, u) from "{w}".', 'Write "{w}" without its vowels.',
                        'Delete the letters a, e, i, o and u from the word "{w}".'])
    return templ.format(w=word), word.translate(str.maketrans("", "", VOWELS))


# words whose pig latin is unambiguous: a vowel exists, no "qu" onset, no "y" acting as a vowel in the onset
PIG_WORDS = [w for w in WORD_POOL if re.fullmatch(r"[^aeiouy]*[aeiou][a-z]*|y[^aeiouy]*[aeiou][a-z]*", w)
             and not re.match(r"[^aeiou]*qu", w)]


def make_pig_latin(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(PIG_WORDS)
    cut = next(i for i, ch in enumerate(word) if ch in VOWELS)
    target = word + "way" if cut == 0 else word[cut:] + word[:cut] + "ay"
    templ = rng.choice(['Translate "{w}" into pig latin.', 'What is the word "{w}" in pig latin?',
                        'Convert "{w}" to pig latin: move the leading consonants to the end and add ay, '
                        'or add way if it starts with a vowel.'])
    return templ.format(w=word), target


def _phrase(rng: random.Random, lo: int, hi: int) -> list[str]:
    k = rng.randint(lo, hi)
    n_adj = rng.randint(1, k - 1)
    return rng.sample(ADJECTIVES, n_adj) + rng.sample(WORDS, k - n_adj)


def make_acronym(rng: random.Random) -> tuple[str, str]:
    words = _phrase(rng, 3, 5)
    templ = rng.choice(['What is the acronym of "{p}"? Use capital letters.',
                        'Form an uppercase acronym from the initials of "{p}".',
                        'Abbreviate "{p}" to its capitalized first letters.'])
    return templ.format(p=" ".join(words)), "".join(w[0] for w in words).upper()


def make_title_case(rng: random.Random) -> tuple[str, str]:
    words = _phrase(rng, 3, 6)
    templ = rng.choice(['Capitalize every word of "{p}".', 'Rewrite "{p}" in title case.',
                        'Write "{p}" with each word starting with a capital letter.'])
    return templ.format(p=" ".join(words)), " ".join(w.capitalize() for w in words)


def make_spell_backwards(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORD_POOL)
    templ = rng.choice(['Spell "{w}" backwards.', 'Write the letters of "{w}" in reverse order.',
                        'Reverse the word "{w}" letter by letter.'])
    return templ.format(w=word), word[::-1]


def make_plural_forms(rng: random.Random) -> tuple[str, str]:
    singular, plural = rng.choice(PLURAL_TABLE)
    templ = rng.choice(['What is the plural of "{s}"?', 'Give the plural form of the noun "{s}".',
                        'There is one "{s}". What do you call two of them? Give the plural noun.'])
    return templ.format(s=singular), plural


def make_first_letters(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(4, 7))
    lead = rng.choice(["Take the first letter of each word and join them:",
                       "Write the initial letters of these words as one lowercase string:",
                       "Concatenate the first letters of:"])
    return f"{lead} {' '.join(words)}", "".join(w[0] for w in words)


# --------------------------------------------------------------------------------------------
# numbers and facts


def make_roman_numerals(rng: random.Random) -> tuple[str, str]:
    n = rest = rng.randint(1, 399)
    out = []
    for value, symbol in ROMAN:
        count, rest = divmod(rest, value)
        out.append(symbol * count)
    lead = rng.choice(["Write {} in Roman numerals.", "Convert {} to a Roman numeral.", "What is {} as a Roman numeral?"])
    return lead.format(n), "".join(out)


def _number_words(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest or not n:
        parts.append(ONES[rest] if rest < 20 else TENS[rest // 10] + (f"-{ONES[rest % 10]}" if rest % 10 else ""))
    return " ".join(parts)


def make_number_words(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(0, 999)
    lead = rng.choice(["Write the number {} in English words.", "Spell out {} in words.", "How is {} written in words?"])
    return lead.format(n), _number_words(n)


def make_binary_conversion(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(1, 255)
    lead = rng.choice(["Write {} in binary without leading zeros.", "Convert the decimal number {} to binary.",
                       "What is {} in binary notation?"])
    return lead.format(n), f"{n:b}"


def make_capital_choice(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(len(CAPITALS))
    country, capital = CAPITALS[i]
    others = [c for j, (_, c) in enumerate(CAPITALS) if j != i]
    opts, ans = lettered_options(rng, capital, rng.sample(others, 3))
    lead = rng.choice(["What is the capital of {}?", "Which city is the capital of {}?", "Name the capital city of {}."])
    return f"{lead.format(country)}\n{opts}", ans


# --------------------------------------------------------------------------------------------
# the table: (name, description, answer format, make)

DISTRACTORS: list[tuple[str, str, str, Callable[[random.Random], tuple[str, str]]]] = [
    ("caesar-shift", "Shift every letter of a word forward by one to five places, wrapping around.", "word",
     make_caesar_shift),
    ("vowel-removal", "Write a word with its vowels removed.", "word", make_vowel_removal),
    ("pig-latin", "Translate one word into pig latin.", "word", make_pig_latin),
    ("acronym", "Give the uppercase initials of a short phrase.", "ACRONYM", make_acronym),
    ("roman-numerals", "Write an integer from 1 to 399 in Roman numerals.", "roman", make_roman_numerals),
    ("number-words", "Write an integer from 0 to 999 in English words.", "number words", make_number_words),
    ("binary-conversion", "Write an integer from 1 to 255 in binary.", "binary", make_binary_conversion),
    ("title-case", "Capitalize every word of a lowercase phrase.", "title", make_title_case),
    ("spell-backwards", "Spell one word with its letters in reverse order.", "word", make_spell_backwards),
    ("plural-forms", "Give the plural of a singular noun, regular or irregular.", "word", make_plural_forms),
    ("capital-choice", "Choose the capital city of a named country.", "(A)-(D)", make_capital_choice),
    ("first-letters", "Join the first letters of a list of words into one lowercase string.", "word",
     make_first_letters),
]
