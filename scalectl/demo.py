"""The main job on the embedded default (``scalectl demo``).

1. Prepare the embedded backbone (SmolLM2-135M-Instruct; converted once, then cached).
2. Register the skill pool that ships in ``registry/`` (``smollm2-skills``, one rank-8 q/v
   LoRA per synthetic skill, trained by ``scalectl pool train``).
3. Index the skill pool (the ``balanced`` view, MiniLM embeddings; only changed adapters are
   re-embedded on later runs).
4. For three BBH tasks, evaluate the base model (zero-shot), ``ilc`` (global + local retrieval
   from each task's 5 support examples, one 40-step weight search per support cluster, query
   routing, ``linear`` merge) and ``lasrc`` (the same retrieval, clusters and weights; only the
   merge changes), every query recorded as a run in the registry.
5. Return per-task scores and flips of each composition against the base model.

``uniform=True`` skips retrieval and search: the whole pool composed with weights ``1/K``.

By default each task is capped at its first ``DEMO_LIMIT`` queries (file order) so the
whole job fits in a few minutes on two CPU cores; ``full=True`` runs every query.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .errors import ScalectlError
from .progress import Progress, ensure

DEMO_TASKS = ["bbh/boolean_expressions", "bbh/navigate", "bbh/object_counting"]
DEMO_POOL = "smollm2-skills"
DEMO_MERGERS = ["linear", "lasrc"]  # reported as linear (ilc) and lasrc
DEMO_LIMIT = 60
DEMO_VIEW = "balanced"


def shipped_registry_dir() -> Path:
    """The ``registry/`` directory that ships with scalectl (manifests and the demo pool)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_registry", here.parent / "registry"):
        if cand.is_dir():
            return cand
    raise ScalectlError("cannot find the shipped registry/ directory; reinstall scalectl from its source tree")


def demo_manifest() -> Path:
    """The manifest of the shipped demo pool (``registry/smollm2-skills.toml``); the FLAN-T5 manifests beside it
    are the user's to add (``scalectl pool add --manifest``)."""
    m = shipped_registry_dir() / f"{DEMO_POOL}.toml"
    if not m.is_file():
        raise ScalectlError(f"the demo pool's manifest {m} is missing from this install; reinstall scalectl")
    return m


def run_demo(base: str | None = None, full: bool = False, limit: int | None = None, tasks: list[str] | None = None,
             bbh_dir: str | None = None, uniform: bool = False, steps: int = 40,
             progress: Progress | None = None) -> dict[str, Any]:
    from .audit import compare_runs
    from .backbone import load_backbone
    from .evaluate import run_base, run_eval
    from .registry import Registry
    from .tasks import bbh

    prog = ensure(progress)
    t_start = time.perf_counter()
    limit = None if full else (limit or DEMO_LIMIT)
    task_objs = bbh.load_tasks(tasks or DEMO_TASKS, bbh_dir)  # bad task names fail before anything loads
    reg = Registry()
    m = demo_manifest()
    res = reg.add_sources(manifest=m, replace=True)
    registered = [{"manifest": m.name, "pool": res.pool, "adapters": len(res.added), "warnings": res.warnings}]
    base_spec = run_base(reg, base, DEMO_POOL)  # --base, else the pool's (the embedded copy of its hub id)
    prog.log("loading the base model (the first run converts the embedded GGUF once, ~25 s)")
    bb = load_backbone(base_spec.spec)
    pool_rows = reg.list(pool=DEMO_POOL)
    if not pool_rows:
        raise ScalectlError(f"the demo pool {DEMO_POOL!r} is empty: registry/{DEMO_POOL}.toml is missing from this install")
    names = [r["name"] for r in pool_rows]
    cap = f"first {limit} queries per task (pass --full for all)" if limit else "all queries"
    runs: dict[str, Any] = {}
    if uniform:
        how = f"uniform weights 1/{len(names)} over the whole pool"
        prog.log(f"registered {sum(r['adapters'] for r in registered)} adapters; composing {len(names)} skill adapters "
                 f"of pool {DEMO_POOL} with {how}")
    else:
        from .index import build_index
        from .methods import MethodConfig
        from .search import SearchConfig

        how = f"retrieved per task ({DEMO_VIEW} view), weights searched on 5 support examples ({steps} steps)"
        prog.log(f"indexing pool {DEMO_POOL} ({len(names)} adapters, {DEMO_VIEW} view)")
        build_index(reg, DEMO_POOL, DEMO_VIEW, progress=prog)
    prog.log(f"evaluating {', '.join(t.name for t in task_objs)}: {cap}")
    runs["zero-shot"] = run_eval(task_objs, reg=reg, bb=bb, base_only=True, limit=limit, label="demo", progress=prog)
    for merger in DEMO_MERGERS:
        if uniform:
            runs[merger] = run_eval(task_objs, reg=reg, bb=bb, adapters=names, pool=DEMO_POOL, merger=merger, limit=limit,
                                    label="demo", progress=prog)
        else:
            m = MethodConfig(method="ilc" if merger == "linear" else "lasrc", view=DEMO_VIEW,
                             search=SearchConfig(steps=steps))
            runs[merger] = run_eval(task_objs, reg=reg, bb=bb, pool=DEMO_POOL, method=m, limit=limit, label="demo",
                                    progress=prog)
    base_id = runs["zero-shot"].run_id
    flips = {m: compare_runs(reg, runs[m].run_id, base_id) for m in DEMO_MERGERS}
    rows = []
    for t in task_objs:
        row: dict[str, Any] = {"task": t.name}
        for m, r in runs.items():
            ts = next(s for s in r.tasks if s.task == t.name)
            row["n"] = ts.n
            row[m] = ts.accuracy
            row[f"{m}_extracted"] = ts.extracted_accuracy
        for m in DEMO_MERGERS:
            f = flips[m]["tasks"][t.name]
            row[f"{m}_flips"] = {"i2c": f["i2c"], "c2i": f["c2i"], "unchanged": f["unchanged"]}
        rows.append(row)
    macro = {m: r.macro_accuracy for m, r in runs.items()}
    return {
        "base": {"spec": bb.base.spec, "canonical": bb.base.canonical, "device": bb.device,
                 "load_seconds": round(bb.load_seconds, 2)},
        "pool": DEMO_POOL, "adapters": names, "weights": how, "limit": limit,
        "methods": {m: r.method for m, r in runs.items()},
        "tasks": rows, "macro": macro,
        "flips_total": {m: flips[m]["total"] for m in DEMO_MERGERS},
        "runs": {m: r.run_id for m, r in runs.items()},
        "seconds": {"total": round(time.perf_counter() - t_start, 1),
                    **{m: round(r.decode_seconds + r.compose_seconds, 1) for m, r in runs.items()}},
        "registered": registered, "registry": str(reg.path),
    }
