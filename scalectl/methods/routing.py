"""Routing controls over ``ilc``'s clusters (same retrieval, clusters, searched weights and support losses).

``lmix-fr`` (hard routing): the single cluster path with the lowest support loss, for every query.
``lmix-sr`` (soft routing): the clusters' composed updates mixed with ``softmax(-L / T)`` (T = 1) over their
support losses. A cluster's path is composed as ``ilc`` composes it (the factor rule).
"""


from __future__ import annotations

import math
from typing import Any

from .base import EXPORT_OPTIONS, RETRIEVAL_OPTIONS, GroupMethod
from .matched import ILC, clusters
from .plan import Group, compose_deltas, new_plan

ILC_MERGE = ILC.compose_with  # a cluster's path, composed as ilc composes it


def softmax_neg(xs: list[float], t: float) -> list[float]:
    """softmax(-x / t), shifted by the minimum for stability."""
    m = min(xs)
    e = [math.exp(-(x - m) / t) for x in xs]
    s = sum(e)
    return [v / s for v in e]


class HardRouting(GroupMethod):
    def merger(self, cfg):
        return ILC_MERGE

    def plan(self, ctx, cfg, task, queries, progress):
        plan = new_plan(task, self.name)
        _, found = clusters(ctx, cfg, plan, task, queries, progress)
        c = min(found, key=lambda c: c.search.support_loss)
        plan.groups.append(Group(f"support-{c.index}", ILC_MERGE, c.candidates, c.search.weights,
                                 list(range(len(queries))), c.search.support_loss, c.search))
        return plan


class SoftRouting(GroupMethod):
    def merger(self, cfg):
        return None  # a mixture of the clusters' factor-rule updates
    def plan(self, ctx, cfg, task, queries, progress):
        import time

        plan = new_plan(task, self.name)
        _, found = clusters(ctx, cfg, plan, task, queries, progress)
        t0 = time.perf_counter()  # the mixture is composed here, once: composition time
        omega = softmax_neg([c.search.support_loss for c in found], cfg.temperature)
        deltas: dict[str, Any] = {}
        for c, om in zip(found, omega):
            for m, d in compose_deltas(ctx, c.candidates, c.search.weights, ILC_MERGE).items():
                deltas[m] = deltas.get(m, 0) + om * d
        union = list(dict.fromkeys(n for c in found for n in c.candidates))
        plan.groups.append(Group("soft-mix", f"mix of {ILC_MERGE}", union, omega, list(range(len(queries))),
                                 deltas=deltas))
        plan.notes.append("lmix-sr weights are the softmax(-L/T) mixture over support clusters")
        plan.seconds["compose"] = round(time.perf_counter() - t0, 3)
        return plan


METHODS = [
    HardRouting("lmix-fr", "hard routing control: the lowest-loss cluster for every query",
                "SCALE-LoRA, routing controls", RETRIEVAL_OPTIONS + EXPORT_OPTIONS + ("candidates", "search_rule")),
    SoftRouting("lmix-sr", "soft routing control: clusters mixed by softmax(-L/T)", "SCALE-LoRA, routing controls",
                RETRIEVAL_OPTIONS + EXPORT_OPTIONS + ("candidates", "search_rule", "temperature")),
]
