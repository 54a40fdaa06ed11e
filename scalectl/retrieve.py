"""Retrieval: global and local candidate adapters for a task from its support examples (method.md).

- **Global** candidates: the top-G adapters by cosine between the (re-normalised) mean of the
  support examples' embeddings (each embedded with the view's task-side text, see
  :mod:`scalectl.views`) and every adapter vector of the index.
- **Local** candidates: each support example j gets its own top-L list.
- **Routing**: each query goes to its nearest support example by cosine of the *input*
  embeddings (query input vs support input, whatever the view); its candidate set is the
  union of the global list and that example's local list, global first, without duplicates.

The ranking is one matrix product of the stacked (1 + k, dim) support vectors with the stored
(N, dim) index matrix, then a partial sort; support, query and index vectors are unit-norm, so
a dot product is the cosine. Ties are broken by registration order. The pure functions
(:func:`top_k`, :func:`route`, :func:`rank`) work on raw arrays (``benchmarks/retrieve.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import RetrievalError
from .index import embed_texts, index_status, load_index, resolve_recipe
from .views import LONG_PREAMBLE_WORDS, common_prefix, routing_text, strip_prefix

DEFAULT_GLOBAL = 20
DEFAULT_LOCAL = 20


# ---------------------------------------------------------------- pure functions on arrays


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def select_top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (m, N): the indices and scores of the ``min(k, N)`` largest, best first.

    Ties are broken by the lower index, so the result is deterministic."""
    scores = np.atleast_2d(scores)
    m, n = scores.shape
    k = max(0, min(int(k), n))
    if k == 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=scores.dtype)
    if k < n:
        idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        sub = np.take_along_axis(scores, idx, axis=1)
        kth = sub.min(axis=1)
        tied = (scores >= kth[:, None]).sum(axis=1) > k  # a tie at the cut: the partition's pick is arbitrary
        if tied.any():
            full = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
            idx[tied] = full
            sub[tied] = np.take_along_axis(scores[tied], full, axis=1)
    else:
        idx = np.broadcast_to(np.arange(n), (m, n)).copy()
        sub = scores.copy()
    order = np.lexsort((idx, -sub), axis=-1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(sub, order, axis=1)


def top_k(matrix: np.ndarray, vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``matrix`` (N, dim) nearest each row of ``vecs`` (m, dim) by dot product
    (cosine for unit vectors): one (m, dim) x (dim, N) product. Returns (indices (m, k), scores (m, k))."""
    return select_top(np.atleast_2d(vecs) @ matrix.T, k)


def route(query_vecs: np.ndarray, support_vecs: np.ndarray) -> np.ndarray:
    """For each query, the index of the nearest support vector (argmax dot product; first on ties)."""
    q = np.atleast_2d(query_vecs)
    if q.shape[0] == 0 or q.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(q @ np.atleast_2d(support_vecs).T, axis=1).astype(np.int64)


def union(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """``first`` then the items of ``second`` not already in it, order kept, without duplicates."""
    return list(dict.fromkeys([*first, *second]))


@dataclass
class Retrieval:
    names_in_index: int
    global_candidates: list[tuple[str, float]]  # top-G (name, cosine), best first
    local_candidates: list[list[tuple[str, float]]]  # per support example: top-L (name, cosine)
    routes: list[int]  # per query: the index of its support example
    n_global: int = DEFAULT_GLOBAL
    n_local: int = DEFAULT_LOCAL
    query_ids: list[str] = field(default_factory=list)
    support_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pool: str | None = None
    view: str | None = None
    recipe: str | None = None
    embedder: str | None = None
    dim: int | None = None
    stripped_prefix: str = ""  # the prefix every task input shared, stripped before embedding

    def candidates_for(self, query_index: int) -> list[str]:
        """A query's instance-level candidates (iLoRAComp's): the local list of the support example it is routed to.
        (The union with the global list is a method option, ``candidates="union"``.)"""
        return [n for n, _ in self.local_candidates[self.routes[query_index]]]

    def route_counts(self) -> list[int]:
        counts = [0] * len(self.local_candidates)
        for j in self.routes:
            counts[j] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        sid = self.support_ids or [str(j) for j in range(len(self.local_candidates))]
        qid = self.query_ids or [str(i) for i in range(len(self.routes))]
        counts = self.route_counts()
        return {
            "pool": self.pool, "view": self.view, "recipe": self.recipe, "embedder": self.embedder, "dim": self.dim,
            "adapters": self.names_in_index, "n_global": self.n_global, "n_local": self.n_local,
            "global": [{"name": n, "score": round(float(s), 6)} for n, s in self.global_candidates],
            "local": [{"support": sid[j], "routed_queries": counts[j],
                       "candidates": [{"name": n, "score": round(float(s), 6)} for n, s in lst]}
                      for j, lst in enumerate(self.local_candidates)],
            "routing": {sid[j]: counts[j] for j in range(len(counts))},
            "queries": [{"id": qid[i], "support": sid[j], "candidates": self.candidates_for(i)}
                        for i, j in enumerate(self.routes)],
            "warnings": list(self.warnings),
            "stripped_prefix": {"chars": len(self.stripped_prefix), "text": self.stripped_prefix},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Retrieval":
        """What :meth:`to_dict` stored (a run plan's ``retrieval``), back as a Retrieval."""
        local = d["local"]
        sid = [str(x["support"]) for x in local]
        queries = d["queries"]
        unknown = [q["id"] for q in queries if str(q["support"]) not in sid]
        if len(set(sid)) != len(sid) or unknown:
            raise RetrievalError(f"a stored retrieval routes {len(unknown)} quer(ies) to support examples it does not "
                                 "list, or lists one twice; it was not written by this version's Retrieval.to_dict")
        return cls(
            names_in_index=int(d.get("adapters") or 0),
            global_candidates=[(c["name"], float(c["score"])) for c in d["global"]],
            local_candidates=[[(c["name"], float(c["score"])) for c in x["candidates"]] for x in local],
            routes=[sid.index(str(q["support"])) for q in queries if str(q["support"]) in sid],
            n_global=int(d.get("n_global", DEFAULT_GLOBAL)), n_local=int(d.get("n_local", DEFAULT_LOCAL)),
            query_ids=[str(q["id"]) for q in queries], support_ids=sid, warnings=list(d.get("warnings") or []),
            pool=d.get("pool"), view=d.get("view"), recipe=d.get("recipe"), embedder=d.get("embedder"),
            dim=d.get("dim"), stripped_prefix=str((d.get("stripped_prefix") or {}).get("text", "")),
        )


def rank(names: Sequence[str], matrix: np.ndarray, support_vecs: np.ndarray, support_input_vecs: np.ndarray | None = None,
         query_vecs: np.ndarray | None = None, n_global: int = DEFAULT_GLOBAL, n_local: int = DEFAULT_LOCAL,
         pool_label: str = "the index") -> Retrieval:
    """Global and local candidates and routing from vectors alone (no embedding, no registry).

    ``matrix`` (N, dim) holds unit adapter vectors in ``names`` order; ``support_vecs`` (k, dim) the
    task-side support embeddings; ``support_input_vecs`` (k, dim) and ``query_vecs`` (q, dim) the
    input embeddings used for routing (``support_vecs`` when None)."""
    if n_global < 0 or n_local < 0:
        raise RetrievalError(f"--global and --local must be >= 0 (got {n_global}, {n_local})")
    matrix = np.asarray(matrix, dtype=np.float32)
    sup = _unit(support_vecs)
    if sup.shape[0] == 0:
        raise RetrievalError("the support set is empty: retrieval needs at least one labelled example")
    if matrix.ndim != 2 or matrix.shape[0] != len(names) or matrix.shape[1] != sup.shape[1]:
        raise RetrievalError(f"index matrix {matrix.shape} does not fit {len(names)} names "
                             f"and {sup.shape[1]}-dim support vectors")
    warnings = []
    n = matrix.shape[0]
    for k, what in ((n_global, "global"), (n_local, "local")):
        if k > n:
            warnings.append(f"{pool_label} has {n} adapters, fewer than the {k} {what} candidates asked for; using all {n}")
    stacked = np.concatenate([_unit(sup.mean(axis=0)), sup], axis=0)  # (1 + k, dim)
    scores = stacked @ matrix.T  # the one product over the stored matrix
    gi, gs = select_top(scores[:1], n_global)
    li, ls = select_top(scores[1:], n_local)
    routes: list[int] = []
    if query_vecs is not None and np.atleast_2d(query_vecs).shape[0] and np.asarray(query_vecs).size:
        routes = route(_unit(query_vecs), _unit(support_input_vecs if support_input_vecs is not None else sup)).tolist()
    return Retrieval(
        names_in_index=n,
        global_candidates=[(names[i], float(s)) for i, s in zip(gi[0], gs[0])],
        local_candidates=[[(names[i], float(s)) for i, s in zip(li[j], ls[j])] for j in range(sup.shape[0])],
        routes=routes, n_global=n_global, n_local=n_local, warnings=warnings,
    )


# ---------------------------------------------------------------- from the registry


def _field(ex: Any, key: str, default: Any = None) -> Any:
    if isinstance(ex, Mapping):
        return ex.get(key, default)
    return getattr(ex, key, default)


def _support(support: Sequence[Any]) -> list[dict[str, str]]:
    if not support:
        raise RetrievalError("the support set is empty: retrieval needs at least one labelled example")
    out = []
    for j, ex in enumerate(support):
        inp, tgt = _field(ex, "input"), _field(ex, "target", _field(ex, "output"))
        sid = str(_field(ex, "id") or j)
        if not isinstance(inp, str) or not inp.strip():
            raise RetrievalError(f"support example {sid} has an empty input")
        if tgt is None or not str(tgt).strip():
            raise RetrievalError(f"support example {sid} has an empty target: global candidates embed input and target")
        out.append({"id": sid, "input": inp, "target": str(tgt)})
    return out


def retrieve(reg, pool: str, view: str, support: Sequence[Any], queries: Sequence[Any] | None = None,
             n_global: int = DEFAULT_GLOBAL, n_local: int = DEFAULT_LOCAL, embedder: str | None = None,
             progress=None) -> Retrieval:
    """Candidates for a task from the ``view`` index of ``pool``.

    ``support``: {input, target} mappings (or objects such as ``tasks.bbh.Example``); ``queries``:
    {id, input} (optional; without them there is no routing). ``embedder`` None uses the
    index's; another one is refused with the command that rebuilds the index. Support, support
    inputs and queries are embedded in one call; the ranking is one matrix product."""
    sup = _support(support)
    qs = [{"id": str(_field(q, "id") or i), "input": str(_field(q, "input") or "")} for i, q in enumerate(queries or [])]
    idx = load_index(reg, pool, view, embedder)
    v = resolve_recipe(reg, pool, view)
    warnings = []
    st = index_status(reg, pool, view)
    if st["missing"] or st["changed"]:
        parts = []
        if st["missing"]:
            parts.append(f"{len(st['missing'])} adapter(s) not indexed ({', '.join(st['missing'][:5])})")
        if st["changed"]:
            parts.append(f"{len(st['changed'])} changed since indexing ({', '.join(st['changed'][:5])})")
        warnings.append(f"the {view!r} index of pool {pool!r} is stale: {'; '.join(parts)}; run {st['rebuild']}")
    # a long preamble every task input shares would crowd the part that differs out of the embedder's window
    prefix = common_prefix([s["input"] for s in sup] + [q["input"] for q in qs], min_words=LONG_PREAMBLE_WORDS)
    sup = [{**s, "input": strip_prefix(s["input"], prefix)} for s in sup]
    qs = [{**q, "input": strip_prefix(q["input"], prefix)} for q in qs]
    texts = [v.support_text(s) for s in sup] + [routing_text(s) for s in sup] + [routing_text(q) for q in qs]
    uniq = list(dict.fromkeys(texts))
    vecs = embed_texts(uniq, idx.embedder, progress=progress)
    if vecs.shape[1] != idx.dim:
        raise RetrievalError(f"embedder {idx.embedder} gives {vecs.shape[1]} dimensions, the index has {idx.dim}; "
                             f"run `scalectl index --view {view} --pool {pool} --force`")
    pos = {t: i for i, t in enumerate(uniq)}
    at = lambda ts: vecs[[pos[t] for t in ts]] if ts else np.zeros((0, idx.dim), np.float32)  # noqa: E731
    k = len(sup)
    res = rank(idx.names, idx.matrix, at(texts[:k]), at(texts[k:2 * k]), at(texts[2 * k:]) if qs else None,
               n_global, n_local, pool_label=f"pool {pool!r}")
    res.warnings[:0] = warnings
    res.query_ids = [q["id"] for q in qs]
    res.support_ids = [s["id"] for s in sup]
    res.pool, res.view, res.recipe, res.embedder, res.dim = pool, view, v.name, idx.embedder, idx.dim
    res.stripped_prefix = prefix
    return res
