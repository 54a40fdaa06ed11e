"""Views: named text recipes that turn an adapter's registry row into the one string that is embedded.

method.md fixes three views (retrieval-focused, balanced, QA-only). They are defined here, in
:data:`VIEWS`, and nowhere else:

==============  ==========================================================  ==========================
view            adapter side (what the index embeds)                        task side (support example)
==============  ==========================================================  ==========================
``retrieval``   description, source task, the example *inputs*              the support input
``balanced``    description, source task, examples as ``input -> output``   ``input -> target``
``qa``          the examples as ``input -> output`` pairs only              ``input -> target``
==============  ==========================================================  ==========================

The retrieval view embeds what a target task's inputs look like, so a task is matched on its
inputs alone; the balanced view adds the answers; the QA view ignores the descriptions (useful
when they are missing or boilerplate).

No text is cut at a fixed number of characters (method.md, Retrieval): the embedder's own token limit
applies (MiniLM reads the first 256 word pieces), which is why the description and the source task come
first. Only the first :data:`MAX_EXAMPLES` (5) example records of an adapter are used, whitespace runs
collapse to one space, and ``_`` and ``-`` in a source task name become spaces (``word_sorting`` ->
``word sorting``). On the task side, a long prefix that every input of the task shares (an instruction
preamble of :data:`LONG_PREAMBLE_WORDS` words or more: BBH's salient_translation_error_detection, 103 words,
and penguins_in_a_table, 62) is stripped before embedding (:func:`common_prefix`; retrieval records it), so
the part that tells examples apart reaches the embedder's window; a short shared instruction ("Sort the
following words alphabetically: List:") stays, since it says what the task is. Routing compares inputs
(query vs support example) the same way. An adapter for which a recipe gives no text (no description, no
examples) is embedded from its description, else its source task, else its name, so no vector is empty.

A *custom view* is any other name bound to one of these recipes
(``scalectl index --view mine --recipe qa``); the binding is stored with the index rows.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import RetrievalError

MAX_EXAMPLES = 5
ARROW = " -> "
LONG_PREAMBLE_WORDS = 50  # a shared prefix this long would fill a fifth of MiniLM's 256-word-piece window

_WS = re.compile(r"\s+")


def clean(text: Any) -> str:
    """Collapse whitespace runs to one space and strip the ends (nothing is cut)."""
    return _WS.sub(" ", str(text if text is not None else "")).strip()


def common_prefix(texts: list[str], min_words: int = 1) -> str:
    """The prefix every one of ``texts`` (two or more) shares, ended at a whitespace so no word is split; ``""`` when
    it has fewer than ``min_words`` words or when stripping it would empty one of the texts."""
    cleaned = [clean(t) for t in texts]
    if len(cleaned) < 2:
        return ""
    lo, hi = min(cleaned), max(cleaned)  # the common prefix of all of them is that of the two extremes
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    prefix = lo[: lo.rfind(" ", 0, n) + 1]  # back to the last whitespace inside it (none: "")
    if len(prefix.split()) < min_words or not all(len(t) > len(prefix) for t in cleaned):
        return ""
    return prefix


def strip_prefix(text: Any, prefix: str) -> str:
    s = clean(text)
    return s[len(prefix):] if prefix and s.startswith(prefix) else s


def _task_name(source_task: Any) -> str:
    return clean(re.sub(r"[_\-]+", " ", str(source_task or "")))


def _examples(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(row.get("examples") or [])[:MAX_EXAMPLES]


def _pair(inp: Any, out: Any) -> str:
    return clean(inp) + ARROW + clean(out)


def _head(row: Mapping[str, Any]) -> list[str]:
    parts = []
    if row.get("description"):
        parts.append(clean(row["description"]))
    if row.get("source_task"):
        parts.append("Task: " + _task_name(row["source_task"]))
    return parts


def _join(parts: list[str]) -> str:
    return clean("\n".join(p for p in parts if p)) if parts else ""


def recipe_retrieval(row: Mapping[str, Any]) -> str:
    return _join(_head(row) + [clean(e.get("input")) for e in _examples(row)])


def recipe_balanced(row: Mapping[str, Any]) -> str:
    return _join(_head(row) + [_pair(e.get("input"), e.get("output")) for e in _examples(row)])


def recipe_qa(row: Mapping[str, Any]) -> str:
    return _join([_pair(e.get("input"), e.get("output")) for e in _examples(row)])


def support_input(example: Mapping[str, Any]) -> str:
    return clean(example.get("input"))


def routing_text(example: Mapping[str, Any]) -> str:
    """What routing compares (a query's input against a support example's input), for every view."""
    return clean(example.get("input"))


def support_pair(example: Mapping[str, Any]) -> str:
    return _pair(example.get("input"), example.get("target", example.get("output")))


@dataclass(frozen=True)
class View:
    name: str
    description: str
    recipe: Callable[[Mapping[str, Any]], str]  # adapter registry row -> text
    support_text: Callable[[Mapping[str, Any]], str]  # support example {input, target} -> text

    def adapter_text(self, row: Mapping[str, Any]) -> str:
        """The text embedded for one adapter row (with the fallback for adapters with nothing to show)."""
        text = self.recipe(row)
        if text.strip():
            return text
        for key in ("description", "source_task", "name"):
            if row.get(key):
                return clean(row[key]) if key != "source_task" else _task_name(row[key])
        return ""


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("retrieval", "retrieval-focused: description, source task and the example inputs; "
             "the task side is the support input", recipe_retrieval, support_input),
        View("balanced", "description, source task and the examples as input -> output pairs; "
             "the task side is input -> target", recipe_balanced, support_pair),
        View("qa", "QA only: the example input -> output pairs, no description; the task side is input -> target",
             recipe_qa, support_pair),
    )
}
DEFAULT_VIEW = "balanced"


def get_view(name: str, known_custom: list[str] | None = None) -> View:
    """A built-in view (recipe) by name; unknown names raise with a did-you-mean and the list."""
    if name in VIEWS:
        return VIEWS[name]
    known = list(VIEWS) + [c for c in (known_custom or []) if c not in VIEWS]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise RetrievalError(f"unknown view {name!r}; {hint}known: {', '.join(known)} "
                         "(a custom view needs a recipe: scalectl index --view NAME --recipe retrieval|balanced|qa)")
