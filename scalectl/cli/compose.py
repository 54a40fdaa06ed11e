"""``scalectl compose``: merge registered adapters into one servable PEFT adapter (or a merged model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def compose(
    adapters: Annotated[Optional[str], typer.Option("--adapters", "-a", help="Comma-separated adapter names.")] = None,
    merger: Annotated[str, typer.Option("--merger", "-M", help="linear, cat, lorahub, lasrc, ties, magnitude-prune, "
                                        "dare-linear, dare-ties, or sdp+MERGER.")] = "linear",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="Comma-separated weights (default 1/K each).")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Merger parameter KEY=VALUE (sdp.KEY for the sdp stage); repeatable.")] = None,
    density: Annotated[Optional[float], typer.Option("--density", help="ties / magnitude-prune density.")] = None,
    drop_rate: Annotated[Optional[float], typer.Option("--drop-rate", help="dare drop rate (sdp+X: the sdp rate).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the random masks (dare, sdp).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write a PEFT adapter directory here.")] = None,
    merge_into_base: Annotated[Optional[Path], typer.Option("--merge-into-base", help="Write a full merged model here.")] = None,
    rank: Annotated[Optional[int], typer.Option("--rank", help="Write the best rank-R approximation of the update (Eckart-Young, from the factors; default: factor mergers exact, dense ones at the largest input rank).")] = None,
    max_error: Annotated[Optional[float], typer.Option("--max-error", help="Per module, the smallest rank whose relative Frobenius error is at most E (under --rank if given).")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL")] = None,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model for --task and --merge-into-base (default: the adapters' base; the embedded copy for its hub id; hf:ORG/NAME for the hub).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Registry name of the output (default: the --out dir name).")] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register the output adapter.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output directories.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a registered adapter of the output's name that this output did not create.")] = False,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Merge only the modules common to all adapters.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Retrieve candidates for this BBH task from --pool, search "
                                                "their weights on its support set, and compose them.")] = None,
    view: Annotated[str, typer.Option("--view", help="With --task: the index view to retrieve with.")] = "balanced",
    n_global: Annotated[int, typer.Option("--global", help="With --task: candidates retrieved (method.md: 20).")] = 20,
    steps: Annotated[int, typer.Option("--steps", help="With --task: weight-search steps (method.md: 40).")] = 40,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    list_mergers: Annotated[bool, typer.Option("--list", help="List the mergers with their parameters and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compose registered adapters with a merger and write the result."""
    from .. import report
    from ..merge.table import OPERATORS, MergeError, parse_params

    if list_mergers:
        rows = [{"merger": op.name, "kind": op.kind, "params": {p.name: p.default for p in op.params},
                 "reference": op.reference, "summary": op.summary} for op in OPERATORS.values()]
        if as_json:
            report.emit_json(rows)
        else:
            report.table(rows, [report.Col("merger", "merger", 0, "id"), report.Col("kind", "kind", 2),
                                report.Col("params", "parameters (defaults)", 0, "text"),
                                report.Col("reference", "reference", 1, "text")], title="mergers")
        return
    from ..compose import compose as run
    from ..compose import parse_weights
    from ..registry import Registry

    names = [a.strip() for a in (adapters or "").split(",") if a.strip()]
    if not names and not task:
        raise MergeError("no adapters given: pass --adapters a,b,c, or --task bbh/TASK --pool P (or --list to see the mergers)")
    if names and task:
        raise MergeError("give --adapters or --task, not both")
    params = parse_params(param)
    sdp = merger.lower().startswith("sdp+")
    if density is not None:
        params["density"] = str(density)
    if drop_rate is not None:
        params["sdp.drop_rate" if sdp else "drop_rate"] = str(drop_rate)
    if seed is not None:
        params["sdp.seed" if sdp else "seed"] = str(seed)
        if sdp and merger.lower().split("+", 1)[1].startswith("dare"):
            params["seed"] = str(seed)
    if task:
        if not pool:
            raise MergeError("--task needs --pool: the pool to retrieve adapters from")
        from ..search import SearchConfig
        from ..taskcompose import compose_for_task

        out_dir = out or (Path(f"composed-{merger.replace('+', '-')}-{task.split('/')[-1]}") if merge_into_base is None else None)
        with report.RichProgress(enabled=not as_json) as prog:
            tc = compose_for_task(Registry(), task, pool, merger=merger, view=view, n_global=n_global, base=base,
                                  search=SearchConfig(steps=steps), bbh_dir=bbh_dir, progress=prog, params=params,
                                  out=out_dir, merge_into=merge_into_base, rank=rank, max_error=max_error, overwrite=overwrite,
                                  register=not no_register, name=name, replace=replace)
        if as_json:
            report.emit_json({"task": tc.task, "candidates": tc.candidates, "weights": tc.weights,
                              "support_loss": tc.search.support_loss, "objective": tc.search.objective,
                              "search_history": tc.search.history, "retrieval": tc.retrieval,
                              "result": dict(tc.result.__dict__)})
            return
        report.table([{"adapter": n, "weight": f"{w:+.4f}"} for n, w in zip(tc.candidates, tc.weights)],
                     [report.Col("adapter", "adapter", 0, "id", min_width=40), ("weight", "weight")],
                     title=f"{tc.task}: {len(tc.candidates)} retrieved candidates, searched weights",
                     caption=f"support loss {tc.search.support_loss:.4f} after {len(tc.search.history)} steps "
                             f"({tc.search.seconds:.1f} s)")
        report.compose_result(tc.result)
        return
    res = run(Registry(), names, parse_weights(weights, len(names)), merger, params, out=out, merge_into=merge_into_base,
              pool=pool, rank=rank, max_error=max_error, overwrite=overwrite, allow_partial=allow_partial, allow_pickle=allow_pickle,
              base=base, register=not no_register, name=name, replace=replace)
    if as_json:
        report.emit_json({k: v for k, v in res.__dict__.items()})
        return
    report.compose_result(res)
