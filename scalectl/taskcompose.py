"""``scalectl compose --task``: one composed adapter for a task, from its support set.

Retrieve the global candidates for the task's support set, search their weights on it (LoRAHub's rule for
``lorahub``, else the linear anchor), and compose them with the chosen merger (written and registered by
:func:`scalectl.compose.compose`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import EvalError
from .progress import Progress, ensure
from .search import SearchConfig, SearchResult, search_weights


@dataclass
class TaskComposition:
    task: str
    candidates: list[str]
    weights: list[float]
    search: SearchResult
    retrieval: dict[str, Any]
    result: Any  # compose.ComposeResult


def compose_for_task(reg, task_spec: str, pool: str, merger: str = "lasrc", view: str = "balanced", n_global: int = 20,
                     embedder: str | None = None, search: SearchConfig | None = None, base: str | None = None,
                     bbh_dir: str | None = None, progress: Progress | None = None, **compose_kw: Any) -> TaskComposition:
    from .backbone import load_backbone
    from .compose import compose
    from .context import RunContext
    from .evaluate import run_base
    from .methods.plan import support_dicts
    from .retrieve import retrieve
    from .tasks import bbh

    tasks = bbh.load_tasks(task_spec, bbh_dir)
    if len(tasks) != 1:
        raise EvalError(f"--task must name one task for compose, got {len(tasks)} ({task_spec})")
    task = tasks[0]
    base_spec = run_base(reg, base, pool, required=True)  # the pool and its base, checked before anything loads
    support = support_dicts(task)
    r = retrieve(reg, pool, view, support, None, n_global=n_global, n_local=1, embedder=embedder)
    names = [n for n, _ in r.global_candidates]
    prog = ensure(progress)
    prog.log("loading the base model")
    ctx = RunContext(reg, load_backbone(base_spec.spec), pool)
    rule = "lorahub" if merger == "lorahub" else "linear"
    res = search_weights(ctx.bb, ctx.factors(names), support, search or SearchConfig(), rule=rule, progress=prog)
    if all(w == 0 for w in res.weights):
        raise EvalError("the weight search kept every weight at 0 (the base model fits the support set best); "
                        "nothing to compose")
    out = compose(reg, names, res.weights, merger, compose_kw.pop("params", None), pool=pool, base=base_spec.spec,
                  **compose_kw)
    return TaskComposition(task=task.name, candidates=names, weights=res.weights, search=res, retrieval=r.to_dict(),
                           result=out)
