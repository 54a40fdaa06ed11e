"""BIG-Bench Hard: load any directory of BBH JSON files, split support/queries, score answers.

Files are the standard ``<task>.json`` with ``{"examples": [{"input": ..., "target": ...}]}``.
The directory comes from ``--bbh-dir``, else ``$SCALECTL_BBH_DIR``, else
``$SCALECTL_HOME/bbh``, else the copy that ships inside the package
(``scalectl/data/bbh``: the 27 tasks of the standard release, MIT, its LICENSE kept).

Protocol (docs/method.md): the support set is ``examples[10:15]`` in file order; the queries
are all the other examples. Scoring is normalized exact match,
``str(x).strip().lower().replace(".", "")`` on both sides; the answer extractor
(first option letter, else first line) is a separate metric and never mixed into EM.
BBH is evaluation data: nothing in scalectl trains on it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import TaskError

PREFIX = "bbh/"
SUPPORT_OFFSET = 10
SUPPORT_SIZE = 5

# The paper's decoder-only check uses a "LoGo-style BBH-8" subset without listing it. Our
# choice, fixed here: eight tasks covering the eight answer formats of BBH (True/False,
# lettered option, Yes/No, valid/invalid, integer, sorted words, closing brackets, date
# option), each with at least 250 examples.
SUITES: dict[str, list[str] | None] = {
    "bbh": None,  # every task in the directory (27 in the standard release)
    "bbh-8": [
        "boolean_expressions",
        "date_understanding",
        "dyck_languages",
        "formal_fallacies",
        "logical_deduction_three_objects",
        "navigate",
        "object_counting",
        "word_sorting",
    ],
}

OPTION_RE = re.compile(r"^\([A-Z]\)$")
_OPTION_IN_TEXT = re.compile(r"\(([A-Z])\)|^\s*([A-Z])[).:]?(?:\s|$)")


def normalize(x: object) -> str:
    """method.md's answer normalization: ``str(x).strip().lower().replace(".", "")``."""
    return str(x).strip().lower().replace(".", "")


def exact_match(prediction: object, reference: object) -> bool:
    return normalize(prediction) == normalize(reference)


def prediction(output: str) -> str:
    """method.md: a query's prediction is the first line of its decoded output, stripped."""
    return str(output).split("\n", 1)[0].strip()


def is_option_task(targets) -> bool:
    """True when most targets are option letters like ``(A)``."""
    targets = list(targets)
    return sum(bool(OPTION_RE.match(str(t).strip())) for t in targets) * 2 > len(targets)


def extract_answer(output: str, option_task: bool) -> str:
    """The optional extractor: the first option letter for option tasks, else the first non-empty line."""
    text = str(output)
    if option_task:
        for line in text.splitlines():
            m = _OPTION_IN_TEXT.search(line)
            if m:
                return f"({m.group(1) or m.group(2)})"
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def input_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Example:
    id: str  # "navigate/17": task and index in the file
    index: int
    input: str
    target: str


@dataclass
class Task:
    name: str  # "bbh/navigate"
    short: str  # "navigate"
    path: Path
    examples: list[Example]
    support: list[Example] = field(default_factory=list)
    queries: list[Example] = field(default_factory=list)

    @property
    def option_task(self) -> bool:
        """True when most targets are option letters like ``(A)``."""
        return is_option_task(e.target for e in self.examples)

    @property
    def longest_target(self) -> str:
        return max((e.target for e in self.examples), key=len)


def shipped_dir() -> Path:
    """The BBH copy inside the package (27 tasks, MIT; ``LICENSE`` and ``README.md`` beside them)."""
    return Path(__file__).resolve().parents[1] / "data" / "bbh"


def bbh_dir(explicit: str | Path | None = None) -> Path:
    """Where the BBH JSON files are: ``--bbh-dir``, ``$SCALECTL_BBH_DIR``, ``$SCALECTL_HOME/bbh``, or the shipped copy."""
    if explicit:
        cands = [("--bbh-dir", Path(explicit))]
    elif os.environ.get("SCALECTL_BBH_DIR"):
        cands = [("SCALECTL_BBH_DIR", Path(os.environ["SCALECTL_BBH_DIR"]))]
    else:
        cands = [("scalectl home", paths.home() / "bbh"), ("shipped", shipped_dir())]
    for how, p in cands:
        p = p.expanduser()
        if p.is_dir() and any(p.glob("*.json")):
            return p.resolve()
        if how in ("--bbh-dir", "SCALECTL_BBH_DIR"):
            raise TaskError(f"{how} {p} is not a directory of BBH .json files")
    raise TaskError(f"no BIG-Bench Hard directory found (the shipped copy {shipped_dir()} is missing: reinstall "
                    "scalectl): pass --bbh-dir DIR or set SCALECTL_BBH_DIR "
                    "(a directory of <task>.json files from github.com/suzgunmirac/BIG-Bench-Hard)")


def available(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def _short(name: str) -> str:
    name = name.strip()
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def resolve(spec: str | list[str], directory: Path) -> list[str]:
    """Task names from ``bbh/navigate``, ``navigate``, a suite (``bbh``, ``bbh-8``), or a comma list of them."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise TaskError("no task given: pass --task bbh/TASK or a suite (bbh, bbh-8)")
    have = available(directory)
    out: list[str] = []
    for item in items:
        if item in SUITES:
            wanted = SUITES[item] or have
            missing = [t for t in wanted if t not in have]
            if missing:
                raise TaskError(f"suite {item!r} needs {', '.join(missing)}, missing from {directory}")
            names = wanted
        else:
            short = _short(item)
            if short not in have:
                known = [PREFIX + t for t in have] + list(SUITES)
                close = difflib.get_close_matches(item if item.startswith(PREFIX) else PREFIX + short, known, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise TaskError(f"unknown task {item!r}; {hint}known: {', '.join(known)}")
            names = [short]
        out += [n for n in names if n not in out]
    return out


def load_task(name: str, directory: Path, support_offset: int = SUPPORT_OFFSET, support_size: int = SUPPORT_SIZE) -> Task:
    """Read one task file, check every entry, and split support (``examples[off:off+k]``) from queries."""
    short = _short(name)
    path = directory / f"{short}.json"
    if not path.is_file():
        resolve(short, directory)  # raises with did-you-mean
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaskError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not UTF-8 text") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("examples"), list):
        raise TaskError(f"{path}: expected an object with an \"examples\" list")
    examples: list[Example] = []
    for i, ex in enumerate(raw["examples"]):
        if not isinstance(ex, dict) or "input" not in ex or "target" not in ex:
            raise TaskError(f"{path}: entry {i} must be an object with \"input\" and \"target\"")
        inp, tgt = ex["input"], ex["target"]
        if not isinstance(inp, str) or not inp.strip():
            raise TaskError(f"{path}: entry {i} has an empty or non-string \"input\"")
        if isinstance(tgt, bool) or not isinstance(tgt, (str, int, float)) or not str(tgt).strip():
            raise TaskError(f"{path}: entry {i} has an empty or non-scalar \"target\" ({tgt!r})")
        examples.append(Example(id=f"{short}/{i}", index=i, input=inp, target=str(tgt)))
    if support_offset < 0 or support_size < 0:
        raise TaskError("support offset and size must be non-negative")
    need = support_offset + support_size
    if len(examples) < need + 1:
        raise TaskError(f"{path}: {len(examples)} examples, but the support set needs examples[{support_offset}:{need}] "
                        "and at least one query is needed")
    support = examples[support_offset:need]
    queries = examples[:support_offset] + examples[need:]
    return Task(name=PREFIX + short, short=short, path=path, examples=examples, support=support, queries=queries)


def load_tasks(spec: str | list[str], directory: str | Path | None = None, support_offset: int = SUPPORT_OFFSET,
               support_size: int = SUPPORT_SIZE) -> list[Task]:
    d = bbh_dir(directory)
    return [load_task(n, d, support_offset, support_size) for n in resolve(spec, d)]
