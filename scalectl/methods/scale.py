"""``scale`` (SCALE-LoRA): several index views of ``ilc``'s protocol, each SDP + LASRC, answers combined.

Per view: ilc's retrieval (on that view's index), clusters and searched weights, then each routed cluster
composed with SDP (seeded) + LASRC; every query decoded on every view. The view's support loss ``L_v`` is
the mean support cross-entropy under its composed states. A query's answer is the normalized answer with
the most weight ``omega = softmax(-L / T)`` among its views' answers (ties: the lowest-loss view's).

Controls (each a setting of this one method): ``sdp_rate=0`` (no SDP), ``scale_merger="linear"``
(multi-view without LASRC), ``random_views`` (each cluster's candidates drawn at random from the pool,
same count, seeded by view). The other aggregations (uniform, best-view, and the label-using oracle)
are derived from a finished run's view records without decoding again (:meth:`Scale.derive`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ..errors import EvalError
from ..runrecords import QueryRecord, ViewAnswer, ViewsPlanSummary, ViewsRecord
from ..search import two_stage
from ..tasks import bbh
from .base import EXPORT_OPTIONS, RETRIEVAL_OPTIONS, Method, TaskOutput, UnitOutput
from .matched import Cluster, cluster_lists, routed_groups, search_clusters
from .plan import cached_searches, decode_plan, lockstep_on, new_plan, support_dicts, timed_search
from .routing import softmax_neg

AGGREGATIONS = ("support", "uniform", "best-view", "oracle")  # oracle uses query labels
DERIVED = ("uniform", "best-view", "oracle")  # computed from a run's view records (scale-<how>)


def aggregate(preds: dict[str, str], losses: dict[str, float], how: str, temperature: float = 1.0,
              oracle_view: str | None = None) -> tuple[str, str, float]:
    """One query's final normalized answer from its views' normalized answers (method.md, SCALE).

    ``support``: omega = softmax(-L/T); ``uniform``: omega = 1/V; score(a) = sum_v omega_v [pred_v = a],
    argmax, ties to the answer of the lowest-loss view. ``best-view``: the lowest-loss view's answer.
    ``oracle``: ``oracle_view``'s answer (chosen with labels). Returns (answer, view giving it, agreement score).
    """
    views = sorted(preds, key=lambda v: (losses[v], v))  # lowest loss first
    if how == "best-view":
        return preds[views[0]], views[0], 1.0
    if how == "oracle":
        if oracle_view is None:
            raise EvalError("oracle aggregation needs the oracle view")
        return preds[oracle_view], oracle_view, 1.0
    if how == "support":
        om = dict(zip(views, softmax_neg([losses[v] for v in views], temperature)))
    elif how == "uniform":
        om = {v: 1.0 / len(views) for v in views}
    else:
        raise EvalError(f"unknown aggregation {how!r}; use one of {', '.join(AGGREGATIONS)}")
    score: dict[str, float] = {}
    for v in views:
        score[preds[v]] = score.get(preds[v], 0.0) + om[v]
    best = max(score.values())
    for v in views:  # ties go to the lowest-loss view's answer
        if score[preds[v]] >= best - 1e-12:
            return preds[v], v, best
    raise AssertionError("unreachable")


def oracle_views(by_task: dict[str, list[QueryRecord]], names: list[str] | None = None) -> dict[str, str]:
    """Per task, the single view (of ``names``, default: the records' views) with the best query accuracy; ties
    go to the lower support loss. Uses labels: the oracle row and ``audit views`` both choose with it."""
    out = {}
    for t, rs in by_task.items():
        views = list(names or rs[0].views.views)  # type: ignore[union-attr]
        acc = {v: sum(r.views.view_correct(v) for r in rs) / len(rs) for v in views}  # type: ignore[union-attr]
        losses = rs[0].views.view_losses or {}  # type: ignore[union-attr]
        out[t] = max(views, key=lambda v: (acc[v], -losses.get(v, 0.0)))
    return out


@dataclass
class Scale(Method):
    def index_views(self, cfg):
        return list(cfg.views)

    def merger(self, cfg):
        sm = cfg.get("scale_merger", "lasrc")
        return f"sdp+{sm}" if float(cfg.get("sdp_rate", 0.5) or 0) > 0 else sm

    def unit_views(self, cfg):
        return list(cfg.views)

    # -- one view

    def view_lists(self, ctx, cfg, plan, task, queries, view):
        """A view's retrieval and its clusters' candidates: ilc's, or for the random-views control each routed
        cluster's candidates drawn at random from the pool (same count, seeded by view)."""
        retrieval, lists = cluster_lists(ctx, cfg, plan, task, queries, view)
        if not cfg.random_views:
            return retrieval, lists
        names = ctx.candidates()
        rng = random.Random(f"{cfg.sdp_seed}:{view}")
        return retrieval, [(j, rng.sample(names, len(c))) for j, c in lists if j in retrieval.routes]

    def prefetch(self, ctx, cfg, task, queries, progress):
        """Every view's cluster searches of one task, run together in lockstep before the views are computed
        (each view then takes its searches from the run's cache, with their share of the seconds)."""
        if not lockstep_on():
            return
        scratch = new_plan(task, self.name)
        requests = []
        for v in cfg.views:
            _, lists = self.view_lists(ctx, cfg, scratch, task, queries, v)
            requests += [(c, cfg.search_rule, two_stage(cfg.search.steps)) for _, c in lists]
        cached_searches(ctx, requests, support_dicts(task), cfg.search, progress)

    def view_plan(self, ctx, cfg, task, queries, view, progress):
        plan = new_plan(task, self.name)
        retrieval, lists = self.view_lists(ctx, cfg, plan, task, queries, view)
        with timed_search(plan):
            searched = search_clusters(ctx, cfg, plan, [c for _, c in lists], support_dicts(task), progress)
        found = [Cluster(j, c, res) for (j, c), res in zip(lists, searched)]
        own = dict(cfg.merger_params) if cfg.scale_merger == "lasrc" else {}
        if cfg.sdp_rate > 0:
            merger, params = f"sdp+{cfg.scale_merger}", {**own, "sdp.drop_rate": cfg.sdp_rate, "sdp.seed": cfg.sdp_seed}
        else:
            merger, params = cfg.scale_merger, own or None
        plan.groups += routed_groups(retrieval, found, len(queries), merger, params)
        return plan

    def compute(self, ctx, cfg, task, queries, view, decoding, progress):
        from ..search import encode_support

        plan = self.view_plan(ctx, cfg, task, queries, view, progress)
        enc = encode_support(ctx.bb, task.support)
        outs = decode_plan(ctx, plan, queries, decoding, progress, support_enc=enc)
        ls = [g.view_loss for g in plan.groups]
        loss = sum(ls) / len(ls)
        summary = plan.summary()
        summary.support_loss, summary.cluster_losses = loss, ls
        return UnitOutput(outs, None, summary, loss)

    # -- the views combined

    def combine(self, cfg, task, queries, outputs):
        per_view = {v: outputs[v].outputs for v in cfg.views}
        losses = {v: outputs[v].loss for v in cfg.views}
        extras, final = [], []
        for i, q in enumerate(queries):
            preds = {v: bbh.prediction(per_view[v][i]) for v in per_view}
            norm = {v: bbh.normalize(p) for v, p in preds.items()}
            _, view, agree = aggregate(norm, losses, "support", cfg.temperature)
            final.append(per_view[view][i])
            extras.append(ViewsRecord(
                aggregation="support", chosen_view=view, agreement=round(agree, 6),
                view_losses={v: round(x, 6) for v, x in losses.items()},
                views={v: ViewAnswer(per_view[v][i], norm[v], bbh.exact_match(preds[v], q.target)) for v in per_view},
                support_ids=[e.id for e in task.support]))
        plan = ViewsPlanSummary(views={v: outputs[v].plan for v in cfg.views}, view_losses=losses,
                                paths_per_query=len(per_view))
        return TaskOutput(final, extras, plan, sum(o.seconds for o in outputs.values()))

    # -- the other aggregations, from the view records

    def derive(self, reg, run_id, aggregations=None):
        """Runs for SCALE's other aggregations, computed from the view records of ``run_id`` without decoding.

        ``oracle`` (per task, the single view with the best query accuracy) uses query labels and is marked as
        such in its method name (``scale-oracle``), config and every record."""
        from ..runrecords import load_records, load_run

        run, recs = load_run(reg, run_id), load_records(reg, run_id)
        if run.method != self.name or not recs or recs[0].views is None:
            raise EvalError(f"run {run_id} is not a SCALE run with view records")
        return {how: _derive_run(reg, run, recs, how) for how in (aggregations or DERIVED)}


def _derive_run(reg, run, recs: list[QueryRecord], how: str) -> str:
    """One derived run (``scale-<how>``): every query re-answered by ``how`` from its stored view answers."""
    from ..runrecords import RunSummary, TaskScoreRecord

    by_task: dict[str, list[QueryRecord]] = {}
    for r in recs:
        by_task.setdefault(r.task, []).append(r)
    oracle = oracle_views(by_task)
    uses_labels = how == "oracle"
    method = f"scale-{how}"
    cfg = {**run.config.to_dict(), "method": method, "derived_from": run.id, "aggregation": how,
           "uses_labels": uses_labels}
    new_id = reg.create_run("eval", method, cfg, base_model=run.base_model, label=run.label)
    new_recs, tasks = [], []
    for t, rs in by_task.items():
        option_task = bbh.is_option_task(r.reference for r in rs)
        mine = []
        for r in rs:
            x = r.views
            norm = {v: d.normalized for v, d in x.views.items()}  # type: ignore[union-attr]
            _, view, agree = aggregate(norm, x.view_losses, how, oracle_view=oracle[t])  # type: ignore[union-attr]
            extra = ViewsRecord(**{**vars(x), "aggregation": how, "chosen_view": view, "agreement": round(agree, 6),
                                   "uses_labels": uses_labels, "oracle_view": oracle[t] if uses_labels else None})
            mine.append(QueryRecord.scored(r.task, r.query_id, r.idx, r.input_hash, r.reference,
                                           x.views[view].output, option_task, extra))  # type: ignore[union-attr]
        c = sum(x.correct for x in mine)
        tasks.append(TaskScoreRecord(task=t, n=len(rs), correct=c, accuracy=c / len(rs),
                                     extracted_accuracy=sum(bool(x.extracted_correct) for x in mine) / len(rs)))
        new_recs += mine
    reg.add_records(new_id, [r.to_dict() for r in new_recs])
    summary = RunSummary(tasks=tasks, macro_accuracy=sum(x.accuracy for x in tasks) / len(tasks),
                         macro_extracted=sum(x.extracted_accuracy for x in tasks) / len(tasks),
                         path_cost=dataclasses.replace(run.path_cost, note="aggregated from the scale run's view records"),
                         n_queries=len(new_recs), derived_from=run.id, uses_labels=uses_labels, label=run.label)
    if uses_labels:
        summary.oracle_views = oracle
        summary.any_view_correct = sum(any(d.correct for d in r.views.views.values())  # type: ignore[union-attr]
                                       for r in recs) / len(recs)
    reg.finish_run(new_id, "done", summary=summary.to_dict())
    return new_id


METHODS = [Scale("scale", "SCALE-LoRA: multi-view SDP + LASRC, answers weighted by support loss",
                 "SCALE-LoRA (seeds/), method.md SCALE",
                 RETRIEVAL_OPTIONS + EXPORT_OPTIONS + ("candidates", "search_rule", "views", "sdp_rate", "sdp_seed",
                                                       "scale_merger", "random_views", "merger_params", "temperature"),
                 seed_key="sdp_seed", merger_params=True)]
