"""``lorahub``: LoRAHub's protocol (sail-sg/lorahub).

20 candidates (a random draw with ``--lorahub-seed``, kept in draw order, or the global retrieval list with
``--retrieved``), one weight search of 40 steps on the support set (``lorahub/algorithm.py``,
``lorahub_learning``), LoRAHub's factor-space rule (``A = sum w A_n``, ``B = sum w B_n``) inside the search and
for the merge. LoRAHub reports the mean of 5 draws: ``scalectl eval --method lorahub --seeds 1,2,3,4,5`` runs
them and ``scalectl audit seeds --method lorahub`` averages them.
"""

from __future__ import annotations

import random

from ..search import one_stage
from .base import EXPORT_OPTIONS, RETRIEVAL_OPTIONS, GroupMethod
from .plan import Group, cached_search, new_plan, retrieve_for, support_dicts, timed_search


class LoraHub(GroupMethod):
    def index_views(self, cfg):
        return [cfg.view] if cfg.retrieved else []

    def merger(self, cfg):
        return "lorahub"

    def candidates(self, ctx, cfg, plan, task, queries) -> list[str]:
        names = ctx.candidates()
        if cfg.retrieved:
            return [n for n, _ in retrieve_for(ctx, cfg, plan, task, queries).global_candidates][: cfg.lorahub_k]
        rng = random.Random(cfg.lorahub_seed)
        cands = rng.sample(names, min(cfg.lorahub_k, len(names)))  # draw order: the search probes them in it
        if len(names) < cfg.lorahub_k:
            plan.notes.append(f"pool has {len(names)} adapters, fewer than {cfg.lorahub_k}: using all")
        return cands

    def plan(self, ctx, cfg, task, queries, progress):
        plan = new_plan(task, self.name)
        plan.seconds["retrieval"] = 0.0
        cands = self.candidates(ctx, cfg, plan, task, queries)
        with timed_search(plan):
            res = cached_search(ctx, cands, support_dicts(task), cfg.search, "lorahub", progress,
                                one_stage(cfg.search.steps))
        if res.warning:
            plan.notes.append(res.warning)
        plan.groups.append(Group("global", "lorahub", cands, res.weights, list(range(len(queries))),
                                 res.support_loss, res))
        return plan


METHODS = [LoraHub("lorahub", "LoRAHub: one weight search over 20 candidates, factor-space merge",
                   "sail-sg/lorahub", RETRIEVAL_OPTIONS + EXPORT_OPTIONS + ("lorahub_k", "lorahub_seed", "retrieved"),
                   seed_key="lorahub_seed")]
