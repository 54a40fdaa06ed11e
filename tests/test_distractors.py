"""Distractor skills: the table, determinism, uniqueness, answer formats, and answers recomputed here
from the input text (not from the generator's internals)."""

from __future__ import annotations

import inspect
import random
import re

import pytest

from scalectl.tasks import distractors
from scalectl.tasks.distractors import DISTRACTORS
from scalectl.tasks.skills import SKILLS

N = 250  # unique examples drawn per distractor
MAX_ATTEMPTS = 20_000
NAMES = [
    "caesar-shift", "vowel-removal", "pig-latin", "acronym", "roman-numerals", "number-words", "binary-conversion",
    "title-case", "spell-backwards", "plural-forms", "capital-choice", "first-letters",
]
FORMAT_RE = {
    "word": r"[a-z]+",
    "ACRONYM": r"[A-Z]+",
    "roman": r"[IVXLC]+",
    "number words": r"[a-z]+([ -][a-z]+)*",
    "binary": r"1[01]*",
    "title": r"[A-Z][a-z]*( [A-Z][a-z]*)*",
    "(A)-(D)": r"\([A-D]\)",
}
MAKE = {name: make for name, _, _, make in DISTRACTORS}
FORMAT = {name: fmt for name, _, fmt, _ in DISTRACTORS}


def draw(name: str, n: int = N, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` examples with unique inputs from a fresh ``Random(f"{name}:{seed}")``, as skills.generate draws them."""
    rng = random.Random(f"{name}:{seed}")
    seen: set[str] = set()
    out = []
    for _ in range(MAX_ATTEMPTS):
        inp, target = MAKE[name](rng)
        if inp not in seen:
            seen.add(inp)
            out.append((inp, target))
            if len(out) == n:
                return out
    raise AssertionError(f"{name}: only {len(out)} unique inputs in {MAX_ATTEMPTS} attempts")


def quoted(inp: str) -> str:
    return re.search(r'"([a-z ]+)"', inp).group(1)


def the_integer(inp: str) -> int:
    nums = re.findall(r"\d+", inp)
    assert len(nums) == 1, inp
    return int(nums[0])


def options(inp: str) -> dict[str, str]:
    head, sep, block = inp.rpartition("\nOptions:\n")
    assert sep, inp
    out = {}
    for line in block.split("\n"):
        m = re.fullmatch(r"(\([A-H]\)) (.+)", line)
        assert m, line
        out[m.group(1)] = m.group(2)
    return out


# ----------------------------------------------------------------------------- the table


def test_table():
    assert [d[0] for d in DISTRACTORS] == NAMES
    descriptions = [d[1] for d in DISTRACTORS]
    assert len(set(descriptions)) == len(descriptions)
    for name, description, fmt, make in DISTRACTORS:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        assert description.strip() == description and description and "\n" not in description, name
        assert fmt in FORMAT_RE, fmt
        assert callable(make)
        assert SKILLS[name].kind == "distractor" and SKILLS[name].make is make  # in the table, as a distractor


def test_no_benchmark_data_is_read():
    src = inspect.getsource(distractors).lower()
    for needle in ("data/bbh", "bbh/", "open(", "read_text", "read_bytes", "pathlib", "import json", "load_dataset"):
        assert needle not in src, needle
    doc = distractors.__doc__ or ""
    assert "no benchmark file is read" in doc and "reject" in doc


@pytest.mark.parametrize("name", NAMES)
def test_formats_lengths_and_uniqueness(name):
    exs = draw(name)
    assert len({inp for inp, _ in exs}) == N
    pattern = FORMAT_RE[FORMAT[name]]
    for inp, target in exs:
        assert isinstance(inp, str) and isinstance(target, str)
        assert "\n" not in target and target == target.strip() and target, (name, inp, target)
        assert re.fullmatch(pattern, target), (name, inp, target)
        assert len(inp.split()) < 60, inp


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_seed_dependent(name):
    assert draw(name, 40, seed=5) == draw(name, 40, seed=5)
    assert draw(name, 40, seed=6) != draw(name, 40, seed=5)


@pytest.mark.parametrize("name", NAMES)
def test_lead_phrasing_varies(name):
    # the first three words of the input differ across examples (2-3 wordings per distractor)
    assert len({" ".join(inp.split()[:3]) for inp, _ in draw(name, 60)}) >= 2


# ----------------------------------------------------------------------------- answers recomputed from the text


def test_caesar_shift():
    for inp, target in draw("caesar-shift"):
        word, k = quoted(inp), the_integer(inp)
        assert 1 <= k <= 5
        assert target == "".join(chr((ord(c) - ord("a") + k) % 26 + ord("a")) for c in word), inp


def test_vowel_removal_and_spell_backwards():
    for inp, target in draw("vowel-removal"):
        assert target == re.sub(r"[aeiou]", "", quoted(inp)), inp
    for inp, target in draw("spell-backwards"):
        word = quoted(inp)
        assert len(target) == len(word) and all(target[i] == word[-1 - i] for i in range(len(word))), inp


def test_pig_latin():
    for inp, target in draw("pig-latin"):
        word = quoted(inp)
        onset, rest = re.fullmatch(r"([^aeiou]*)([aeiou][a-z]*)", word).groups()
        assert target == (word + "way" if not onset else rest + onset + "ay"), inp
        assert not word.startswith("qu") and "y" not in onset[1:], word  # unambiguous words only


def test_acronym_title_case_and_first_letters():
    for inp, target in draw("acronym"):
        words = quoted(inp).split()
        assert 3 <= len(words) <= 5
        assert target == "".join(w[:1] for w in words).upper(), inp
    for inp, target in draw("title-case"):
        words = quoted(inp).split()
        assert 3 <= len(words) <= 6 and all(w.islower() for w in words)
        assert target.split() == [w[:1].upper() + w[1:] for w in words], inp
    for inp, target in draw("first-letters"):
        words = inp.rsplit(": ", 1)[1].split()
        assert 4 <= len(words) <= 7
        assert target == "".join(w[:1] for w in words), inp


def _parse_roman(s: str) -> int:
    vals = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = 0
    for a, b in zip(s, s[1:] + " "):
        v = vals[a]
        total += -v if b != " " and vals[b] > v else v
    return total


def test_roman_numerals():
    assert [_parse_roman(s) for s in ("IV", "IX", "XIV", "XL", "XCIX", "CCCXCIX")] == [4, 9, 14, 40, 99, 399]
    seen = set()
    for inp, target in draw("roman-numerals"):
        n = the_integer(inp)
        assert 1 <= n <= 399
        assert re.fullmatch(r"C{0,3}(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})", target), target  # canonical subtractive form
        assert _parse_roman(target) == n, inp
        seen.add(n)
    assert len(seen) > 150


NUMBER_VALUE = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
NUMBER_VALUE |= {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}


def _parse_number_words(s: str) -> int:
    total = 0
    for tok in re.split(r"[ -]", s):
        total = total * 100 if tok == "hundred" else total + NUMBER_VALUE[tok]
    return total


def test_number_words():
    assert _parse_number_words("three hundred forty-two") == 342
    for inp, target in draw("number-words", 400):
        n = the_integer(inp)
        assert 0 <= n <= 999
        assert _parse_number_words(target) == n, inp
        assert ("-" in target) == (n % 100 > 20 and n % 10 != 0), target  # hyphen only in compound tens
        assert ("hundred" in target) == (n >= 100) and ("zero" in target) == (n == 0), target
        assert " and " not in target and "  " not in target


def test_binary_conversion():
    for inp, target in draw("binary-conversion"):
        n = the_integer(inp)
        assert 1 <= n <= 255
        total = 0
        for bit in target:
            total = 2 * total + (bit == "1")
        assert total == n, inp


# the test's own list: which irregular or ambiguous plurals the generator may use
PLURAL_EXCEPTIONS = {
    "man": "men", "woman": "women", "child": "children", "tooth": "teeth", "foot": "feet", "goose": "geese",
    "person": "people", "ox": "oxen", "louse": "lice", "mouse": "mice", "cactus": "cacti", "fungus": "fungi",
    "nucleus": "nuclei", "crisis": "crises", "thesis": "theses", "phenomenon": "phenomena", "criterion": "criteria",
    "deer": "deer", "fish": "fish", "moose": "moose", "sheep": "sheep", "series": "series", "quiz": "quizzes",
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "loaf": "loaves", "shelf": "shelves", "half": "halves",
    "wife": "wives", "life": "lives", "calf": "calves", "elf": "elves",
    "hero": "heroes", "tomato": "tomatoes", "echo": "echoes", "potato": "potatoes", "mango": "mangoes",
}


def _plural(noun: str) -> str:
    if noun in PLURAL_EXCEPTIONS:
        return PLURAL_EXCEPTIONS[noun]
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def test_plural_forms():
    seen = set()
    for inp, target in draw("plural-forms"):
        noun = quoted(inp)
        assert target == _plural(noun), inp
        seen.add(noun)
    assert len(seen) >= 60 and len(seen & set(PLURAL_EXCEPTIONS)) >= 20


CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Ireland": "Dublin", "the United Kingdom": "London", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Iceland": "Reykjavik", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Greece": "Athens", "Romania": "Bucharest", "Ukraine": "Kyiv", "Russia": "Moscow",
    "Turkey": "Ankara", "Egypt": "Cairo", "Morocco": "Rabat", "Kenya": "Nairobi", "Nigeria": "Abuja",
    "Ethiopia": "Addis Ababa", "Ghana": "Accra", "Japan": "Tokyo", "China": "Beijing", "South Korea": "Seoul",
    "India": "New Delhi", "Pakistan": "Islamabad", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "the Philippines": "Manila", "Iran": "Tehran", "Saudi Arabia": "Riyadh", "Canada": "Ottawa", "Cuba": "Havana",
    "Argentina": "Buenos Aires", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota", "Australia": "Canberra",
    "New Zealand": "Wellington",
}


def test_capital_choice():
    countries = set()
    for inp, target in draw("capital-choice"):
        country = re.search(r"capital (?:city )?of (.+?)[?.]\n", inp).group(1)
        opts = options(inp)
        assert list(opts) == ["(A)", "(B)", "(C)", "(D)"] and len(set(opts.values())) == 4, inp
        assert [c for c in opts.values() if c == CAPITALS[country]] == [opts[target]], inp
        assert set(opts.values()) <= set(CAPITALS.values()), inp
        countries.add(country)
    assert len(countries) >= 35


def test_capital_option_letter_is_randomized():
    targets = [target for _, target in draw("capital-choice", 200, seed=3)]
    counts = {t: targets.count(t) for t in set(targets)}
    assert set(counts) == {"(A)", "(B)", "(C)", "(D)"} and min(counts.values()) >= 25, counts
