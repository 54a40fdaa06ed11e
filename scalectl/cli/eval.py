"""``scalectl eval``: decode BBH queries with the base model or a composition and record every query."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..methods import names as method_names
from ..methods.config import flags as option_flags

# scalectl eval's flag for each setting the library names (method options, then the run request's fields)
SWEEPS = ("sdp_seed", "lorahub_seed")  # the seeds --seeds can sweep (a method's Method.seed_key)
FLAGS = {**option_flags(), "rank": "--rank", "max_error": "--max-error", "base_only": "--base-only", "method": "--method", "adapters": "--adapters",
         "pool": "--pool", "limit": "--limit", "batch_size": "--batch-size"}


def eval_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="bbh/TASK, a suite (bbh, bbh-8), or a comma list.")] = "bbh-8",
    base_only: Annotated[bool, typer.Option("--base-only", help="The zero-shot row: the base model alone.")] = False,
    method: Annotated[Optional[str], typer.Option("--method", "-m", help=", ".join(method_names())
                                                  + " (retrieves from --pool, searches weights on the support set).")] = None,
    view: Annotated[str, typer.Option("--view", help="Index view for retrieval (scalectl index --list).")] = "balanced",
    n_global: Annotated[int, typer.Option("--global", help="Global candidates (method.md: 20).")] = 20,
    n_local: Annotated[int, typer.Option("--local", help="Local candidates per support example (method.md: 20).")] = 20,
    embedder: Annotated[Optional[str], typer.Option("--embedder", help="Embedder of the index (default: the index's).")] = None,
    candidates: Annotated[str, typer.Option("--candidates", help="ilc and its matched rows: a cluster's candidates, local (method.md: the local 20) or union (global + local).")] = "local",
    steps: Annotated[int, typer.Option("--steps", help="Weight-search steps (method.md: 40; ilc: 30 + 10).")] = 40,
    search_rule: Annotated[str, typer.Option("--search-rule", help="Composition inside the search: lorahub (the factor rule, method.md) or linear.")] = "lorahub",
    search_loss: Annotated[str, typer.Option("--search-loss", help="Search loss: lorahub (batch means summed / examples, method.md) or mean (token mean).")] = "lorahub",
    search_seed: Annotated[int, typer.Option("--search-seed", help="Weight-search seed (method.md: 42).")] = 42,
    lorahub_k: Annotated[int, typer.Option("--lorahub-k", help="lorahub: candidates drawn (20).")] = 20,
    lorahub_seed: Annotated[int, typer.Option("--lorahub-seed", help="lorahub: seed of the random draw.")] = 0,
    retrieved: Annotated[bool, typer.Option("--retrieved", help="lorahub: the global retrieval list instead of a random draw.")] = False,
    logo_signal: Annotated[str, typer.Option("--logo-signal", help="logo: l2 (default) or entropy.")] = "l2",
    logo_k: Annotated[int, typer.Option("--logo-k", help="logo: adapters kept per query (20).")] = 20,
    logo_variant: Annotated[str, typer.Option("--logo-variant", help="logo: weighted (default), uniform or top1.")] = "weighted",
    views: Annotated[str, typer.Option("--views", help="scale: comma-separated index views.")] = "retrieval,balanced,qa",
    sdp: Annotated[float, typer.Option("--sdp", help="scale and sdp+lasrc: SDP drop rate (scale: 0 is the no-SDP control).")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="scale and sdp+lasrc: SDP seed.")] = 42,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="scale, sdp+lasrc: run once per SDP seed (42,52,133,3407); lorahub: once per draw (1,2,3,4,5).")] = None,
    scale_merger: Annotated[str, typer.Option("--scale-merger", help="scale: lasrc, or linear (the no-LASRC control).")] = "lasrc",
    random_views: Annotated[bool, typer.Option("--random-views", help="scale: random candidates per view (control).")] = False,
    adapters: Annotated[Optional[str], typer.Option("--adapters", "-a", help="Comma-separated adapter names to compose.")] = None,
    merger: Annotated[str, typer.Option("--merger", "-M", help="Merger for --adapters (scalectl compose --list).")] = "linear",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="Comma-separated weights (default 1/K each).")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Merger parameter KEY=VALUE; repeatable.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL")] = None,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model: smollm2-135m (embedded), a model dir, a hub id, or hf:ORG/NAME for the hub itself (default: the pool's base, else smollm2-135m).")] = None,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N queries of each task (file order).")] = None,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Queries per decoding batch (method.md: 10), or auto: the fastest on this device, probed on the run's longest prompts first and stored with the run.")] = "10",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, ... (default: cuda when present).")] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="A label stored with the run.")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Merge only the modules common to all adapters.")] = False,
    rank: Annotated[Optional[int], typer.Option("--rank", help="Score the best rank-R approximation of each composed update (what compose --rank writes; default: the exact update).")] = None,
    max_error: Annotated[Optional[float], typer.Option("--max-error", help="Score, per module, the smallest rank within this relative Frobenius error (compose --max-error).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Fan the (task x view x seed) jobs out over Ray: --ray alone starts a local Ray instance; or give an ADDRESS (auto, ray://host:10001). Records are written by this process.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", help="CPUs (workers) of a local Ray instance (default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate on BIG-Bench Hard: per-task normalized exact match and the macro average, one record per query."""
    from .. import report
    from ..compose import parse_weights
    from ..errors import EvalError, ParameterError
    from ..evaluate import RunRequest, run
    from ..fanout import run_specs
    from ..merge.table import parse_params
    from ..methods import MethodConfig, get
    from ..search import SearchConfig

    names = [a.strip() for a in (adapters or "").split(",") if a.strip()]
    seed_list = [None]
    if seeds:
        try:
            seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise EvalError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
        if method is None or get(method).seed_key not in SWEEPS:
            raise EvalError("--seeds sweeps the seed of --method scale or sdp+lasrc (SDP, --seed) or lorahub (its draw, "
                            "--lorahub-seed)")
    requests = []
    try:
        for sd in seed_list:
            mcfg = None
            if method is not None:
                mcfg = MethodConfig(method=method, view=view, n_global=n_global, n_local=n_local, embedder=embedder,
                                    search=SearchConfig(steps=steps, seed=search_seed), lorahub_k=lorahub_k,
                                    lorahub_seed=lorahub_seed, retrieved=retrieved, logo_signal=logo_signal,
                                    logo_k=logo_k, logo_variant=logo_variant,
                                    views=[v.strip() for v in views.split(",") if v.strip()], sdp_rate=sdp, sdp_seed=seed,
                                    scale_merger=scale_merger, random_views=random_views,
                                    merger_params=parse_params(param), candidates=candidates,
                                    search_rule=search_rule)
                mcfg.search.loss = search_loss
                if seeds:
                    setattr(mcfg, get(method).seed_key, sd)
                mcfg.check()
            requests.append(RunRequest(tasks=task, method=mcfg, base_only=base_only, adapters=names or None,
                                       weights=parse_weights(weights, len(names)) if names else None, merger=merger,
                                       params=parse_params(param), pool=pool, limit=limit, label=label, base=base,
                                       bbh_dir=bbh_dir, batch_size=batch_size, device=device,
                                       allow_partial=allow_partial, rank=rank, max_error=max_error))
        if ray is not None:
            with report.RichProgress(enabled=not as_json) as prog:
                results = run_specs(requests, address=ray, num_cpus=ray_workers, progress=prog)
        else:
            results = []
            for req in requests:
                with report.RichProgress(enabled=not as_json) as prog:
                    results.append(run(req, progress=prog))
    except ParameterError as e:  # the library names its settings; the command line names them by flag
        raise EvalError(e.say(FLAGS)) from None
    if not as_json:
        for res in results:
            report.eval_result(res)
            derived = res.config.get("derived_runs")
            if derived:
                report.info("scale aggregations from the same view records: "
                            + ", ".join(f"{k} {v}" for k, v in derived.items()) + " (oracle uses query labels)")
    if as_json:
        report.emit_json(results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results])
