"""``scalectl retrieve``: global and local candidate adapters for a BBH task, and how its queries route."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def retrieve_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="One BBH task: bbh/TASK.")],
    view: Annotated[str, typer.Option("--view", "-V", help="Index view (scalectl index --list).")] = "balanced",
    n_global: Annotated[int, typer.Option("--global", "-G", help="Global candidates (top-G by the mean support embedding).")] = 20,
    n_local: Annotated[int, typer.Option("--local", "-L", help="Local candidates per support example.")] = 20,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL", help="Pool (default: default).")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder", "-e", help="Must match the index's embedder (default: the index's).")] = None,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Route only the first N queries (file order).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON (all local candidates, every query's route and candidate set).")] = False,
) -> None:
    """Retrieve candidate adapters for a task from its support examples (examples[10:15]) and route its queries."""
    from .. import report
    from ..errors import RetrievalError
    from ..registry import DEFAULT_POOL, Registry
    from ..retrieve import retrieve
    from ..tasks.bbh import load_tasks

    tasks = load_tasks(task, bbh_dir)
    if len(tasks) != 1:
        raise RetrievalError(f"--task {task!r} names {len(tasks)} tasks; retrieve takes one (bbh/TASK)")
    t = tasks[0]
    if limit is not None and limit < 0:
        raise RetrievalError(f"--limit must be >= 0 (got {limit})")
    queries = t.queries[:limit] if limit is not None else t.queries
    with report.RichProgress(enabled=not as_json) as prog:
        res = retrieve(Registry(), pool or DEFAULT_POOL, view, t.support, queries, n_global=n_global, n_local=n_local,
                       embedder=embedder, progress=prog)
    if as_json:
        report.emit_json({"task": t.name, "support": [{"id": e.id, "input": e.input, "target": e.target} for e in t.support],
                          **res.to_dict()})
        return
    for w in res.warnings:
        report.warn(w)
    report.table([{"rank": i + 1, "name": n, "score": f"{s:.3f}"} for i, (n, s) in enumerate(res.global_candidates)],
                 [("rank", "#"), report.Col("name", "adapter", 0, "id", min_width=40), ("score", "cosine")],
                 title=f"{t.name}: global candidates", caption=f"pool {res.pool}, view {res.view}, {res.embedder}")
    counts = res.route_counts()
    rows = []
    for j, (ex, lst) in enumerate(zip(t.support, res.local_candidates)):
        text = " ".join(ex.input.split())
        tgt = " ".join(ex.target.split())
        rows.append({"support": ex.id, "input": text[:50] + ("..." if len(text) > 50 else ""),
                     "target": tgt[:30] + ("..." if len(tgt) > 30 else ""),
                     "top": "  ".join(f"{n} ({s:.3f})" for n, s in lst[:5]), "routed": counts[j] if res.routes else "-"})
    report.table(rows, [report.Col("support", "support", 0, "id"), report.Col("input", "input", 2, "text"),
                        report.Col("target", "target", 3, "text"), report.Col("top", "local top 5 (cosine)", 0, "text"),
                        report.Col("routed", "queries routed", 1)],
                 title="local candidates per support example",
                 caption=(f"{len(res.routes)} queries routed by input embedding; candidate set per query = "
                          f"{len(res.global_candidates)} global + its support example's "
                          f"{len(res.local_candidates[0]) if res.local_candidates else 0} local, without duplicates"
                          + ("" if limit is None else f" (--limit {limit})")))
