"""The rows matched to iLoRAComp: one class, configured per row (like mergekit's generalized task arithmetic).

``ilc`` (iLoRAComp, noname822/iLoraComp ``code/iLoraCamp_main.py``): each support example j is a cluster
whose candidates are its local list (the 20 adapters most similar to it; ``--candidates union`` adds the
global list first, an option); each cluster's weights are searched on the whole support set in two stages
(30 steps from 0, then 10 from stage 1's result) with LoRAHub's factor rule, and each query is routed to its
most similar support example and decoded with that cluster's factor-rule merge. (iLoRAComp's public code
sorts ascending, so it takes the 20 least similar adapters and routes to the least similar example; that
bug is documented in method.md and not copied.)

Every other row keeps exactly ``ilc``'s retrieval, clusters, support set, searched weights and routing;
only the merge of each routed cluster changes: ``ilc-linear`` (the LASRC anchor, ``linear``), ``lasrc``
(the matched comparison), and the operator controls ``ties``, ``dare-linear``, ``dare-ties`` (PEFT's
defaults here: TIES density 0.2, DARE drop 0.5 seed 42) and ``sdp+lasrc`` (drops at ``--sdp`` with seed
``--seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..search import two_stage
from .base import EXPORT_OPTIONS, RETRIEVAL_OPTIONS, GroupMethod
from .plan import Group, cached_searches, new_plan, retrieve_for, support_dicts, timed_search


@dataclass
class Cluster:
    index: int  # the support example it is built around
    candidates: list[str]
    search: Any  # search.SearchResult


def cluster_candidates(cfg, retrieval, j: int) -> list[str]:
    """Support example j's candidates: its local list, or with ``candidates="union"`` the global list then it."""
    local = [n for n, _ in retrieval.local_candidates[j]]
    if cfg.candidates == "union":
        return list(dict.fromkeys([n for n, _ in retrieval.global_candidates] + local))
    return local


def search_clusters(ctx, cfg, plan, cands: list[list[str]], support, progress):
    """The clusters' weight searches as iLoRAComp runs each (two stages, the configured rule), advanced together
    in lockstep; budget warnings go into the plan's notes."""
    stages = two_stage(cfg.search.steps)
    found = cached_searches(ctx, [(c, cfg.search_rule, stages) for c in cands], support, cfg.search, progress, plan)
    for res in found:
        if res.warning and res.warning not in plan.notes:
            plan.notes.append(res.warning)
    return found


def cluster_lists(ctx, cfg, plan, task, queries, view: str | None = None):
    """Retrieval on ``view`` and every support example's candidates: (retrieval, [(example, candidates)])."""
    ctx.names()
    retrieval = retrieve_for(ctx, cfg, plan, task, queries, view)
    return retrieval, [(j, cluster_candidates(cfg, retrieval, j)) for j in range(len(task.support))]


def clusters(ctx, cfg, plan, task, queries, progress, view: str | None = None):
    """iLoRAComp's clusters for one task: retrieval on ``view``, then one weight search per support example
    over its candidates (all in lockstep). Returns (retrieval, clusters); the plan records both stages' time."""
    retrieval, lists = cluster_lists(ctx, cfg, plan, task, queries, view)
    support = support_dicts(task)
    with timed_search(plan):
        found = search_clusters(ctx, cfg, plan, [c for _, c in lists], support, progress)
    return retrieval, [Cluster(j, c, res) for (j, c), res in zip(lists, found)]


def routed_groups(retrieval, found: list[Cluster], n_queries: int, merger: str,
                  params: dict[str, Any] | None) -> list[Group]:
    """Each cluster's group: the queries routed to its support example, merged with ``merger``."""
    groups = []
    for c in found:
        qi = [i for i in range(n_queries) if retrieval.routes[i] == c.index]
        if qi:
            groups.append(Group(f"support-{c.index}", merger, c.candidates, c.search.weights, qi,
                                c.search.support_loss, c.search, params=params))
    return groups


@dataclass
class Matched(GroupMethod):
    """A row matched to iLoRAComp: its clusters and weights, each routed cluster composed with ``compose_with``."""

    compose_with: str = "linear"
    sdp: bool = False  # the merge drops at cfg.sdp_rate with seed cfg.sdp_seed first

    def merger(self, cfg):
        return self.compose_with

    def params(self, cfg) -> dict[str, Any] | None:
        params = dict(cfg.merger_params) if self.merger_params and cfg.merger_params else None
        if self.sdp:
            params = {**(params or {}), "sdp.drop_rate": cfg.sdp_rate, "sdp.seed": cfg.sdp_seed}
        return params

    def plan(self, ctx, cfg, task, queries, progress):
        plan = new_plan(task, self.name)
        retrieval, found = clusters(ctx, cfg, plan, task, queries, progress)
        plan.groups += routed_groups(retrieval, found, len(queries), self.compose_with, self.params(cfg))
        return plan


_REF = "noname822/iLoraComp (local retrieval, clusters, two-stage factor-rule search, routing)"
ILC_OPTIONS = RETRIEVAL_OPTIONS + EXPORT_OPTIONS + ("candidates", "search_rule")
ILC = Matched("ilc", "iLoRAComp: per-support-example clusters, routed, factor-rule merge", _REF, ILC_OPTIONS,
              compose_with="lorahub")
METHODS = [
    ILC,
    Matched("ilc-linear", "ilc's clusters and weights, merged with linear (the LASRC anchor)", _REF + "; linear",
            ILC_OPTIONS, compose_with="linear"),
    Matched("lasrc", "ilc's clusters and weights, merged with LASRC", _REF + "; SCALE-LoRA, LASRC",
            ILC_OPTIONS + ("merger_params",), merger_params=True, compose_with="lasrc"),
    Matched("ties", "ilc's clusters and weights, merged with TIES", _REF + "; PEFT utils/merge_utils.py ties",
            ILC_OPTIONS, compose_with="ties"),
    Matched("dare-linear", "ilc's clusters and weights, merged with DARE (linear)",
            _REF + "; PEFT utils/merge_utils.py dare_linear", ILC_OPTIONS, compose_with="dare-linear"),
    Matched("dare-ties", "ilc's clusters and weights, merged with DARE-TIES",
            _REF + "; PEFT utils/merge_utils.py dare_ties", ILC_OPTIONS, compose_with="dare-ties"),
    Matched("sdp+lasrc", "ilc's clusters and weights, SDP then LASRC", _REF + "; SCALE-LoRA, SDP + LASRC",
            ILC_OPTIONS + ("merger_params", "sdp_rate", "sdp_seed"), seed_key="sdp_seed", merger_params=True,
            compose_with="sdp+lasrc", sdp=True),
]
