"""The rows matched to iLoRAComp: one class, configured per row (like mergekit's generalized task arithmetic).

``ilc`` (iLoRAComp, noname822/iLoraComp): global + local retrieval; each support example j is a cluster
with candidates ``union(global, local_j)`` (global first); one weight search per cluster on the support
set; each query is routed to its nearest support example and decoded with that cluster's merge.

Every other row keeps exactly ``ilc``'s retrieval, clusters, support set, searched weights and routing;
only the merge of each routed cluster changes: ``lasrc`` (the matched comparison), and the operator
controls ``ties``, ``dare-linear``, ``dare-ties`` (operator defaults: TIES density 0.2, DARE drop 0.5
seed 42) and ``sdp+lasrc`` (drops at ``--sdp`` with seed ``--seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import RETRIEVAL_OPTIONS, GroupMethod
from .plan import Group, cached_search, new_plan, retrieve_for, support_dicts, timed_search


@dataclass
class Cluster:
    index: int  # the support example it is built around
    candidates: list[str]
    search: Any  # search.SearchResult


def clusters(ctx, cfg, plan, task, queries, progress, view: str | None = None):
    """iLoRAComp's clusters for one task: retrieval on ``view``, then one weight search per support example
    over ``union(global, local_j)``. Returns (retrieval, clusters); the plan records both stages' time."""
    ctx.names()
    retrieval = retrieve_for(ctx, cfg, plan, task, queries, view)
    support = support_dicts(task)
    out = []
    with timed_search(plan):
        for j in range(len(support)):
            cands = list(dict.fromkeys([n for n, _ in retrieval.global_candidates]
                                       + [n for n, _ in retrieval.local_candidates[j]]))
            out.append(Cluster(j, cands, cached_search(ctx, cands, support, cfg.search, "linear", progress)))
    return retrieval, out


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


_REF = "noname822/iLoraComp (retrieval, clusters, routing)"
METHODS = [
    Matched("ilc", "iLoRAComp: per-support-example clusters, routed, linear merge", _REF, RETRIEVAL_OPTIONS,
            compose_with="linear"),
    Matched("lasrc", "ilc's clusters and weights, merged with LASRC", _REF + "; SCALE-LoRA, LASRC",
            RETRIEVAL_OPTIONS + ("merger_params",), merger_params=True, compose_with="lasrc"),
    Matched("ties", "ilc's clusters and weights, merged with TIES", _REF + "; PEFT merge_utils.ties",
            RETRIEVAL_OPTIONS, compose_with="ties"),
    Matched("dare-linear", "ilc's clusters and weights, merged with DARE (linear)",
            _REF + "; PEFT merge_utils.dare_linear", RETRIEVAL_OPTIONS, compose_with="dare-linear"),
    Matched("dare-ties", "ilc's clusters and weights, merged with DARE-TIES", _REF + "; PEFT merge_utils.dare_ties",
            RETRIEVAL_OPTIONS, compose_with="dare-ties"),
    Matched("sdp+lasrc", "ilc's clusters and weights, SDP then LASRC", _REF + "; SCALE-LoRA, SDP + LASRC",
            RETRIEVAL_OPTIONS + ("merger_params", "sdp_rate", "sdp_seed"), seed_key="sdp_seed", merger_params=True,
            compose_with="sdp+lasrc", sdp=True),
]
