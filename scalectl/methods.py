"""The methods ``scalectl eval --method`` runs, each end to end on one BBH task at a time.

Every method turns (pool, task support set, queries) into *groups*: a composed update and
the queries decoded with it (or, for ``logo``, per-query branch weights). The groups, with
their retrieved candidates, support ids, searched weights and support losses, are stored with
every query record.

- ``zero-shot``: the base model.
- ``lorahub``: LoRAHub's protocol: 20 candidates (random with ``--lorahub-seed``, or the
  global retrieval list with ``--retrieved``), one global weight search, LoRAHub's factor-space
  rule (``A = sum w A_n``, ``B = sum w B_n``).
- ``ilc`` (iLoRAComp): global + local retrieval; each support example j is a cluster with
  candidates ``union(global, local_j)`` (global first); one weight search per cluster on the
  support set; each query is routed to its nearest support example and decoded with that
  cluster's ``linear`` merge.
- ``lasrc``: the matched comparison: exactly ``ilc``'s retrieval, clusters, support set and
  searched weights; only the merge changes to ``lasrc``.
- ``ties``, ``dare-linear``, ``dare-ties``, ``sdp+lasrc``: the paper's merge-operator controls, matched
  the same way: ``ilc``'s retrieval, clusters and weights; only the merge changes (operator defaults:
  TIES density 0.2, DARE drop 0.5 seed 42; ``sdp+lasrc`` drops at ``--sdp`` with seed ``--seed``).
- ``lmix-fr``: hard routing control: the single cluster path with the lowest support loss,
  for every query. ``lmix-sr``: soft routing control: the clusters' composed updates mixed
  with ``softmax(-L / T)`` (T = 1) over their support losses.
- ``logo`` (LoGo, training-free): every candidate attached as its own branch; one forward pass
  of the query gives each branch's output norm (or inverse entropy) at the last token of the
  last adapted layer; the top k (20) are kept with weights ``sig_i / sum sig_j`` (or top-1, or
  uniform) and generation mixes the branch outputs with them.

Cluster searches are deterministic (seeded NGOpt over a deterministic forward), and are cached
in-process by (task, view, candidates, support, search config), so ``ilc``, ``lasrc``,
``lmix-fr`` and ``lmix-sr`` in one process search once.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import EvalError
from .progress import Progress, ensure
from .search import SearchConfig, SearchResult, search_weights

METHODS = ["zero-shot", "lorahub", "ilc", "lasrc", "lmix-fr", "lmix-sr", "ties", "dare-linear", "dare-ties", "sdp+lasrc",
           "logo", "scale"]
# Matched-merge methods: ilc's retrieval, clusters and searched weights; each routed cluster composed with this merger.
MATCHED_MERGERS = {"ilc": "linear", "lasrc": "lasrc", "ties": "ties", "dare-linear": "dare-linear",
                   "dare-ties": "dare-ties", "sdp+lasrc": "sdp+lasrc"}
DEFAULT_VIEWS = ["retrieval", "balanced", "qa"]
SCALE_AGGREGATIONS = ["support", "uniform", "best-view", "oracle"]  # oracle uses query labels
RETRIEVAL_METHODS = set(MATCHED_MERGERS) | {"lmix-fr", "lmix-sr"}
LOGO_SIGNALS = ("l2", "entropy")
LOGO_VARIANTS = ("weighted", "uniform", "top1")


@dataclass
class MethodConfig:
    method: str
    view: str = "balanced"
    n_global: int = 20
    n_local: int = 20
    embedder: str | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    lorahub_k: int = 20
    lorahub_seed: int = 0
    retrieved: bool = False  # lorahub over the global retrieval list instead of a random draw
    temperature: float = 1.0
    logo_signal: str = "l2"
    logo_k: int = 20
    logo_variant: str = "weighted"
    views: list[str] = field(default_factory=lambda: list(DEFAULT_VIEWS))  # scale
    sdp_rate: float = 0.5  # scale: SDP drop rate per view (0 = the "without SDP" control)
    sdp_seed: int = 42
    scale_merger: str = "lasrc"  # scale: "linear" is the "multi-view without LASRC" control
    random_views: bool = False  # scale: the "random sparse views" control (random candidates per cluster)
    merger_params: dict[str, Any] = field(default_factory=dict)  # e.g. LASRC's ablation switches for lasrc / scale

    def check(self) -> None:
        if self.method not in METHODS:
            import difflib

            close = difflib.get_close_matches(self.method, METHODS, n=2)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise EvalError(f"unknown method {self.method!r}; {hint}methods: {', '.join(METHODS)}")
        if self.logo_signal not in LOGO_SIGNALS:
            raise EvalError(f"--logo-signal must be one of {', '.join(LOGO_SIGNALS)}")
        if self.logo_variant not in LOGO_VARIANTS:
            raise EvalError(f"--logo-variant must be one of {', '.join(LOGO_VARIANTS)}")
        if min(self.n_global, self.n_local, self.lorahub_k, self.logo_k) < 1:
            raise EvalError("candidate counts must be at least 1")
        if not self.temperature > 0:
            raise EvalError("--temperature must be positive")
        if self.merger_params:
            from .merge.table import resolve_merger

            if self.method not in ("lasrc", "sdp+lasrc", "scale"):
                raise EvalError(f"--param sets LASRC parameters of --method lasrc, sdp+lasrc or scale, not {self.method}")
            resolve_merger("lasrc", self.merger_params)  # unknown keys or bad values fail now, before any search
        if self.method == "sdp+lasrc" and not 0 <= self.sdp_rate < 1:
            raise EvalError(f"--sdp must be in [0, 1), got {self.sdp_rate}")
        if self.method == "scale":
            if not self.views or len(set(self.views)) != len(self.views):
                raise EvalError(f"--views must name distinct views, got {self.views}")
            if not 0 <= self.sdp_rate < 1:
                raise EvalError(f"--sdp must be in [0, 1), got {self.sdp_rate}")
            if self.scale_merger not in ("lasrc", "linear"):
                raise EvalError("--scale-merger must be lasrc or linear")
        self.search.check()


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


@dataclass
class TaskPlan:
    task: str
    method: str
    groups: list[Group]
    support_ids: list[str]
    retrieval: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record_extra(self, query_index: int) -> dict[str, Any]:
        for g in self.groups:
            if query_index in g.queries:
                out: dict[str, Any] = {"path": g.label, "merger": g.merger, "candidates": g.candidates,
                                       "weights": [round(w, 6) for w in g.weights], "support_ids": self.support_ids}
                if g.support_loss is not None:
                    out["support_loss"] = round(g.support_loss, 6)
                if g.example_weights is not None:
                    row = g.example_weights[g.queries.index(query_index)]
                    out["weights"] = [round(float(w), 6) for w in row]
                return out
        return {"support_ids": self.support_ids}


_SEARCH_CACHE: dict[tuple, SearchResult] = {}
SEARCH_CACHE_ENV = "SCALECTL_SEARCH_CACHE"  # "0" turns the on-disk search cache off


def search_cache_key(reg, pool: str, names: list[str], support, cfg: SearchConfig, rule: str, base: str) -> str:
    """sha256 of everything a weight search depends on: backbone, rule, search config, each candidate's
    weights (sha256), and the support examples' text. Equal keys give equal searches (seeded, deterministic)."""
    import hashlib
    import json

    sha = {r["name"]: r.get("sha256") for r in reg.list(pool=pool)}
    blob = json.dumps({"base": base, "rule": rule, "search": sorted(vars(cfg).items()),
                       "candidates": [[n, sha.get(n)] for n in names],
                       "support": [[s["input"], str(s["target"])] for s in support]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _disk_cache_dir():
    import os

    from .paths import home

    if os.environ.get(SEARCH_CACHE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return home() / "cache" / "search"


def _cached_search(bb, reg, pool, names: list[str], support, cfg: SearchConfig, rule: str, key: tuple,
                   progress: Progress) -> SearchResult:
    """A weight search, cached in-process and on disk (``$SCALECTL_HOME/cache/search``, keyed by
    :func:`search_cache_key`), so the methods, views and fan-out workers of one sweep search each
    (candidates, support) once. A cached result keeps its original ``seconds`` and says ``cached``."""
    import json

    ck = (key, tuple(names), rule, tuple(sorted(vars(cfg).items())), bb.base.canonical)
    if ck in _SEARCH_CACHE:
        return _SEARCH_CACHE[ck]
    d = _disk_cache_dir()
    path = d / f"{search_cache_key(reg, pool, names, support, cfg, rule, bb.base.canonical)}.json" if d else None
    res = None
    if path is not None and path.exists():
        try:
            res = SearchResult.from_dict(json.loads(path.read_text()))
            res.cached = True
        except (ValueError, TypeError):
            res = None  # a damaged cache entry is searched again and rewritten
    if res is None:
        factors = [reg.load_factors(n, pool) for n in names]
        res = search_weights(bb, factors, support, cfg, rule=rule, progress=progress)
        if path is not None:
            from .fsutil import atomic_file

            with atomic_file(path) as f:
                json.dump(res.to_dict(), f)
    _SEARCH_CACHE[ck] = res
    return res


def _softmax(xs: list[float], t: float) -> list[float]:
    m = min(xs)
    e = [math.exp(-(x - m) / t) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def plan_task(reg, bb, task, pool: str, cfg: MethodConfig, queries: list[Any], progress: Progress | None = None) -> TaskPlan:
    """Retrieve, search and decide the decoding groups of one task (nothing is decoded here)."""
    prog = ensure(progress)
    support = [{"input": e.input, "target": e.target} for e in task.support]
    sup_ids = [e.id for e in task.support]
    plan = TaskPlan(task=task.name, method=cfg.method, groups=[], support_ids=sup_ids)
    all_q = list(range(len(queries)))
    names_all = [r["name"] for r in reg.list(pool=pool)]
    if not names_all and cfg.method != "zero-shot":
        raise EvalError(f"pool {pool!r} has no adapters")
    t0 = time.perf_counter()
    if cfg.method == "zero-shot":
        return plan
    retrieval = None
    if cfg.method in RETRIEVAL_METHODS or (cfg.method == "lorahub" and cfg.retrieved) or cfg.method == "logo":
        from .retrieve import retrieve

        qs = [{"id": e.id, "input": e.input} for e in queries]
        retrieval = retrieve(reg, pool, cfg.view, support, qs, n_global=cfg.n_global, n_local=cfg.n_local,
                             embedder=cfg.embedder)
        plan.retrieval = retrieval.to_dict()
        plan.notes += list(retrieval.warnings)
    plan.seconds["retrieval"] = round(time.perf_counter() - t0, 3)
    key = (task.name, cfg.view, tuple(sup_ids))
    t1 = time.perf_counter()
    if cfg.method == "lorahub":
        if cfg.retrieved:
            cands = [n for n, _ in retrieval.global_candidates][: cfg.lorahub_k]  # type: ignore[union-attr]
        else:
            rng = random.Random(cfg.lorahub_seed)
            cands = sorted(rng.sample(names_all, min(cfg.lorahub_k, len(names_all))), key=names_all.index)
            if len(names_all) < cfg.lorahub_k:
                plan.notes.append(f"pool has {len(names_all)} adapters, fewer than {cfg.lorahub_k}: using all")
        res = _cached_search(bb, reg, pool, cands, support, cfg.search, "lorahub", key, prog)
        plan.groups.append(Group("global", "lorahub", cands, res.weights, all_q, res.support_loss, res))
    elif cfg.method in RETRIEVAL_METHODS:
        routes = retrieval.routes  # type: ignore[union-attr]
        clusters = []
        for j in range(len(support)):
            cands = list(dict.fromkeys([n for n, _ in retrieval.global_candidates]  # type: ignore[union-attr]
                                       + [n for n, _ in retrieval.local_candidates[j]]))  # type: ignore[union-attr]
            res = _cached_search(bb, reg, pool, cands, support, cfg.search, "linear", key, prog)
            clusters.append((j, cands, res))
        if cfg.method in MATCHED_MERGERS:
            merger = MATCHED_MERGERS[cfg.method]
            params = dict(cfg.merger_params) if merger.endswith("lasrc") and cfg.merger_params else None
            if merger == "sdp+lasrc":
                params = {**(params or {}), "sdp.drop_rate": cfg.sdp_rate, "sdp.seed": cfg.sdp_seed}
            for j, cands, res in clusters:
                qi = [i for i in all_q if routes[i] == j]
                if qi:
                    plan.groups.append(Group(f"support-{j}", merger, cands, res.weights, qi, res.support_loss, res,
                                             params=params))
        elif cfg.method == "lmix-fr":
            j, cands, res = min(clusters, key=lambda c: c[2].support_loss)
            plan.groups.append(Group(f"support-{j}", "linear", cands, res.weights, all_q, res.support_loss, res))
        else:  # lmix-sr
            omega = _softmax([c[2].support_loss for c in clusters], cfg.temperature)
            deltas: dict[str, Any] = {}
            for (_j, cands, res), om in zip(clusters, omega):
                for m, d in _compose(reg, bb, pool, cands, res.weights, "linear").items():
                    deltas[m] = deltas.get(m, 0) + om * d
            union = list(dict.fromkeys(n for _, c, _ in clusters for n in c))
            g = Group("soft-mix", "linear", union, omega, all_q, None, None, deltas=deltas)
            plan.groups.append(g)
            plan.notes.append("lmix-sr weights are the softmax(-L/T) mixture over support clusters")
    elif cfg.method == "logo":
        cands = [n for n, _ in retrieval.global_candidates]  # type: ignore[union-attr]
        W = logo_weights(reg, bb, pool, cands, [e.input for e in queries], cfg, prog)
        plan.groups.append(Group("instance", "logo", cands, [], all_q, example_weights=W))
    plan.seconds["search"] = round(time.perf_counter() - t1, 3)
    return plan


def _compose(reg, bb, pool: str, names: list[str], weights: list[float], merger: str,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    from .compose import compose_inputs, load_inputs
    from .merge.table import resolve_merger

    inp = load_inputs(reg, names, pool=pool)
    if all(w == 0 for w in weights):
        return {m: torch.zeros_like(inp.factors[0].delta(m)) for m in inp.modules}
    comp = compose_inputs(inp, weights, resolve_merger(merger, params))
    return {m: comp.delta(m).to(torch.float32) for m in inp.modules}


def group_deltas(reg, bb, pool: str, g: Group) -> dict[str, Any]:
    if g.deltas is not None:
        return g.deltas
    return _compose(reg, bb, pool, g.candidates, g.weights, g.merger, g.params)


def plan_scale(reg, bb, task, pool: str, cfg: MethodConfig, queries: list[Any],
               progress: Progress | None = None) -> list[tuple[str, TaskPlan]]:
    """SCALE's views: per view, ilc's retrieval, clusters and searched weights, then SDP (seeded) + LASRC.

    Controls: ``sdp_rate=0`` (no SDP), ``scale_merger="linear"`` (multi-view without LASRC),
    ``random_views`` (each cluster's candidates drawn at random from the pool, same count, seeded
    by view). Nothing is decoded here."""
    import copy

    out = []
    names_all = [r["name"] for r in reg.list(pool=pool)]
    for view in cfg.views:
        vcfg = copy.copy(cfg)
        vcfg.method, vcfg.view = "lasrc", view
        if cfg.random_views:
            plan = plan_task(reg, bb, task, pool, vcfg, queries, progress)
            t_random = time.perf_counter()  # the control's own searches count as search, not as decoding
            rng = random.Random(f"{cfg.sdp_seed}:{view}")
            support = [{"input": e.input, "target": e.target} for e in task.support]
            for g in plan.groups:
                cands = rng.sample(names_all, len(g.candidates))
                res = _cached_search(bb, reg, pool, cands, support, cfg.search, "linear", ("random", task.name, view, g.label),
                                     ensure(progress))
                g.candidates, g.weights, g.search, g.support_loss = cands, res.weights, res, res.support_loss
            plan.seconds["search"] = round(plan.seconds.get("search", 0.0) + time.perf_counter() - t_random, 3)
        else:
            plan = plan_task(reg, bb, task, pool, vcfg, queries, progress)
        own = dict(cfg.merger_params) if cfg.scale_merger == "lasrc" else {}
        for g in plan.groups:
            if cfg.sdp_rate > 0:
                g.merger = f"sdp+{cfg.scale_merger}"
                g.params = {**own, "sdp.drop_rate": cfg.sdp_rate, "sdp.seed": cfg.sdp_seed}
            else:
                g.merger = cfg.scale_merger
                g.params = own or None
        out.append((view, plan))
    return out


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
        om = dict(zip(views, _softmax([losses[v] for v in views], temperature)))
    elif how == "uniform":
        om = {v: 1.0 / len(views) for v in views}
    else:
        raise EvalError(f"unknown aggregation {how!r}; use one of {', '.join(SCALE_AGGREGATIONS)}")
    score: dict[str, float] = {}
    for v in views:
        score[preds[v]] = score.get(preds[v], 0.0) + om[v]
    best = max(score.values())
    for v in views:  # ties go to the lowest-loss view's answer
        if score[preds[v]] >= best - 1e-12:
            return preds[v], v, best
    raise AssertionError("unreachable")


def generate_mixed(bb, factors, prompts: list[str], W, max_new_tokens: int, batch_size: int = 10,
                   on_batch: Any = None) -> list[str]:
    """LoGo's output-level mixture: every factor set attached as its own branch, per-prompt weights ``W`` (n, K);
    batched greedy decoding, stopping at a newline or EOS."""
    import torch

    from .backbone import generate_greedy
    from .stacked import StackedLora

    outs: list[str] = []
    with StackedLora(bb.model, factors) as st:
        for i in range(0, len(prompts), batch_size):
            st.set_example_weights(torch.as_tensor(W[i:i + batch_size]))
            outs += generate_greedy(bb, prompts[i:i + batch_size], max_new_tokens=max_new_tokens, batch_size=batch_size,
                                    stop_at_newline=True, on_batch=on_batch)
    return outs


def logo_weights(reg, bb, pool: str, names: list[str], prompts: list[str], cfg: MethodConfig,
                 progress: Progress | None = None, batch_size: int = 10):
    """LoGo's signal: one forward pass per query with every candidate as its own branch; (n, K) weights."""
    import torch

    from .backbone import format_prompts

    factors = [reg.load_factors(n, pool) for n in names]
    k = len(factors)
    mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
    probe = mods[-1]  # the last adapted module (of the last adapted layer)
    p = next(bb.model.parameters())
    A = torch.cat([f.A[probe] for f in factors]).to(p.device, torch.float32)  # (R, d_in)
    B = torch.cat([f.scaling[probe] * f.B[probe] for f in factors], dim=1).to(p.device, torch.float32)  # (d_out, R)
    seg = torch.cat([torch.full((f.A[probe].shape[0],), i) for i, f in enumerate(factors)]).to(p.device)
    captured: list[torch.Tensor] = []

    def hook(_mod, inputs):
        captured.append(inputs[0][:, -1, :].detach().float())  # last token (left padding)

    tok = bb.tokenizer
    texts = format_prompts(bb, prompts)
    out = torch.zeros(len(prompts), k)
    layer = bb.model.get_submodule(probe)
    handle = layer.register_forward_pre_hook(hook)
    prog = ensure(progress)
    prog.start("logo", f"logo: one forward pass per query ({k} branches)", len(prompts))
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        with torch.inference_mode():  # the probe forward is the base model's: branch outputs come from h
            for i in range(0, len(texts), batch_size):
                captured.clear()
                enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=bb.is_seq2seq)
                enc = {kk: v.to(bb.device) for kk, v in enc.items()}
                if bb.is_seq2seq:
                    bb.model.get_encoder()(**enc)
                else:
                    bb.model(**enc)
                h = captured[-1]  # (b, d_in)
                z = (h @ A.T)  # (b, R)
                sig = torch.zeros(h.shape[0], k)
                for j in range(k):
                    o = z[:, seg == j] @ B[:, seg == j].T  # (b, d_out): branch j's output
                    if cfg.logo_signal == "l2":
                        sig[:, j] = o.norm(dim=-1)
                    else:
                        pr = torch.softmax(o, dim=-1)
                        ent = -(pr * torch.log(pr.clamp_min(1e-12))).sum(-1)
                        sig[:, j] = 1.0 / ent.clamp_min(1e-12)
                kk = min(cfg.logo_k, k) if cfg.logo_variant != "top1" else 1
                top = sig.topk(kk, dim=-1)
                w = torch.zeros_like(sig)
                if cfg.logo_variant == "uniform":
                    w.scatter_(1, top.indices, 1.0 / kk)
                else:
                    vals = top.values / top.values.sum(-1, keepdim=True).clamp_min(1e-12)
                    w.scatter_(1, top.indices, vals)
                out[i:i + h.shape[0]] = w
                prog.advance("logo", h.shape[0])
    finally:
        handle.remove()
        tok.padding_side = old
    prog.finish("logo")
    return out


@dataclass
class TaskComposition:
    task: str
    candidates: list[str]
    weights: list[float]
    search: SearchResult
    retrieval: dict[str, Any]
    result: Any  # compose.ComposeResult


def compose_for_task(reg, task_spec: str, pool: str, merger: str = "lasrc", view: str = "balanced", n_global: int = 20,
                     embedder: str | None = None, search: SearchConfig | None = None, base: str | None = None,
                     bbh_dir: str | None = None, progress: Progress | None = None, **compose_kw: Any) -> TaskComposition:
    """``scalectl compose --task``: retrieve the global candidates for the task's support set, search their
    weights on it (LoRAHub's rule for ``lorahub``, else the linear anchor), and compose them with ``merger``."""
    from .backbone import load_backbone
    from .compose import compose
    from .evaluate import run_base
    from .retrieve import retrieve
    from .tasks import bbh

    tasks = bbh.load_tasks(task_spec, bbh_dir)
    if len(tasks) != 1:
        raise EvalError(f"--task must name one task for compose, got {len(tasks)} ({task_spec})")
    task = tasks[0]
    base_spec = run_base(reg, base, pool, required=True)  # the pool and its base, checked before anything loads
    support = [{"input": e.input, "target": e.target} for e in task.support]
    r = retrieve(reg, pool, view, support, None, n_global=n_global, n_local=1, embedder=embedder)
    names = [n for n, _ in r.global_candidates]
    prog = ensure(progress)
    prog.log("loading the base model")
    bb = load_backbone(base_spec.spec)
    factors = [reg.load_factors(n, pool) for n in names]
    rule = "lorahub" if merger == "lorahub" else "linear"
    res = search_weights(bb, factors, support, search or SearchConfig(), rule=rule, progress=prog)
    if all(w == 0 for w in res.weights):
        raise EvalError("the weight search kept every weight at 0 (the base model fits the support set best); "
                        "nothing to compose")
    out = compose(reg, names, res.weights, merger, compose_kw.pop("params", None), pool=pool, base=base_spec.spec,
                  **compose_kw)
    return TaskComposition(task=task.name, candidates=names, weights=res.weights, search=res, retrieval=r.to_dict(),
                           result=out)
