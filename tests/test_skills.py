"""Synthetic source skills: the table, determinism, uniqueness, split disjointness, answer formats,
and answers recomputed here from the input text (not from the generator's internals)."""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import re
import subprocess
import sys
from decimal import Decimal
from itertools import permutations, product
from pathlib import Path

import pytest

from scalectl.errors import TaskError
from scalectl.tasks import skills
from scalectl.tasks.skills import SKILLS, Skill, generate, get_skill, skill_names, split

ROOT = Path(__file__).resolve().parent.parent
N = 120  # examples per skill in the format sweep

FORMAT_RE = {
    "integer": r"-?\d+",
    "True/False": r"True|False",
    "Yes/No": r"Yes|No",
    "valid/invalid": r"valid|invalid",
    "sorted words": r"[a-z]+( [a-z]+)*",
    "words": r"[a-z]+( [a-z]+)*",
    "MM/DD/YYYY": r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/\d{4}",
    "brackets": r"[)\]}>]( [)\]}>])*",
    "coordinate": r"\(-?\d+, -?\d+\)",
    # distractors (tests/test_distractors.py recomputes their answers)
    "word": r"[a-z]+",
    "ACRONYM": r"[A-Z]+",
    "roman": r"[IVXLC]+",
    "number words": r"[a-z]+([ -][a-z]+)*",
    "binary": r"1[01]*",
    "title": r"[A-Z][a-z]*( [A-Z][a-z]*)*",
}


def format_re(fmt: str) -> str:
    m = re.fullmatch(r"\(A\)-\(([B-H])\)", fmt)
    if m:
        return rf"\([A-{m.group(1)}]\)"
    return FORMAT_RE[fmt]


def examples(name: str, n: int = N, seed: int = 0) -> list[dict]:
    return generate(name, n, seed)


def options(inp: str) -> dict[str, str]:
    """The lettered options at the end of an input: {"(A)": text, ...}."""
    head, sep, block = inp.rpartition("\nOptions:\n")
    assert sep, inp
    out = {}
    for line in block.split("\n"):
        m = re.fullmatch(r"(\([A-H]\)) (.+)", line)
        assert m, line
        out[m.group(1)] = m.group(2)
    return out


def chosen(ex: dict) -> str:
    opts = options(ex["input"])
    assert ex["target"] in opts, ex
    return opts[ex["target"]]


# ----------------------------------------------------------------------------- the table


def test_at_least_24_distinct_kebab_skills():
    names = skill_names()
    assert len(names) >= 24
    assert len(set(names)) == len(names) == len(SKILLS)
    assert names == list(SKILLS)
    for name in names:
        s = SKILLS[name]
        assert isinstance(s, Skill) and s.name == name
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        assert s.description.strip() and "\n" not in s.description, name
        format_re(s.answer_format)  # every format is known to the test
    descriptions = [s.description for s in SKILLS.values()]
    assert len(set(descriptions)) == len(descriptions)


@pytest.mark.parametrize("name", list(SKILLS))
def test_formats_lengths_and_uniqueness(name):
    s = SKILLS[name]
    exs = examples(name)
    assert len(exs) == N
    inputs = [e["input"] for e in exs]
    assert len(set(inputs)) == N
    pattern = format_re(s.answer_format)
    for e in exs:
        assert set(e) == {"input", "target"}
        assert isinstance(e["input"], str) and isinstance(e["target"], str)
        assert "\n" not in e["target"] and e["target"] == e["target"].strip(), e
        assert re.fullmatch(pattern, e["target"]), (name, e)
        assert len(e["input"].split()) < 100, e
        if s.answer_format.startswith("(A)-"):
            chosen(e)  # options are shown and the target is one of their letters
            letters = list(options(e["input"]))
            assert letters == [f"({chr(65 + i)})" for i in range(len(letters))]
            assert len(set(options(e["input"]).values())) == len(letters)


@pytest.mark.parametrize("name", [n for n, s in SKILLS.items() if s.answer_format.startswith("(A)-")])
def test_option_position_is_randomized(name):
    targets = {e["target"] for e in examples(name, 80, seed=3)}
    assert len(targets) >= 2, targets


@pytest.mark.parametrize("name", [n for n, s in SKILLS.items() if s.answer_format in ("Yes/No", "True/False", "valid/invalid")])
def test_binary_answers_are_balanced(name):
    targets = [e["target"] for e in examples(name, 200, seed=1)]
    counts = {t: targets.count(t) for t in set(targets)}
    assert len(counts) == 2 and min(counts.values()) >= 50, counts


# ----------------------------------------------------------------------------- determinism, uniqueness, split


def test_deterministic_and_seed_dependent():
    for name in ["multistep-arithmetic", "swap-tracking", "date-options", "ordering-constraints"]:
        a, b = generate(name, 30, seed=5), generate(name, 30, seed=5)
        assert a == b
        assert generate(name, 30, seed=6) != a
        assert generate(name, 10, seed=5) == a[:10]  # a smaller n is a prefix


def test_deterministic_across_processes_and_hash_seeds():
    code = (
        "import hashlib, json\n"
        "from scalectl.tasks.skills import SKILLS, generate\n"
        "data = {n: generate(n, 40, seed=2) for n in SKILLS}\n"
        "print(hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest())\n"
    )
    here = hashlib.sha256(json.dumps({n: generate(n, 40, seed=2) for n in SKILLS}, sort_keys=True).encode()).hexdigest()
    for hash_seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={"PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)})
        assert out.stdout.strip() == here


def test_exclude_is_respected():
    first = generate("word-sorting", 20, seed=0)
    excluded = {e["input"] for e in first[:10]}
    again = generate("word-sorting", 20, seed=0, exclude=excluded)
    assert not excluded & {e["input"] for e in again}
    assert len({e["input"] for e in again}) == 20
    assert again[:10] == first[10:20]  # the same stream, minus the excluded inputs


def test_split_is_disjoint_and_deterministic():
    for name in ["boolean-expressions", "clock-arithmetic", "letter-counting"]:
        train, held = split(name, 150, 40, seed=1)
        assert len(train) == 150 and len(held) == 40
        assert not {e["input"] for e in train} & {e["input"] for e in held}
        assert split(name, 150, 40, seed=1) == (train, held)
        assert split(name, 30, 40, seed=1)[1] == held  # held-out set does not depend on n_train
        assert split(name, 150, 40, seed=2) != (train, held)


def test_errors():
    with pytest.raises(TaskError, match="boolean-expressions"):
        get_skill("boolen-expressions")
    with pytest.raises(TaskError, match="Known skills: multistep-arithmetic"):
        get_skill("zzzz")
    try:
        get_skill("zzzz")
    except TaskError as e:
        assert "did you mean" not in str(e)
    for bad in (0, -3, True, 2.5):
        with pytest.raises(TaskError, match="positive integer"):
            generate("word-sorting", bad)
    with pytest.raises(TaskError, match="unknown skill"):
        generate("no-such-skill", 5)
    with pytest.raises(TaskError, match="unique inputs"):
        generate("clock-arithmetic", 10_000)  # the skill has only a few thousand distinct inputs
    with pytest.raises(TaskError):
        split("word-sorting", 0, 0)
    with pytest.raises(TaskError):
        split("word-sorting", -1, 5)


def test_no_benchmark_data_is_read():
    src = inspect.getsource(skills).lower()
    for needle in ("data/bbh", "bbh/", "open(", "read_text", "read_bytes", "pathlib", "import json", "load_dataset"):
        assert needle not in src, needle
    assert "no benchmark file is read" in (skills.__doc__ or "")


# ----------------------------------------------------------------------------- answers recomputed from the text


def test_multistep_arithmetic():
    for e in examples("multistep-arithmetic", 200):
        expr = e["input"].rsplit(": ", 1)[1]
        assert re.fullmatch(r"[-+*() 0-9]+", expr), expr
        assert eval(expr, {"__builtins__": {}}) == int(e["target"]), e  # noqa: S307 - digits and operators only


def test_boolean_expressions():
    for e in examples("boolean-expressions", 200):
        expr = re.split(r"\?|: ", e["input"])[-1].strip()
        assert re.fullmatch(r"(True|False|not|and|or|[() ])+", expr), expr
        assert str(eval(expr, {"__builtins__": {}})) == e["target"], e  # noqa: S307


def test_word_sorting_and_reversal():
    for e in examples("word-sorting"):
        words = e["input"].rsplit(": ", 1)[1].split()
        assert e["target"] == " ".join(sorted(words)) and len(set(words)) == len(words)
    for e in examples("word-reversal"):
        words = e["input"].rsplit(": ", 1)[1].split()
        assert e["target"].split() == words[::-1]


def test_dates():
    pat = re.compile(r"(\d\d/\d\d/\d{4}).*?(\d+) (days?|weeks?) (later|earlier)")
    for name in ("date-arithmetic", "date-options"):
        for e in examples(name, 150):
            m = pat.search(e["input"])
            assert m, e
            start = dt.datetime.strptime(m.group(1), "%m/%d/%Y")
            days = int(m.group(2)) * (7 if m.group(3).startswith("week") else 1)
            want = start + dt.timedelta(days=days if m.group(4) == "later" else -days)
            got = e["target"] if name == "date-arithmetic" else chosen(e)
            assert dt.datetime.strptime(got, "%m/%d/%Y") == want, e


def test_bracket_completion():
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    for e in examples("bracket-completion", 200):
        seq = e["input"].rsplit(": ", 1)[1].split()
        stack = []
        for tok in seq:
            if tok in pairs:
                stack.append(tok)
            else:
                assert stack and pairs[stack.pop()] == tok, e  # the shown prefix is well nested
        assert stack
        assert e["target"].split() == [pairs[o] for o in reversed(stack)]


def test_swap_tracking():
    for e in examples("swap-tracking", 150):
        text = e["input"].split("\nOptions:")[0]
        holding = dict(re.findall(r"(\w+) has ((?:the|a|an) [a-z ]+?)\.", text))
        assert len(holding) == 3, text
        for a, b in re.findall(r"(\w+) and (\w+) swap", text):
            holding[a], holding[b] = holding[b], holding[a]
        who = re.search(r"what does (\w+) have\?", text).group(1)
        assert chosen(e) == holding[who], e


def test_truth_teller_chains():
    for e in examples("truth-teller-chains", 150):
        first = re.match(r"(\w+) (tells the truth|lies)\.", e["input"])
        honest = {first.group(1): first.group(2) == "tells the truth"}
        for speaker, about, claim in re.findall(r"(\w+) says (\w+) (tells the truth|lies)\.", e["input"]):
            honest[speaker] = honest[about] == (claim == "tells the truth")
        last = re.search(r"Does (\w+) tell the truth\?", e["input"]).group(1)
        assert e["target"] == ("Yes" if honest[last] else "No"), e


def _syllogism_follows(premises, conclusion) -> bool:
    """Brute force over small universes: each term a nonempty subset of {0,1,2,3}; the conclusion must hold in all."""
    def holds(stmt, sets):
        kind, s, p = stmt
        a, b = sets[s], sets[p]
        return {"All": a <= b, "No": not a & b, "Some": bool(a & b), "Some-not": bool(a - b)}[kind]

    terms = sorted({t for _, s, p in [*premises, conclusion] for t in (s, p)})
    subsets = [frozenset(i for i in range(4) if m >> i & 1) for m in range(1, 16)]
    for combo in product(subsets, repeat=len(terms)):
        sets = dict(zip(terms, combo))
        if all(holds(p, sets) for p in premises) and not holds(conclusion, sets):
            return False
    return True


def _parse_categorical(sentence: str):
    for pat, kind in ((r"All (\w+) are (\w+)", "All"), (r"No (\w+) are (\w+)", "No"),
                      (r"Some (\w+) are not (\w+)", "Some-not"), (r"Some (\w+) are (\w+)", "Some")):
        m = re.fullmatch(pat + r"\.", sentence)
        if m:
            return kind, m.group(1), m.group(2)
    raise AssertionError(sentence)


def test_syllogism_checker_on_textbook_cases():
    assert _syllogism_follows([("All", "m", "p"), ("All", "s", "m")], ("All", "s", "p"))  # Barbara
    assert _syllogism_follows([("No", "m", "p"), ("All", "s", "m")], ("No", "s", "p"))  # Celarent
    assert _syllogism_follows([("All", "m", "p"), ("Some", "s", "m")], ("Some", "s", "p"))  # Darii
    assert not _syllogism_follows([("All", "p", "m"), ("All", "s", "m")], ("All", "s", "p"))  # undistributed middle
    assert not _syllogism_follows([("All", "m", "p"), ("No", "s", "m")], ("No", "s", "p"))  # illicit major
    assert not _syllogism_follows([("No", "m", "p"), ("No", "s", "m")], ("No", "s", "p"))  # two negatives


def test_syllogism_validity():
    for e in examples("syllogism-validity", 150):
        parts = re.findall(r"(?:Premise|Conclusion): (.+?\.)(?= Premise| Conclusion| Does)", e["input"])
        assert len(parts) == 3, e
        stmts = [_parse_categorical(p) for p in parts]
        assert e["target"] == ("valid" if _syllogism_follows(stmts[:2], stmts[2]) else "invalid"), e


ORD = {"first": 0, "second": 1, "third": 2, "fourth": 3}


def test_ordering_constraints():
    for e in examples("ordering-constraints", 150):
        text = e["input"].split("\nOptions:")[0]
        names = list(options(e["input"]).values())
        k = len(names)
        idx = lambda word, k=k: k - 1 if word == "last" else ORD[word]
        checks = []
        for m in re.findall(r"(\w+) finished before (\w+)\.|The book by (\w+) is left of the book by (\w+)\.", text):
            a, b = m[0] or m[2], m[1] or m[3]
            checks.append(lambda p, a=a, b=b: p.index(a) < p.index(b))
        for m in re.findall(r"(\w+) finished after (\w+)\.|The book by (\w+) is right of the book by (\w+)\.", text):
            a, b = m[0] or m[2], m[1] or m[3]
            checks.append(lambda p, a=a, b=b: p.index(a) > p.index(b))
        for m in re.findall(r"(\w+) finished right after (\w+)\.|The book by (\w+) is immediately right of the book by (\w+)\.",
                            text):
            a, b = m[0] or m[2], m[1] or m[3]
            checks.append(lambda p, a=a, b=b: p.index(a) == p.index(b) + 1)
        for m in re.findall(r"(\w+) finished (\w+)\.|The book by (\w+) is (\w+) from the left\.", text):
            a, w = m[0] or m[2], m[1] or m[3]
            if w in ORD or w == "last":
                checks.append(lambda p, a=a, i=idx(w): p[i] == a)
        solutions = [p for p in permutations(names) if all(c(p) for c in checks)]
        assert len(solutions) == 1, (e, solutions)
        q = re.search(r"(?:Who finished|Whose book is) (\w+)", text).group(1)
        assert chosen(e) == solutions[0][idx(q)], e


def test_grid_skills():
    steps = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
    for e in examples("grid-return", 150):
        x = y = 0
        for n, d in re.findall(r"Walk (\d+) steps? (\w+)\.", e["input"]):
            x, y = x + steps[d][0] * int(n), y + steps[d][1] * int(n)
        assert e["target"] == ("Yes" if (x, y) == (0, 0) else "No"), e
    moves = {"up": (0, 1), "down": (0, -1), "right": (1, 0), "left": (-1, 0)}
    for e in examples("grid-position", 150):
        x = y = 0
        for d, n in re.findall(r"\b(up|down|left|right) (\d+)", e["input"]):
            x, y = x + moves[d][0] * int(n), y + moves[d][1] * int(n)
        assert e["target"] == f"({x}, {y})", e


def test_numeric_skills():
    for e in examples("clock-arithmetic"):
        h, n = map(int, re.findall(r"(\d+) (?:o'clock|hours)", e["input"]))
        want = (h + (n if "later" in e["input"] else -n)) % 12 or 12
        assert int(e["target"]) == want, e
    for e in examples("list-extremes"):
        nums = [int(v) for v in e["input"].rsplit(": ", 1)[1].rstrip("?").split(", ")]
        if "difference" in e["input"]:
            want = max(nums) - min(nums)
        else:
            want = max(nums) if "largest" in e["input"] else min(nums)
        assert int(e["target"]) == want, e
    for e in examples("parity-check"):
        nums = [int(v) for v in re.findall(r"\d+", e["input"])]
        val = sum(nums) if "sum" in e["input"] else eval("*".join(map(str, nums)))  # noqa: S307
        assert e["target"] == ("Yes" if (val % 2 == 0) == ("even" in e["input"]) else "No"), e
    for e in examples("letter-counting"):
        letter, word = re.search(r'"(\w)".*"(\w+)"', e["input"]).groups()
        assert int(e["target"]) == word.count(letter), e
    for e in examples("number-comparison"):
        vals = [Decimal(v) for v in options(e["input"]).values()]
        want = max(vals) if "larger" in e["input"] else min(vals)
        assert Decimal(chosen(e)) == want, e
    factors = {("hours", "minutes"): 60, ("minutes", "seconds"): 60, ("days", "hours"): 24, ("weeks", "days"): 7,
               ("meters", "centimeters"): 100, ("kilometers", "meters"): 1000, ("kilograms", "grams"): 1000,
               ("liters", "milliliters"): 1000, ("feet", "inches"): 12, ("yards", "feet"): 3, ("years", "months"): 12,
               ("centimeters", "millimeters"): 10}
    for e in examples("unit-conversion"):
        want_unit, n, have_unit = re.fullmatch(r"How many (\w+) are there in (\d+) (\w+)\?", e["input"]).groups()
        if (have_unit, want_unit) in factors:
            assert int(e["target"]) == int(n) * factors[(have_unit, want_unit)], e
        else:
            assert int(e["target"]) * factors[(want_unit, have_unit)] == int(n), e
    for e in examples("sequence-completion"):
        seq = [int(v) for v in re.findall(r"-?\d+", e["input"])]
        assert len(seq) == 5
        # the hidden rule is one of a few families; the answer must continue at least one of them
        diffs = [b - a for a, b in zip(seq, seq[1:])]
        candidates = {seq[-1] + diffs[-1], seq[-1] + diffs[-1] + (diffs[-1] - diffs[-2]), seq[-1] + seq[-2],
                      seq[-1] + diffs[-2]}
        if seq[0] and all(b == seq[1] // seq[0] * a for a, b in zip(seq, seq[1:])):
            candidates.add(seq[-1] * (seq[1] // seq[0]))
        assert int(e["target"]) in candidates, e


def test_lookup_and_choice_skills():
    for e in examples("table-lookup"):
        rows = re.findall(r"^(\w+), (\d+), (\d+)$", e["input"], flags=re.M)
        age = {n: int(a) for n, a, _ in rows}
        height = {n: int(h) for n, _, h in rows}
        q = re.search(r"Who is (.+)\?", e["input"]).group(1)
        want = {"the oldest": max(age, key=age.get), "the youngest": min(age, key=age.get),
                "the tallest": max(height, key=height.get), "the shortest": min(height, key=height.get)}.get(q)
        if want is None:
            years = int(re.fullmatch(r"(\d+) years old", q).group(1))
            want = next(n for n, a in age.items() if a == years)
        assert chosen(e) == want, e
    for e in examples("color-lookup"):
        scene = dict((o, c) for c, o in re.findall(r"\ban? (\w+) (\w+)(?=,| and|\.)", e["input"].split("?")[0]))
        obj = re.search(r"What color is the (\w+)\?", e["input"]).group(1)
        assert chosen(e) == scene[obj], e
    opposite = {a: b for a, b in skills.ANTONYMS} | {b: a for a, b in skills.ANTONYMS}
    for e in examples("antonym-choice"):
        word = re.search(r'opposite of "(\w+)"', e["input"]).group(1)
        assert chosen(e) == opposite[word], e
    category_of = {s: c for c, items in skills.CATEGORIES.items() for s, _ in items}
    for e in examples("category-choice"):
        cat = re.search(r"Which of these is an? (.+)\?", e["input"]).group(1)
        assert [category_of[w] for w in options(e["input"]).values()].count(cat) == 1
        assert category_of[chosen(e)] == cat, e
    for e in examples("odd-one-out"):
        cats = {w: category_of[w] for w in options(e["input"]).values()}
        odd = [w for w, c in cats.items() if list(cats.values()).count(c) == 1]
        assert odd == [chosen(e)], e
    rank = {w: i for i, ws in enumerate(skills.ADJECTIVE_CLASSES) for w in ws}
    for e in examples("adjective-order"):
        for letter, phrase in options(e["input"]).items():
            adjs = phrase.split()[1:-1]
            in_order = [rank[a] for a in adjs] == sorted(rank[a] for a in adjs)
            assert in_order == (letter == e["target"]), e


def test_object_counting():
    number = {"a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5}
    category_of = {}
    for cat, items in skills.CATEGORIES.items():
        for s, p in items:
            category_of[s] = category_of[p] = skills.CATEGORY_PLURALS[cat]
    for e in examples("object-counting", 150):
        listing, question = e["input"].split(". How many ")
        target_cat = question.removesuffix(" is that?")
        total = 0
        for count, noun in re.findall(r"\b(a|an|two|three|four|five) ([a-z]+)", listing):
            if category_of.get(noun) == target_cat:
                total += number[count]
        assert int(e["target"]) == total, e


# ----------------------------------------------------------------------------- variants: templates and mixtures


@pytest.mark.parametrize("template", list(skills.TEMPLATES))
def test_a_template_rewraps_the_input_and_keeps_the_answer(template):
    base = get_skill("date-options")
    v = get_skill(f"date-options.{template}")
    assert (v.kind, v.parts, v.template, v.answer_format) == ("template", ("date-options",), template, base.answer_format)
    assert v.description != base.description and v.description.startswith(base.description)
    exs = generate(v.name, 60, seed=2)
    assert len({e["input"] for e in exs}) == 60
    for e in exs:
        # the wrapped input holds a base-skill input whose options still decide the target
        inner = [line for line in e["input"].split("\n") if line.startswith("(")]
        opts = dict(line.split(" ", 1) for line in inner)
        assert e["target"] in opts and "Options:" in e["input"]
    plain = {e["input"] for e in generate("date-options", 60, seed=2)}
    assert not plain & {e["input"] for e in exs}  # another phrasing, another stream
    wrapped = skills.TEMPLATES[template].wrap(base, "X")
    assert "X" in wrapped and wrapped != "X"


def test_a_mixture_draws_every_part_with_its_own_answers():
    v = get_skill("grid-return+grid-position")
    assert (v.kind, v.parts) == ("mixture", ("grid-return", "grid-position"))
    assert v.answer_format == "Yes/No | coordinate"
    targets = [e["target"] for e in generate(v.name, 200, seed=0)]
    yes_no = sum(t in ("Yes", "No") for t in targets)
    coords = sum(bool(re.fullmatch(FORMAT_RE["coordinate"], t)) for t in targets)
    assert yes_no + coords == 200 and 60 <= yes_no <= 140


def test_family_tags_place_an_adapter():
    assert get_skill("word-sorting").family_tags(0) == ["kind:skill", "skill:word-sorting", "template:plain", "seed:0"]
    assert get_skill("word-sorting.qa").family_tags(1) == ["kind:template", "skill:word-sorting", "template:qa",
                                                            "seed:1"]
    assert get_skill("caesar-shift").family_tags(0)[0] == "kind:distractor"
    assert get_skill("date-arithmetic+date-options").family_tags(0)[:3] == [
        "kind:mixture", "skill:date-arithmetic", "skill:date-options"]


def test_variant_errors_name_the_fix():
    with pytest.raises(TaskError, match="did you mean word-sorting"):
        get_skill("word-sortin.qa")
    with pytest.raises(TaskError, match="unknown template 'xx'.*instruct, qa, terse"):
        get_skill("word-sorting.xx")
    with pytest.raises(TaskError, match="'caesar-shift' is a distractor skill"):
        get_skill("caesar-shift.qa")
    with pytest.raises(TaskError, match="is a distractor skill"):
        get_skill("word-sorting+pig-latin")
    with pytest.raises(TaskError, match="repeats a skill"):
        get_skill("grid-return+grid-return")
    with pytest.raises(TaskError, match="unknown skill 'nope' in 'nope\\+grid-return'"):
        get_skill("nope+grid-return")
