"""``scalectl demo``: the main job on the embedded default."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def demo(
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model: smollm2-135m (embedded), a model dir, a hub id, or hf:ORG/NAME for the hub itself (default: the pool's base, else smollm2-135m).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Evaluate every query (default: the first 60 per task).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Queries per task (default 60).")] = None,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    uniform: Annotated[bool, typer.Option("--uniform", help="Skip retrieval and search: the whole pool, weights 1/K.")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Weight-search steps per support cluster (method.md: 40).")] = 40,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register the demo skill pool, retrieve and compose (ilc linear, lasrc) for three BBH tasks, evaluate, show flips."""
    from .. import report
    from ..demo import DEMO_MERGERS, run_demo

    with report.RichProgress(enabled=not as_json) as prog:
        res = run_demo(base, full=full, limit=limit, bbh_dir=bbh_dir, uniform=uniform, steps=steps, progress=prog)
    if as_json:
        report.emit_json(res)
        return
    for r in res["registered"]:
        for w in r["warnings"]:
            report.warn(f"{r['manifest']}: {w}")
    report.demo_result(res, DEMO_MERGERS)
