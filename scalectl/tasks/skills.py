"""Seeded generators for synthetic *source skills*: the training tasks of the LoRA adapter pool.

Every skill of the table (``kind`` ``skill``) is related in spirit to a BIG-Bench Hard task family (arithmetic, boolean logic,
dates, tracking, ordering, brackets, lettered multiple choice, ...) but none of it is BIG-Bench
Hard: no benchmark file is read, imported or copied, and every template, word list and name
below was written for this module. Only the *answer formats* mirror the benchmark, so that an
adapter trained here answers in the shape the evaluation expects: ``(A)``-style letters,
``True``/``False``, ``Yes``/``No``, ``valid``/``invalid``, an integer, a sorted word list,
``MM/DD/YYYY``, or a closing-bracket sequence. When options are shown they end the input as::

    Options:
    (A) ...
    (B) ...

Answers are computed from the generated structure (integer arithmetic, an expression tree,
``datetime``, a simulation, a brute-force search over orderings or Venn-region models), never
looked up. Inputs are short (well under 90 words) because adapters are trained with 128-token
sequences on a CPU. Everything is stdlib-only and deterministic: ``generate(name, n, seed)``
seeds ``random.Random(f"{name}:{seed}")`` and iterates only over lists and dicts.

The table also holds the distractors of :mod:`.distractors` (skills no BBH task needs), and
:func:`get_skill` builds variants of table skills: ``SKILL.TEMPLATE`` (the same content under
another prompt template, :data:`TEMPLATES`) and ``SKILL+SKILL`` (a mixture drawn half and half).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import itertools
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from ..errors import TaskError
from .distractors import DISTRACTORS
from .vocab import (
    CATEGORIES,
    CATEGORY_PLURALS,
    COLORS,
    LONG_WORDS,
    NAMES,
    NUMBER_WORDS,
    WORDS,
    article,
    join_and,
    lettered_options,
    yes_no,
)

__all__ = ["Skill", "SKILLS", "TEMPLATES", "skill_names", "get_skill", "generate", "split"]


@dataclass(frozen=True)
class Skill:
    """One synthetic skill: ``make(rng)`` returns one ``(input, target)`` pair.

    ``kind`` is its family in a pool: ``skill`` (a BBH-related skill), ``distractor`` (one no BBH task
    needs), ``template`` (a skill under another prompt template, :data:`TEMPLATES`) or ``mixture``
    (two or more skills drawn half and half); ``parts`` names the table skills it is made of."""

    name: str
    description: str
    answer_format: str
    make: Callable[[random.Random], tuple[str, str]]
    kind: str = "skill"
    parts: tuple[str, ...] = ()
    template: str = "plain"

    def family_tags(self, seed: int) -> list[str]:
        """Tags that place an adapter trained on this skill in its family: ``kind:``, ``skill:`` (each
        part), ``template:`` and ``seed:``; the audit groups a pool by them."""
        return [f"kind:{self.kind}", *(f"skill:{p}" for p in self.parts or (self.name,)),
                f"template:{self.template}", f"seed:{seed}"]


# --------------------------------------------------------------------------------------------
# arithmetic and numbers


def _arith_term(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return str(rng.randint(-9, 9))
    return f"({_arith_term(rng, depth - 1)} {rng.choice('+-*')} {_arith_term(rng, depth - 1)})"


def _eval_arith(expr: str) -> int:
    """Evaluate +, -, * and parentheses over integers (unary minus only on literals)."""
    toks = expr.replace("(", " ( ").replace(")", " ) ").split()
    pos = 0

    def atom() -> int:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "(":
            val = expr_()
            pos += 1  # ")"
            return val
        return int(tok)

    def term() -> int:
        nonlocal pos
        val = atom()
        while pos < len(toks) and toks[pos] == "*":
            pos += 1
            val *= atom()
        return val

    def expr_() -> int:
        nonlocal pos
        val = term()
        while pos < len(toks) and toks[pos] in ("+", "-"):
            op = toks[pos]
            pos += 1
            val = val + term() if op == "+" else val - term()
        return val

    return expr_()


def make_multistep_arithmetic(rng: random.Random) -> tuple[str, str]:
    while True:
        depth = rng.choice([1, 2, 2])
        expr = f"{_arith_term(rng, depth)} {rng.choice('+-*')} {_arith_term(rng, depth)}"
        if expr.count("(") >= 1 and abs(_eval_arith(expr)) <= 999:
            break
    lead = rng.choice(["Compute the value of this expression", "Evaluate", "What is the result of", "Calculate"])
    return f"{lead}: {expr}", str(_eval_arith(expr))


def make_number_comparison(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        a = rng.randint(-200, 999)
        b = a + rng.choice([-1, 1]) * rng.randint(1, 120)
        x, y = str(a), str(b)
    else:  # decimals, including the 3.9 vs 3.11 trap
        whole = rng.randint(0, 20)
        x = f"{whole}.{rng.randint(1, 9)}"
        y = f"{whole + rng.choice([0, 0, 1])}.{rng.randint(10, 99)}"
        if Decimal(x) == Decimal(y):
            y = f"{whole}.{rng.randint(10, 99)}1"
    larger = rng.random() < 0.5
    want = max(x, y, key=Decimal) if larger else min(x, y, key=Decimal)
    other = y if want == x else x
    opts, ans = lettered_options(rng, want, [other])
    return f"Which number is {'larger' if larger else 'smaller'}?\n{opts}", ans


def make_sequence_completion(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["arith", "geom", "square", "alt", "fib", "growing"])
    if kind == "arith":
        a, d = rng.randint(-20, 30), rng.choice([i for i in range(-9, 10) if i])
        seq = [a + d * i for i in range(6)]
    elif kind == "geom":
        a, r = rng.randint(1, 6), rng.choice([2, 3, -2])
        seq = [a * r**i for i in range(6)]
    elif kind == "square":
        k = rng.randint(0, 8)
        c = rng.randint(-5, 5)
        seq = [(k + i) ** 2 + c for i in range(6)]
    elif kind == "alt":
        a, up, down = rng.randint(0, 20), rng.randint(2, 9), rng.randint(1, 8)
        seq = [a]
        for i in range(5):
            seq.append(seq[-1] + (up if i % 2 == 0 else -down))
    elif kind == "fib":
        seq = [rng.randint(1, 6), rng.randint(1, 6)]
        while len(seq) < 6:
            seq.append(seq[-1] + seq[-2])
    else:
        a, d = rng.randint(0, 15), rng.randint(1, 4)
        seq = [a]
        for i in range(5):
            seq.append(seq[-1] + d + i)
    shown = ", ".join(str(v) for v in seq[:5])
    templ = rng.choice(["What number comes next in the sequence {}?", "Continue the pattern with one number: {}",
                        "Give the next term of {}"])
    return templ.format(shown), str(seq[5])


def make_parity_check(rng: random.Random) -> tuple[str, str]:
    nums = [rng.randint(1, 99) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.5:
        what, val = "sum", sum(nums)
    else:
        nums = [rng.randint(1, 19) for _ in range(rng.randint(2, 3))]
        what, val = "product", 1
        for v in nums:
            val *= v
    parity = rng.choice(["even", "odd"])
    truth = (val % 2 == 0) == (parity == "even")
    return f"Is the {what} of {join_and([str(v) for v in nums])} an {parity} number?", yes_no(truth)


UNITS = [  # (large unit plural, small unit plural, factor)
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("meters", "centimeters", 100), ("kilometers", "meters", 1000), ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000), ("feet", "inches", 12), ("yards", "feet", 3), ("years", "months", 12),
    ("centimeters", "millimeters", 10),
]


def make_unit_conversion(rng: random.Random) -> tuple[str, str]:
    big, small, factor = rng.choice(UNITS)
    n = rng.randint(2, 200)
    if rng.random() < 0.5:
        return f"How many {small} are there in {n} {big}?", str(n * factor)
    return f"How many {big} are there in {n * factor} {small}?", str(n)


def make_list_extremes(rng: random.Random) -> tuple[str, str]:
    nums = rng.sample(range(-50, 100), rng.randint(4, 7))
    shown = ", ".join(str(v) for v in nums)
    kind = rng.choice(["largest", "smallest", "range"])
    if kind == "range":
        return f"What is the difference between the largest and the smallest number in this list: {shown}?", str(
            max(nums) - min(nums)
        )
    return f"What is the {kind} number in this list: {shown}?", str(max(nums) if kind == "largest" else min(nums))


def make_clock_arithmetic(rng: random.Random) -> tuple[str, str]:
    h, n = rng.randint(1, 12), rng.randint(1, 100)
    lead = rng.choice(["A 12-hour clock shows {} o'clock.", "It is {} o'clock on a 12-hour clock."]).format(h)
    if rng.random() < 0.5:
        return f"{lead} What hour will it show {n} hours later?", str((h - 1 + n) % 12 + 1)
    return f"{lead} What hour did it show {n} hours earlier?", str((h - 1 - n) % 12 + 1)


# --------------------------------------------------------------------------------------------
# logic


def _bool_tree(rng: random.Random, depth: int):
    r = rng.random()
    if depth == 0 or r < 0.2:
        return ("lit", rng.random() < 0.5)
    if r < 0.4:
        return ("not", _bool_tree(rng, depth - 1))
    return (rng.choice(["and", "or"]), _bool_tree(rng, depth - 1), _bool_tree(rng, depth - 1))


def _bool_render(node) -> str:
    if node[0] == "lit":
        return str(node[1])
    if node[0] == "not":
        inner = _bool_render(node[1])
        return f"not ({inner})" if node[1][0] in ("and", "or") else f"not {inner}"
    parts = [f"({_bool_render(c)})" if c[0] in ("and", "or") else _bool_render(c) for c in node[1:]]
    return f"{parts[0]} {node[0]} {parts[1]}"


def _bool_eval(node) -> bool:
    if node[0] == "lit":
        return node[1]
    if node[0] == "not":
        return not _bool_eval(node[1])
    a, b = _bool_eval(node[1]), _bool_eval(node[2])
    return (a and b) if node[0] == "and" else (a or b)


def make_boolean_expressions(rng: random.Random) -> tuple[str, str]:
    while True:
        tree = (rng.choice(["and", "or"]), _bool_tree(rng, 2), _bool_tree(rng, 2))
        if rng.random() < 0.3:
            tree = ("not", tree)
        text = _bool_render(tree)
        if 3 <= len(text.split()) <= 16:
            break
    lead = rng.choice(["Is the following expression True or False?", "Evaluate the boolean expression:",
                       "Give the truth value of:"])
    return f"{lead} {text}", str(_bool_eval(tree))


def make_truth_teller_chains(rng: random.Random) -> tuple[str, str]:
    people = rng.sample(NAMES, rng.randint(3, 5))
    honest = rng.random() < 0.5
    sents = [f"{people[0]} {'tells the truth' if honest else 'lies'}."]
    for prev, cur in zip(people, people[1:]):
        claim_honest = rng.random() < 0.5
        sents.append(f"{cur} says {prev} {'tells the truth' if claim_honest else 'lies'}.")
        honest = claim_honest == honest  # the claim is true iff it matches prev's status
    return " ".join(sents) + f" Does {people[-1]} tell the truth?", yes_no(honest)


SYLLOGISM_TERMS = ["wugs", "daxes", "blickets", "feps", "zorbs", "glims", "tovs", "plonks", "snarps", "quibs"]
_STATEMENTS = {  # kind -> sentence template; _holds gives its truth in a model
    "all": "All {s} are {p}.",
    "no": "No {s} are {p}.",
    "some": "Some {s} are {p}.",
    "some-not": "Some {s} are not {p}.",
}


def _holds(kind: str, regions: tuple[int, ...], s: int, p: int) -> bool:
    """Truth of a categorical statement in a model given as the nonempty Venn regions over 3 terms."""
    if kind == "all":
        return not any(r & (1 << s) and not r & (1 << p) for r in regions)
    if kind == "no":
        return not any(r & (1 << s) and r & (1 << p) for r in regions)
    if kind == "some":
        return any(r & (1 << s) and r & (1 << p) for r in regions)
    return any(r & (1 << s) and not r & (1 << p) for r in regions)


# Models: every set of nonempty regions in which each of the three terms is nonempty (the usual
# reading of such puzzles, so "All A are B. All B are C." does give "Some A are C.").
_VENN_MODELS = [
    regions
    for regions in (tuple(r for r in range(8) if mask >> r & 1) for mask in range(256))
    if all(any(r >> t & 1 for r in regions) for t in range(3))
]


@functools.lru_cache(maxsize=None)
def _syllogism_valid(statements: tuple[tuple[str, int, int], ...]) -> bool:
    *premises, (ck, cs, cp) = statements
    return all(
        _holds(ck, m, cs, cp) for m in _VENN_MODELS if all(_holds(k, m, s, p) for k, s, p in premises)
    )


def make_syllogism_validity(rng: random.Random) -> tuple[str, str]:
    want_valid = rng.random() < 0.5
    kinds = list(_STATEMENTS)
    while True:
        names = rng.sample(SYLLOGISM_TERMS, 3)  # index 0 = subject S, 1 = middle M, 2 = predicate P
        p1 = (rng.choice(kinds), *rng.choice([(1, 2), (2, 1)]))  # M-P premise
        p2 = (rng.choice(kinds), *rng.choice([(0, 1), (1, 0)]))  # S-M premise
        concl = (rng.choice(kinds), 0, 2)
        stmts = [p1, p2] if rng.random() < 0.5 else [p2, p1]
        stmts.append(concl)
        if _syllogism_valid(tuple(stmts)) == want_valid:
            break
    text = [_STATEMENTS[k].format(s=names[s], p=names[p]) for k, s, p in stmts]
    return (
        f"Premise: {text[0]} Premise: {text[1]} Conclusion: {text[2]} "
        "Does the conclusion follow from the premises? Answer valid or invalid.",
        "valid" if want_valid else "invalid",
    )


ORDER_SCENES = [  # sentence templates of one scene: a race, or books on a shelf
    dict(intro="{n} runners finished a race: {names}.", before="{a} finished before {b}.",
         after="{a} finished after {b}.", next="{a} finished right after {b}.",
         pos="{a} finished {ord}.", q="Who finished {ord}?"),
    dict(intro="{n} books stand on a shelf, left to right. They are by {names}.",
         before="The book by {a} is left of the book by {b}.", after="The book by {a} is right of the book by {b}.",
         next="The book by {a} is immediately right of the book by {b}.",
         pos="The book by {a} is {ord} from the left.", q="Whose book is {ord} from the left?"),
]
ORDINALS = ["first", "second", "third", "fourth"]


def make_ordering_constraints(rng: random.Random) -> tuple[str, str]:
    while True:  # keep inputs short: redraw the rare puzzle that needs many clues
        inp, target = _ordering_attempt(rng)
        if len(inp.split()) <= 70:
            return inp, target


def _ordering_attempt(rng: random.Random) -> tuple[str, str]:
    scene = rng.choice(ORDER_SCENES)
    k = rng.choice([3, 4])
    people = rng.sample(NAMES, k)
    order = people[:]
    rng.shuffle(order)
    perms = list(itertools.permutations(people))

    def candidate():
        kind = rng.choice(["before", "after", "next", "pos", "pos"])
        if kind == "pos":
            i = rng.randrange(k)
            word = "last" if i == k - 1 and rng.random() < 0.5 else ORDINALS[i]
            return scene["pos"].format(a=order[i], ord=word), lambda p, i=i, a=order[i]: p[i] == a
        i, j = sorted(rng.sample(range(k), 2))
        if kind == "next":
            if j != i + 1:
                return None
            return scene["next"].format(a=order[j], b=order[i]), lambda p, a=order[j], b=order[i]: p.index(a) == p.index(b) + 1
        if kind == "before":
            return scene["before"].format(a=order[i], b=order[j]), lambda p, a=order[i], b=order[j]: p.index(a) < p.index(b)
        return scene["after"].format(a=order[j], b=order[i]), lambda p, a=order[j], b=order[i]: p.index(a) > p.index(b)

    facts: list[str] = []
    alive = perms
    while len(alive) > 1:
        c = candidate()
        if c is None or c[0] in facts:
            continue
        nxt = [p for p in alive if c[1](p)]
        if len(nxt) == len(alive):
            continue  # adds nothing
        facts.append(c[0])
        alive = nxt
    stated = [i for i, a in enumerate(order) if scene["pos"].format(a=a, ord=ORDINALS[i]) in facts
              or scene["pos"].format(a=a, ord="last") in facts]
    q_i = rng.choice([i for i in range(k) if i not in stated] or list(range(k)))
    q_word = "last" if q_i == k - 1 and rng.random() < 0.5 else ORDINALS[q_i]
    shown = people[:]
    rng.shuffle(shown)
    opts, ans = lettered_options(rng, order[q_i], [p for p in people if p != order[q_i]])
    intro = scene["intro"].format(n=NUMBER_WORDS[k].capitalize(), names=join_and(shown))
    return f"{intro} {' '.join(facts)} {scene['q'].format(ord=q_word)}\n{opts}", ans


# --------------------------------------------------------------------------------------------
# words and language


def make_word_sorting(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(4, 9))
    lead = rng.choice(["Sort these words alphabetically:", "Put the following words in alphabetical order:",
                       "Arrange in dictionary order:"])
    return f"{lead} {' '.join(words)}", " ".join(sorted(words))


def make_word_reversal(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(3, 7))
    return f"Write these words in reverse order: {' '.join(words)}", " ".join(reversed(words))



def make_letter_counting(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS + LONG_WORDS)
    repeated = [ch for ch in word if word.count(ch) > 1]
    r = rng.random()
    if r < 0.45 and repeated:
        letter = rng.choice(repeated)
    elif r < 0.85:
        letter = rng.choice(word)
    else:
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    templ = rng.choice(['How many times does the letter "{l}" appear in the word "{w}"?',
                        'Count the letter "{l}" in "{w}". How many are there?'])
    return templ.format(l=letter, w=word), str(word.count(letter))


def make_object_counting(rng: random.Random) -> tuple[str, str]:
    cats = list(CATEGORIES)
    target_cat = rng.choice(cats)

    def pick(cat: str, used: list[str], counts: list[int]) -> tuple[str, str, int]:
        sing, plur = rng.choice([x for x in CATEGORIES[cat] if x[0] not in used])
        used.append(sing)
        cnt = rng.choice(counts)
        return cat, article(sing) if cnt == 1 else f"{NUMBER_WORDS[cnt]} {plur}", cnt

    used: list[str] = []
    chosen = [pick(target_cat if rng.random() < 0.55 else rng.choice(cats), used, [1, 1, 2, 3, 4, 5])
              for _ in range(rng.randint(3, 6))]
    if not any(c == target_cat for c, _, _ in chosen):
        chosen.insert(rng.randint(0, len(chosen)), pick(target_cat, used, [1, 2, 3]))
    total = sum(c for cat, _, c in chosen if cat == target_cat)
    owner = rng.choice(["I have", "We own", "My list has", "The storeroom holds"])
    return (
        f"{owner} {join_and([p for _, p, _ in chosen])}. How many {CATEGORY_PLURALS[target_cat]} is that?",
        str(total),
    )


def make_category_choice(rng: random.Random) -> tuple[str, str]:
    cats = list(CATEGORIES)
    cat = rng.choice(cats)
    correct = rng.choice(CATEGORIES[cat])[0]
    others = rng.sample([c for c in cats if c != cat], 3)
    distractors = [rng.choice(CATEGORIES[c])[0] for c in others]
    opts, ans = lettered_options(rng, correct, distractors)
    return f"Which of these is {article(cat)}?\n{opts}", ans


def make_odd_one_out(rng: random.Random) -> tuple[str, str]:
    cats = list(CATEGORIES)
    main, odd = rng.sample(cats, 2)
    group = [s for s, _ in rng.sample(CATEGORIES[main], 3)]
    outlier = rng.choice(CATEGORIES[odd])[0]
    opts, ans = lettered_options(rng, outlier, group)
    return f"Three of these words belong together. Which one does not belong?\n{opts}", ans


ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("open", "closed"), ("early", "late"),
    ("full", "empty"), ("hard", "soft"), ("wet", "dry"), ("loud", "quiet"), ("rich", "poor"), ("young", "old"),
    ("strong", "weak"), ("thick", "thin"), ("high", "low"), ("clean", "dirty"), ("push", "pull"), ("win", "lose"),
    ("buy", "sell"), ("begin", "end"), ("above", "below"), ("inside", "outside"), ("light", "dark"),
    ("brave", "cowardly"), ("wide", "narrow"), ("sharp", "dull"), ("give", "take"), ("arrive", "depart"),
    ("tall", "short"), ("friend", "enemy"),
]


def make_antonym_choice(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(len(ANTONYMS))
    word, opposite = ANTONYMS[i] if rng.random() < 0.5 else ANTONYMS[i][::-1]
    pool = [w for j, pair in enumerate(ANTONYMS) if j != i for w in pair]
    opts, ans = lettered_options(rng, opposite, rng.sample(pool, 3))
    return f'Which word means the opposite of "{word}"?\n{opts}', ans


ADJECTIVE_CLASSES = [  # conventional English order: opinion, size, age, shape, color, origin, material
    ["lovely", "ugly", "charming", "strange", "nice"],
    ["big", "small", "tiny", "huge", "little"],
    ["old", "new", "ancient", "modern"],
    ["round", "square", "flat", "oval"],
    ["red", "blue", "green", "yellow", "gray"],
    ["Italian", "Japanese", "Mexican", "Swedish", "Egyptian"],
    ["wooden", "plastic", "metal", "glass", "leather"],
]
ADJ_NOUNS = ["box", "chair", "lamp", "bowl", "clock", "bag", "mirror", "table", "vase", "bench"]


def make_adjective_order(rng: random.Random) -> tuple[str, str]:
    classes = sorted(rng.sample(range(len(ADJECTIVE_CLASSES)), rng.randint(2, 4)))
    adjs = [rng.choice(ADJECTIVE_CLASSES[c]) for c in classes]
    wrong = adjs[:]
    while wrong == adjs:
        rng.shuffle(wrong)
    noun = rng.choice(ADJ_NOUNS)

    def phrase(ws: list[str]) -> str:
        article = "an" if ws[0][0].lower() in "aeiou" else "a"
        return f"{article} {' '.join(ws)} {noun}"

    opts, ans = lettered_options(rng, phrase(adjs), [phrase(wrong)])
    return f"Which phrase puts the adjectives in the natural English order?\n{opts}", ans


TOOL_USES = [
    ("hammer", "drive a nail"), ("pair of scissors", "cut a sheet of paper"), ("broom", "sweep the floor"),
    ("pen", "sign a letter"), ("kettle", "boil water"), ("umbrella", "stay dry in the rain"),
    ("ladder", "climb onto the roof"), ("key", "unlock the front door"), ("toothbrush", "brush their teeth"),
    ("spoon", "eat soup"), ("comb", "untangle their hair"), ("shovel", "dig a hole for a tree"),
    ("sponge", "soak up a spill"), ("thermometer", "check for a fever"), ("stapler", "staple some pages"),
    ("flashlight", "see in a dark cellar"), ("oven mitt", "hold a hot pan"), ("needle and thread", "sew on a button"),
]
ANIMAL_SOUNDS = [
    ("dog", "bark"), ("cat", "meow"), ("cow", "moo"), ("duck", "quack"), ("lion", "roar"), ("sheep", "bleat"),
    ("horse", "neigh"), ("owl", "hoot"), ("frog", "croak"), ("bee", "buzz"), ("pig", "oink"), ("rooster", "crow"),
]


def make_plausibility_judgement(rng: random.Random) -> tuple[str, str]:
    plausible = rng.random() < 0.5
    table = TOOL_USES if rng.random() < 0.6 else ANIMAL_SOUNDS
    i = rng.randrange(len(table))
    j = i if plausible else rng.choice([x for x in range(len(table)) if x != i])
    who = rng.choice(NAMES)
    if table is TOOL_USES:
        sentence = f"{who} used {article(table[i][0])} to {table[j][1]}."
    else:
        sentence = f"{who} heard {article(table[i][0])} {table[j][1]} outside."
    return f'Is the following sentence plausible? "{sentence}"', yes_no(plausible)


OBJECTS = ["cup", "book", "pen", "ball", "hat", "scarf", "mug", "notebook", "kite", "candle", "plate", "sock"]


def make_color_lookup(rng: random.Random) -> tuple[str, str]:
    items = rng.sample(OBJECTS, rng.randint(3, 5))
    colors = rng.sample(COLORS, len(items))
    place = rng.choice(["On the desk", "On the floor", "In the box", "On the shelf"])
    described = join_and([f"{article(c)} {o}" for c, o in zip(colors, items)])
    k = rng.randrange(len(items))
    shown_others = rng.sample([c for c in colors if c != colors[k]], 2)
    distractors = shown_others + rng.sample([c for c in COLORS if c not in colors], 1)
    opts, ans = lettered_options(rng, colors[k], distractors)
    return f"{place} there is {described}. What color is the {items[k]}?\n{opts}", ans


def make_table_lookup(rng: random.Random) -> tuple[str, str]:
    people = rng.sample(NAMES, rng.randint(4, 5))
    ages = rng.sample(range(5, 16), len(people))
    heights = rng.sample(range(100, 181), len(people))
    rows = "\n".join(f"{p}, {a}, {h}" for p, a, h in zip(people, ages, heights))
    kind = rng.choice(["oldest", "youngest", "tallest", "shortest", "age"])
    if kind == "oldest":
        who = people[ages.index(max(ages))]
    elif kind == "youngest":
        who = people[ages.index(min(ages))]
    elif kind == "tallest":
        who = people[heights.index(max(heights))]
    elif kind == "shortest":
        who = people[heights.index(min(heights))]
    else:
        who = rng.choice(people)
    question = f"Who is {ages[people.index(who)]} years old?" if kind == "age" else f"Who is the {kind}?"
    opts, ans = lettered_options(rng, who, [p for p in people if p != who])
    return f"Here is a table.\nname, age, height (cm)\n{rows}\n{question}\n{opts}", ans


# --------------------------------------------------------------------------------------------
# dates, space and tracking


def _random_date(rng: random.Random) -> _dt.date:
    return _dt.date(1990, 1, 1) + _dt.timedelta(days=rng.randint(0, 40 * 365))


def _date_question(rng: random.Random) -> tuple[str, _dt.date]:
    start = _random_date(rng)
    if rng.random() < 0.5:
        n, unit, days = rng.randint(1, 60), "days", 1
    else:
        n, unit, days = rng.randint(1, 8), "weeks", 7
    unit = unit[:-1] if n == 1 else unit
    later = rng.random() < 0.5
    answer = start + _dt.timedelta(days=(n * days) * (1 if later else -1))
    s = start.strftime("%m/%d/%Y")
    direction = "later" if later else "earlier"
    templ = rng.choice([
        f"Today is {s}. What is the date {n} {unit} {direction}?",
        f"A parcel was logged on {s}. Another was logged {n} {unit} {direction}. On what date was the second one logged?",
        f"The meeting is on {s}. The review is {n} {unit} {direction}. What is the date of the review?",
    ])
    return templ, answer


def make_date_arithmetic(rng: random.Random) -> tuple[str, str]:
    q, ans = _date_question(rng)
    return f"{q} Answer in MM/DD/YYYY.", ans.strftime("%m/%d/%Y")


def make_date_options(rng: random.Random) -> tuple[str, str]:
    q, ans = _date_question(rng)
    fmt = "%m/%d/%Y"
    distractors: list[str] = []
    candidates = [ans + _dt.timedelta(days=d) for d in (1, -1, 7, -7, 30, -30, 2, -2)]
    candidates.append(ans.replace(year=ans.year + 1) if not (ans.month == 2 and ans.day == 29) else ans + _dt.timedelta(days=365))
    rng.shuffle(candidates)
    for c in candidates:
        s = c.strftime(fmt)
        if s != ans.strftime(fmt) and s not in distractors:
            distractors.append(s)
        if len(distractors) == 3:
            break
    opts, letter = lettered_options(rng, ans.strftime(fmt), distractors)
    return f"{q}\n{opts}", letter


DIRS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}


def make_grid_return(rng: random.Random) -> tuple[str, str]:
    back = rng.random() < 0.5
    while True:
        moves = [(rng.randint(1, 6), rng.choice(list(DIRS))) for _ in range(rng.randint(2, 4 if back else 6))]
        if back:
            x = sum(DIRS[d][0] * n for n, d in moves)
            y = sum(DIRS[d][1] * n for n, d in moves)
            if x:
                moves.append((abs(x), "west" if x > 0 else "east"))
            if y:
                moves.append((abs(y), "south" if y > 0 else "north"))
            rng.shuffle(moves)
        x = sum(DIRS[d][0] * n for n, d in moves)
        y = sum(DIRS[d][1] * n for n, d in moves)
        if len(moves) >= 2 and ((x, y) == (0, 0)) == back:
            break
    steps = " ".join(f"Walk {n} step{'s' if n > 1 else ''} {d}." for n, d in moves)
    return f"You stand on a grid. {steps} Are you back where you started?", yes_no(back)


MOVES = {"up": (0, 1), "down": (0, -1), "right": (1, 0), "left": (-1, 0)}


def make_grid_position(rng: random.Random) -> tuple[str, str]:
    moves = [(rng.choice(list(MOVES)), rng.randint(1, 7)) for _ in range(rng.randint(2, 6))]
    x = sum(MOVES[d][0] * n for d, n in moves)
    y = sum(MOVES[d][1] * n for d, n in moves)
    shown = ", ".join(f"{d} {n}" for d, n in moves)
    return (
        f"Start at (0, 0). Right adds to x and up adds to y. Move {shown}. What is your final position (x, y)?",
        f"({x}, {y})",
    )


SWAP_SCENES = [  # (plural noun for the swap sentence, the objects)
    ("balls", [f"the {c} ball" for c in COLORS]),
    ("books", ["a novel", "a cookbook", "a poem collection", "an atlas", "a comic", "a biography", "a dictionary"]),
    ("hats", ["a beret", "a cap", "a sombrero", "a top hat", "a beanie", "a fedora"]),
]


def make_swap_tracking(rng: random.Random) -> tuple[str, str]:
    plural, pool = rng.choice(SWAP_SCENES)
    people = rng.sample(NAMES, 3)
    items = rng.sample(pool, 3)
    intro = " ".join(f"{p} has {i}." for p, i in zip(people, items))
    holding = dict(zip(people, items))
    sents = []
    last = None
    for _ in range(rng.randint(2, 4)):
        pair = rng.sample(people, 2)
        while last is not None and sorted(pair) == sorted(last):
            pair = rng.sample(people, 2)
        last = pair
        a, b = pair
        holding[a], holding[b] = holding[b], holding[a]
        sents.append(f"{a} and {b} swap {plural}.")
    who = rng.choice(people)
    correct = holding[who]
    opts, ans = lettered_options(rng, correct, [i for i in items if i != correct])
    return f"{intro} {' '.join(sents)} At the end, what does {who} have?\n{opts}", ans


def make_bracket_completion(rng: random.Random) -> tuple[str, str]:
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    seq: list[str] = []
    stack: list[str] = []
    length = rng.randint(3, 10)
    while len(seq) < length or not stack:
        if stack and rng.random() < 0.4 and len(seq) < length:
            seq.append(pairs[stack.pop()])
        elif len(stack) < 5:
            o = rng.choice(list(pairs))
            stack.append(o)
            seq.append(o)
        else:
            seq.append(pairs[stack.pop()])
    closing = " ".join(pairs[o] for o in reversed(stack))
    lead = rng.choice(["Close every open bracket, innermost first:", "Finish the sequence so all brackets are balanced:"])
    return f"{lead} {' '.join(seq)}", closing


# --------------------------------------------------------------------------------------------
# the table


def _skill(name: str, description: str, answer_format: str, make: Callable[[random.Random], tuple[str, str]]) -> Skill:
    return Skill(name=name, description=description, answer_format=answer_format, make=make)


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        _skill("multistep-arithmetic", "Evaluate a parenthesized expression of small integers with +, - and *.",
               "integer", make_multistep_arithmetic),
        _skill("number-comparison", "Pick the larger or smaller of two numbers, integers or decimals.", "(A)-(B)",
               make_number_comparison),
        _skill("boolean-expressions", "Evaluate a boolean expression of True, False, not, and, or and parentheses.",
               "True/False", make_boolean_expressions),
        _skill("word-sorting", "Sort a list of words alphabetically.", "sorted words", make_word_sorting),
        _skill("object-counting", "Count the items of one category in a list with number words and distractors.",
               "integer", make_object_counting),
        _skill("date-arithmetic", "Add or subtract days or weeks from a date and give MM/DD/YYYY.", "MM/DD/YYYY",
               make_date_arithmetic),
        _skill("date-options", "Choose the date a number of days or weeks before or after a given date.", "(A)-(D)",
               make_date_options),
        _skill("grid-return", "Follow compass moves on a grid and say whether you end at the start.", "Yes/No",
               make_grid_return),
        _skill("grid-position", "Follow up/down/left/right moves from the origin and give the final coordinate.",
               "coordinate", make_grid_position),
        _skill("swap-tracking", "Track which object each of three people holds after a series of swaps.", "(A)-(C)",
               make_swap_tracking),
        _skill("truth-teller-chains", "Decide whether the last person in a chain of truth-tellers and liars is honest.",
               "Yes/No", make_truth_teller_chains),
        _skill("syllogism-validity", "Judge whether a categorical syllogism with made-up terms is valid.",
               "valid/invalid", make_syllogism_validity),
        _skill("ordering-constraints", "Deduce who is in a given position from ordering clues about three or four people.",
               "(A)-(D)", make_ordering_constraints),
        _skill("sequence-completion", "Give the next number of an arithmetic, geometric or other simple sequence.",
               "integer", make_sequence_completion),
        _skill("bracket-completion", "Close the open brackets of a sequence in the right order.", "brackets",
               make_bracket_completion),
        _skill("category-choice", "Choose the option that belongs to a named category such as fruit or tool.", "(A)-(D)",
               make_category_choice),
        _skill("odd-one-out", "Choose the word that does not belong with the other three.", "(A)-(D)", make_odd_one_out),
        _skill("plausibility-judgement", "Judge whether a short everyday sentence about tools or animals is plausible.",
               "Yes/No", make_plausibility_judgement),
        _skill("parity-check", "Say whether the sum or product of a few numbers is even or odd.", "Yes/No",
               make_parity_check),
        _skill("letter-counting", "Count how many times a letter occurs in a word.", "integer", make_letter_counting),
        _skill("word-reversal", "Write a list of words in reverse order.", "words", make_word_reversal),
        _skill("unit-conversion", "Convert a quantity between units of time, length, mass or volume.", "integer",
               make_unit_conversion),
        _skill("list-extremes", "Find the largest, the smallest, or the range of a list of integers.", "integer",
               make_list_extremes),
        _skill("clock-arithmetic", "Compute the hour on a 12-hour clock some hours later or earlier.", "integer",
               make_clock_arithmetic),
        _skill("antonym-choice", "Choose the word with the opposite meaning.", "(A)-(D)", make_antonym_choice),
        _skill("color-lookup", "Read the color of a named object from a short description.", "(A)-(D)",
               make_color_lookup),
        _skill("table-lookup", "Answer a question about a small table of names, ages and heights.", "(A)-(E)",
               make_table_lookup),
        _skill("adjective-order", "Choose the phrase whose adjectives follow natural English order.", "(A)-(B)",
               make_adjective_order),
        *(Skill(name, description, fmt, make, kind="distractor") for name, description, fmt, make in DISTRACTORS),
    ]
}


# --------------------------------------------------------------------------------------------
# variants: a table skill under another prompt template (``word-sorting.qa``), or a mixture of
# table skills (``grid-return+grid-position``), the way a hub pool holds one dataset under several
# templates and modules trained on related tasks together. The answer is the part's own.


@dataclass(frozen=True)
class Template:
    """Another phrasing around a skill's input: ``wrap(skill, input)`` is the new prompt."""

    name: str
    wrap: Callable[[Skill, str], str]


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template("instruct", lambda s, inp: f"Task: {s.description}\n\n{inp}"),
        Template("qa", lambda s, inp: f"Question: {inp}\nAnswer:"),
        Template("terse", lambda s, inp: f"{inp}\n\nReply with the answer only."),
    ]
}
TEMPLATE_SEP, MIXTURE_SEP = ".", "+"


def _templated(base: Skill, template: Template, name: str) -> Skill:
    def make(rng: random.Random) -> tuple[str, str]:
        inp, target = base.make(rng)
        return template.wrap(base, inp), target

    return Skill(name, f"{base.description} (template {template.name})", base.answer_format, make,
                 kind="template", parts=(base.name,), template=template.name)


def _mixture(parts: list[Skill], name: str) -> Skill:
    def make(rng: random.Random) -> tuple[str, str]:
        return parts[rng.randrange(len(parts))].make(rng)

    return Skill(name, "Mixture: " + " / ".join(p.description for p in parts),
                 " | ".join(dict.fromkeys(p.answer_format for p in parts)), make, kind="mixture",
                 parts=tuple(p.name for p in parts))


def _table_skill(name: str, spec: str) -> Skill:
    """A table skill a variant is built from; distractors have no variants (a variant would stop counting as one)."""
    try:
        skill = SKILLS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(SKILLS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        where = f" in {spec!r}" if spec != name else ""
        raise TaskError(f"unknown skill {name!r}{where}{hint} Known skills: {', '.join(SKILLS)}; "
                        f"variants: SKILL{TEMPLATE_SEP}TEMPLATE ({', '.join(TEMPLATES)}), "
                        f"SKILL{MIXTURE_SEP}SKILL") from None
    if skill.kind != "skill":
        raise TaskError(f"{name!r} is a {skill.kind} skill: {spec!r} builds variants of BBH-related skills only")
    return skill


def _variant(spec: str) -> Skill:
    if MIXTURE_SEP in spec:
        names = spec.split(MIXTURE_SEP)
        if len(set(names)) != len(names):
            raise TaskError(f"mixture {spec!r} repeats a skill")
        return _mixture([_table_skill(n, spec) for n in names], spec)
    base, _, tname = spec.rpartition(TEMPLATE_SEP)
    if base and tname not in TEMPLATES:
        raise TaskError(f"unknown template {tname!r} in {spec!r}; templates: {', '.join(TEMPLATES)}")
    if not base:
        return _table_skill(spec, spec)
    return _templated(_table_skill(base, spec), TEMPLATES[tname], spec)


# --------------------------------------------------------------------------------------------
# public API


def skill_names() -> list[str]:
    """All skill names, in a stable order."""
    return list(SKILLS)


def get_skill(name: str) -> Skill:
    """The skill called ``name``: a table skill, ``SKILL.TEMPLATE`` or ``SKILL+SKILL``; an unknown name
    raises TaskError with close matches and the full list."""
    if name in SKILLS:
        return SKILLS[name]
    return _variant(str(name))


def generate(name: str, n: int, seed: int = 0, *, exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """``n`` examples ``{"input", "target"}`` of skill ``name``, deterministic in ``(name, n, seed)``.

    Inputs are unique within the list and never in ``exclude``. The list for ``n`` is a prefix of
    the list for any larger ``n`` (same seed and exclude).
    """
    skill = get_skill(name)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TaskError(f"n must be a positive integer, got {n!r}")
    rng = random.Random(f"{name}:{seed}")
    seen: set[str] = set()
    out: list[dict] = []
    budget, misses, max_misses = 50 * n + 2000, 0, 20_000  # give up when the skill's input space is exhausted
    attempt = 0
    while attempt < budget:
        attempt += 1
        inp, target = skill.make(rng)
        if inp in seen or inp in exclude:
            misses += 1
            if misses >= max_misses:
                break
            continue
        misses = 0
        seen.add(inp)
        out.append({"input": inp, "target": target})
        if len(out) == n:
            return out
    raise TaskError(
        f"skill {name!r} produced only {len(out)} unique inputs of the {n} asked for in {attempt} attempts"
        f"{f' (excluding {len(exclude)} inputs)' if exclude else ''}; ask for fewer examples"
    )


def split(name: str, n_train: int, n_heldout: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Disjoint ``(train, heldout)`` lists of skill ``name``, deterministic in all arguments.

    Held-out examples are drawn first, so the held-out list depends only on ``(name, n_heldout,
    seed)``; the training examples follow in the same stream and never repeat a held-out input.
    """
    for label, v in (("n_train", n_train), ("n_heldout", n_heldout)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TaskError(f"{label} must be a non-negative integer, got {v!r}")
    if n_train + n_heldout < 1:
        raise TaskError("split needs at least one example (n_train + n_heldout >= 1)")
    both = generate(name, n_train + n_heldout, seed)
    return both[n_heldout:], both[:n_heldout]
