"""What every method's plan is made of, and the one way a plan is decoded.

A method turns (pool, task support set, queries) into a :class:`TaskPlan`: *groups*, each a composed
update and the queries decoded with it (or, for ``logo``, per-query branch weights). The plan's
groups, with their retrieved candidates, support ids, searched weights and support losses, are stored
with the run (:class:`scalectl.runrecords.PlanSummary`) and with each query
(:class:`scalectl.runrecords.PathRecord`).

Weight searches are deterministic (seeded NGOpt over a deterministic forward) and cached in the run's
context and on disk (``$SCALECTL_HOME/cache/search``, keyed by content), so the methods, views and
fan-out workers of one sweep search each (candidates, support) once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..progress import Progress
from ..runrecords import GroupSummary, PathRecord, PlanSummary
from ..search import SearchConfig, SearchJob, SearchResult, search_many

SEARCH_CACHE_ENV = "SCALECTL_SEARCH_CACHE"  # "0" turns the on-disk search cache off
LOCKSTEP_ENV = "SCALECTL_LOCKSTEP"  # "0": a task's searches run one after another (the same results, slower)


@dataclass
class Group:
    """One decoding path: a composed update and the query indices decoded with it."""

    label: str
    merger: str
    candidates: list[str]
    weights: list[float]
    queries: list[int]
    support_loss: float | None = None
    search: SearchResult | None = None
    deltas: dict[str, Any] | None = None  # precomputed update (lmix-sr); else composed from candidates/weights
    example_weights: Any = None  # logo: (n_queries, K) branch weights
    params: dict[str, Any] | None = None  # merger parameters (scale: the sdp stage)
    view_loss: float | None = None  # scale: support cross-entropy under this group's composed update
    geometry: list[dict[str, Any]] | None = None  # LASRC's per-block statistics of the composed update

    def summary(self) -> GroupSummary:
        return GroupSummary(label=self.label, merger=self.merger, params=self.params, candidates=self.candidates,
                            weights=[round(w, 6) for w in self.weights], queries=len(self.queries),
                            support_loss=self.support_loss, search=self.search.to_dict() if self.search else None,
                            geometry=self.geometry or None)


@dataclass
class TaskPlan:
    task: str
    method: str
    groups: list[Group]
    support_ids: list[str]
    retrieval: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def path_record(self, query_index: int) -> PathRecord:
        """What a query's record stores about its path: the group it was decoded with."""
        for g in self.groups:
            if query_index in g.queries:
                weights = [round(w, 6) for w in g.weights]
                if g.example_weights is not None:
                    weights = [round(float(w), 6) for w in g.example_weights[g.queries.index(query_index)]]
                return PathRecord(support_ids=self.support_ids, path=g.label, merger=g.merger,
                                  candidates=g.candidates, weights=weights,
                                  support_loss=None if g.support_loss is None else round(g.support_loss, 6))
        return PathRecord(support_ids=self.support_ids)

    def summary(self) -> PlanSummary:
        return PlanSummary(support_ids=self.support_ids, retrieval=self.retrieval, notes=self.notes,
                           seconds=self.seconds, groups=[g.summary() for g in self.groups])


def support_dicts(task) -> list[dict[str, Any]]:
    """A task's support set as the weight search and retrieval take it."""
    return [{"input": e.input, "target": e.target} for e in task.support]


def new_plan(task, method: str) -> TaskPlan:
    return TaskPlan(task=task.name, method=method, groups=[], support_ids=[e.id for e in task.support])


def retrieve_for(ctx, cfg, plan: TaskPlan, task, queries, view: str | None = None):
    """The candidates of ``view`` (default: the config's) for the task's support set and queries; timed as
    retrieval and stored with the plan."""
    from ..retrieve import retrieve

    t0 = time.perf_counter()
    qs = [{"id": e.id, "input": e.input} for e in queries]
    r = retrieve(ctx.reg, ctx.pool, view or cfg.view, support_dicts(task), qs, n_global=cfg.n_global,
                 n_local=cfg.n_local, embedder=cfg.embedder)
    plan.retrieval = r.to_dict()
    plan.notes += list(r.warnings)
    plan.seconds["retrieval"] = round(plan.seconds.get("retrieval", 0.0) + time.perf_counter() - t0, 3)
    return r


# --- weight searches, cached ------------------------------------------------------------------------------------


def search_cache_key(ctx, names: list[str], support, cfg: SearchConfig, rule: str, stages: list[int]) -> str:
    """sha256 of everything a weight search depends on: backbone, rule, search config, each candidate's
    weights (sha256), and the support examples' text. Equal keys give equal searches (seeded, deterministic)."""
    sha = ctx.sha256()
    blob = json.dumps({"base": ctx.bb.base.canonical, "rule": rule, "stages": stages, "search": sorted(vars(cfg).items()),
                       "candidates": [[n, sha.get(n)] for n in names],
                       "support": [[s["input"], str(s["target"])] for s in support]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def disk_cache_dir():
    from ..paths import home

    if os.environ.get(SEARCH_CACHE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return home() / "cache" / "search"


def cached_search(ctx, names: list[str], support, cfg: SearchConfig, rule: str, progress: Progress,
                  stages: list[int] | None = None, plan: "TaskPlan | None" = None) -> SearchResult:
    """One weight search over ``names`` on ``support`` (``stages``: steps per stage, default one stage), cached:
    :func:`cached_searches` with one request."""
    return cached_searches(ctx, [(names, rule, stages)], support, cfg, progress, plan)[0]


def cached_searches(ctx, requests: list[tuple[list[str], str, list[int] | None]], support, cfg: SearchConfig,
                    progress: Progress, plan: "TaskPlan | None" = None) -> list[SearchResult]:
    """Weight searches (candidates, rule, stages) on one support set, cached in the run's context and on disk;
    those not cached run together in lockstep (:func:`scalectl.search.search_many`). A cached result keeps its
    original ``seconds`` and says ``cached``; a damaged cache entry is searched again and rewritten. A search
    run ahead for this plan (:func:`prefetch_searches`) bills its seconds to ``plan`` when it is taken."""
    from ..fsutil import atomic_file

    keys = [search_cache_key(ctx, n, support, cfg, r, list(st or [cfg.steps])) for n, r, st in requests]
    d = disk_cache_dir()
    found: dict[str, SearchResult] = {}
    for key in keys:
        if key in ctx.searches or key in found:
            continue
        path = d / f"{key}.json" if d else None
        if path is not None and path.exists():
            try:
                found[key] = SearchResult.from_dict(json.loads(path.read_text()))
                found[key].cached = True
            except (ValueError, TypeError):
                pass
    todo = {k: rq for k, rq in zip(keys, requests) if k not in ctx.searches and k not in found}
    for key, res in zip(todo, _search(ctx, list(todo.values()), support, cfg, progress)):
        found[key] = res
        ctx.unbilled[key] = res.seconds
        if d is not None:
            with atomic_file(d / f"{key}.json") as f:
                json.dump(res.to_dict(), f)
    ctx.searches.update(found)
    out = []
    for key in keys:
        res = ctx.searches[key]
        if plan is not None and key in ctx.unbilled:
            plan.seconds["search"] = round(plan.seconds.get("search", 0.0) + ctx.unbilled.pop(key), 3)
        if res.warning and res.warning not in ctx.warned:
            ctx.warned.add(res.warning)
            progress.log(f"warning: {res.warning}")
        out.append(res)
    return out


def _search(ctx, requests, support, cfg: SearchConfig, progress: Progress) -> list[SearchResult]:
    """The searches of ``requests``: in lockstep, or one after another with ``SCALECTL_LOCKSTEP=0``."""
    if not requests:
        return []
    jobs = [SearchJob(ctx.factors(n), cfg, r, list(st or [cfg.steps])) for n, r, st in requests]
    if lockstep_on():
        return search_many(ctx.bb, jobs, support, progress)
    return [search_many(ctx.bb, [j], support, progress)[0] for j in jobs]


def lockstep_on() -> bool:
    return os.environ.get(LOCKSTEP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def timed_search(plan: TaskPlan):
    """A context manager that adds its block's seconds to the plan's ``search`` stage, less the seconds of the
    searches it ran (those are billed to the plan by :func:`cached_searches`)."""
    import contextlib

    @contextlib.contextmanager
    def _timed():
        t0 = time.perf_counter()
        before = plan.seconds.get("search", 0.0)
        try:
            yield
        finally:
            billed = plan.seconds.get("search", 0.0) - before
            plan.seconds["search"] = round(before + max(time.perf_counter() - t0, billed), 3)

    return _timed()


# --- composing and decoding a plan ------------------------------------------------------------------------------


GEOMETRY_KEYS = ("block", "overlap", "alpha", "guarded", "res_ratio", "retained")  # what a merge's block rows keep


def compose_deltas(ctx, names: list[str], weights: list[float], merger: str,
                   params: dict[str, Any] | None = None, notes: list[str] | None = None,
                   geometry: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The composed update of ``names`` with ``weights`` under ``merger``, per module (float32); the operator's
    warnings (e.g. TIES with negative weights) go into ``notes``, and LASRC's per-block statistics (overlap,
    alpha, whether the norm guard fired, the residual norm ratio, adapters retained) into ``geometry``."""
    import torch

    from ..compose import compose_inputs, load_inputs, scored_deltas
    from ..merge.table import resolve_merger

    inp = load_inputs(ctx, names, pool=ctx.pool)
    if all(w == 0 for w in weights):
        return {m: torch.zeros_like(inp.factors[0].delta(m)) for m in inp.modules}
    comp = compose_inputs(inp, weights, resolve_merger(merger, params))
    if notes is not None:
        notes += [w for w in comp.warnings if w not in notes]
    if geometry is not None:
        geometry += [{k: b[k] for k in GEOMETRY_KEYS if k in b} for b in comp.blocks if "alpha" in b]
    deltas, low = scored_deltas(comp, ctx.lowrank)
    if low is not None and notes is not None:
        notes.append(low.note())
    return deltas


def group_deltas(ctx, g: Group, notes: list[str] | None = None) -> dict[str, Any]:
    if g.deltas is not None:
        return g.deltas
    g.geometry = []
    return compose_deltas(ctx, g.candidates, g.weights, g.merger, g.params, notes, g.geometry)


def decode_plan(ctx, plan: TaskPlan, queries, decoding, prog: Progress, support_enc=None) -> list[str]:
    """Decode every group of a plan (its queries with its update) and time composition and decoding.

    With ``support_enc`` each composed group's support cross-entropy is measured while its update is in
    the weights (``g.view_loss``), so the update is composed once."""
    from ..backbone import generate_greedy
    from ..stacked import merged_weights

    bb = ctx.bb
    t0 = time.perf_counter()
    outs: list[str | None] = [None] * len(queries)
    compose_s = 0.0
    groups = [(g, g.queries) for g in plan.groups] if plan.groups else [(None, list(range(len(queries))))]
    advance = lambda n: prog.advance("decode", n)  # noqa: E731
    for g, qi in groups:
        prompts = [queries[i].input for i in qi]
        if g is None:
            res = generate_greedy(bb, prompts, max_new_tokens=decoding.max_new_tokens, batch_size=decoding.batch_size,
                                  stop_at_newline=True, on_batch=advance)
        elif g.example_weights is not None:  # logo: every candidate a branch, per-query weights
            from .logo import generate_mixed

            res = generate_mixed(bb, ctx.factors(g.candidates), prompts, g.example_weights, decoding.max_new_tokens,
                                 decoding.batch_size, on_batch=advance)
        else:
            tc = time.perf_counter()
            deltas = group_deltas(ctx, g, plan.notes)
            compose_s += time.perf_counter() - tc
            with merged_weights(bb.model, deltas):
                res = generate_greedy(bb, prompts, max_new_tokens=decoding.max_new_tokens,
                                      batch_size=decoding.batch_size, stop_at_newline=True, on_batch=advance)
                if support_enc is not None:
                    from ..search import support_loss

                    g.view_loss = support_loss(bb, bb.model, support_enc)
            del deltas
        for i, o in zip(qi, res):
            outs[i] = o
    plan.seconds["compose"] = round(plan.seconds.get("compose", 0.0) + compose_s, 3)
    plan.seconds["decode"] = round(time.perf_counter() - t0 - compose_s, 3)
    return [o or "" for o in outs]
