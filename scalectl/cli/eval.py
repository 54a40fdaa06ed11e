"""``scalectl eval``: decode BBH queries with the base model or a composition and record every query."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def eval_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="bbh/TASK, a suite (bbh, bbh-8), or a comma list.")] = "bbh-8",
    base_only: Annotated[bool, typer.Option("--base-only", help="The zero-shot row: the base model alone.")] = False,
    adapters: Annotated[Optional[str], typer.Option("--adapters", "-a", help="Comma-separated adapter names to compose.")] = None,
    merger: Annotated[str, typer.Option("--merger", "-M", help="Merger for --adapters (scalectl compose --list).")] = "linear",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="Comma-separated weights (default 1/K each).")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Merger parameter KEY=VALUE; repeatable.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL")] = None,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model (default: smollm2-135m).")] = None,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N queries of each task (file order).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Queries per decoding batch (method.md: 10).")] = 10,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, ... (default: cuda when present).")] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="A label stored with the run.")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Merge only the modules common to all adapters.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate on BIG-Bench Hard: per-task normalized exact match and the macro average, one record per query."""
    from .. import report
    from ..compose import parse_weights
    from ..evaluate import run_eval
    from ..merge.table import parse_params

    names = [a.strip() for a in (adapters or "").split(",") if a.strip()]
    with report.RichProgress(enabled=not as_json) as prog:
        res = run_eval(task, base=base, adapters=names or None, weights=parse_weights(weights, len(names)) if names else None,
                       merger=merger, params=parse_params(param), pool=pool, base_only=base_only, bbh_dir=bbh_dir,
                       limit=limit, batch_size=batch_size, device=device, label=label, allow_partial=allow_partial,
                       progress=prog)
    if as_json:
        report.emit_json(res.to_dict())
        return
    report.eval_result(res)
