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

Limits, so one adapter with long records cannot dominate or overflow the embedder: the first
:data:`MAX_EXAMPLES` (5) example records are used, each input and output is cut to
:data:`MAX_FIELD_CHARS` (300) characters, a description to :data:`MAX_DESCRIPTION_CHARS` (500),
and the whole text to :data:`MAX_TEXT_CHARS` (2,000). Whitespace runs collapse to one space;
``_`` and ``-`` in a source task name become spaces (``word_sorting`` -> ``word sorting``).
Routing compares raw inputs (query vs support example), cut to :data:`ROUTING_CHARS` (1,000).
MiniLM itself reads only the first 256 word pieces (roughly 1,000 characters), which is why
the description and the source task come first. An adapter for which a recipe gives no text
(no description, no examples) is embedded from its description, else its source task, else
its name, so no vector is empty.

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
MAX_FIELD_CHARS = 300
MAX_DESCRIPTION_CHARS = 500
MAX_TEXT_CHARS = 2000
ROUTING_CHARS = 1000
ARROW = " -> "

_WS = re.compile(r"\s+")


def clean(text: Any, limit: int) -> str:
    """Collapse whitespace and cut to ``limit`` characters (ending in ``...`` when cut)."""
    s = _WS.sub(" ", str(text if text is not None else "")).strip()
    if len(s) > limit:
        s = s[: max(0, limit - 3)].rstrip() + "..."
    return s


def _task_name(source_task: Any) -> str:
    return clean(re.sub(r"[_\-]+", " ", str(source_task or "")), MAX_FIELD_CHARS)


def _examples(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(row.get("examples") or [])[:MAX_EXAMPLES]


def _pair(inp: Any, out: Any) -> str:
    return clean(inp, MAX_FIELD_CHARS) + ARROW + clean(out, MAX_FIELD_CHARS)


def _head(row: Mapping[str, Any]) -> list[str]:
    parts = []
    if row.get("description"):
        parts.append(clean(row["description"], MAX_DESCRIPTION_CHARS))
    if row.get("source_task"):
        parts.append("Task: " + _task_name(row["source_task"]))
    return parts


def _join(parts: list[str]) -> str:
    return clean("\n".join(p for p in parts if p), MAX_TEXT_CHARS) if parts else ""


def recipe_retrieval(row: Mapping[str, Any]) -> str:
    return _join(_head(row) + [clean(e.get("input"), MAX_FIELD_CHARS) for e in _examples(row)])


def recipe_balanced(row: Mapping[str, Any]) -> str:
    return _join(_head(row) + [_pair(e.get("input"), e.get("output")) for e in _examples(row)])


def recipe_qa(row: Mapping[str, Any]) -> str:
    return _join([_pair(e.get("input"), e.get("output")) for e in _examples(row)])


def support_input(example: Mapping[str, Any]) -> str:
    return clean(example.get("input"), MAX_FIELD_CHARS)


def routing_text(example: Mapping[str, Any]) -> str:
    """What routing compares (a query's input against a support example's input), for every view.

    Longer than a field (:data:`ROUTING_CHARS`): BBH inputs of one task often share a long template prefix."""
    return clean(example.get("input"), ROUTING_CHARS)


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
                return clean(row[key], MAX_TEXT_CHARS) if key != "source_task" else _task_name(row[key])
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
