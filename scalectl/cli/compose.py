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
    rank: Annotated[Optional[int], typer.Option("--rank", help="SVD rank for dense mergers (default: largest input rank).")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Base model for --merge-into-base (default: the adapters').")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Registry name of the output (default: the --out dir name).")] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register the output adapter.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output directories.")] = False,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Merge only the modules common to all adapters.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False,
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
            report.table(rows, [("merger", "merger"), ("kind", "kind"), ("params", "parameters (defaults)"),
                                ("reference", "reference")], title="mergers")
        return
    from ..compose import compose as run
    from ..compose import parse_weights
    from ..registry import Registry

    names = [a.strip() for a in (adapters or "").split(",") if a.strip()]
    if not names:
        raise MergeError("no adapters given: pass --adapters a,b,c (or --list to see the mergers)")
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
    res = run(Registry(), names, parse_weights(weights, len(names)), merger, params, out=out, merge_into=merge_into_base,
              pool=pool, rank=rank, overwrite=overwrite, allow_partial=allow_partial, allow_pickle=allow_pickle,
              base=base, register=not no_register, name=name)
    if as_json:
        report.emit_json({k: v for k, v in res.__dict__.items()})
        return
    report.compose_result(res)
