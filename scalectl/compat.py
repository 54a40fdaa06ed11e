"""Pairwise compatibility of a pool's adapters (method.md, "Compatibility (naive summation)").

For adapters i, j and each module m shared by all of them, the cosine between their updates

    c_m = <dW_i,m, dW_j,m>_F / (||dW_i,m||_F ||dW_j,m||_F),   dW = s B A,

comes from the factors alone: <s_i B_i A_i, s_j B_j A_j>_F = s_i s_j sum((B_i^T B_j) * (A_i A_j^T)),
so no d_out x d_in matrix is formed (the same Gram as LASRC's, :func:`scalectl.merge.lasrc.module_gram`).
The pair's score is the RMS cosine ``sqrt(mean_m c_m^2)``: near 0 when the updates occupy different
directions, near 1 when they repeat (or oppose) each other, which is where naive summation
(``linear`` with all weights 1) over-counts or cancels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ScalectlError


@dataclass
class Compatibility:
    names: list[str]
    rms_cosine: Any  # (K, K) numpy array, 1 on the diagonal
    mean_cosine: Any  # (K, K) signed mean over modules
    modules: int

    def pairs(self) -> list[dict[str, Any]]:
        out = []
        k = len(self.names)
        for i in range(k):
            for j in range(i + 1, k):
                out.append({"a": self.names[i], "b": self.names[j], "rms_cosine": float(self.rms_cosine[i, j]),
                            "mean_cosine": float(self.mean_cosine[i, j])})
        return sorted(out, key=lambda r: -r["rms_cosine"])


def pairwise_cosines(factors: list[Any]) -> Compatibility:
    """RMS (and signed mean) cosine between every pair of adapters over their common modules.

    Args:
        factors: :class:`scalectl.adapters.LoraFactors` of K >= 2 adapters on one base model.
    Returns:
        :class:`Compatibility` with (K, K) matrices.
    """
    import numpy as np
    import torch

    from .merge.lasrc import module_gram

    if len(factors) < 2:
        raise ScalectlError("compatibility needs at least two adapters")
    k = len(factors)
    mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
    if not mods:
        raise ScalectlError("the adapters share no module")
    sq = np.zeros((k, k))
    mean = np.zeros((k, k))
    for m in mods:
        a = torch.cat([f.A[m].float() for f in factors])  # (R, d_in)
        b = torch.cat([f.scaling[m] * f.B[m].float() for f in factors], dim=1)  # (d_out, R)
        owner = torch.cat([torch.full((f.A[m].shape[0],), i) for i, f in enumerate(factors)])
        G = module_gram(a, b, owner, k).numpy()  # (K, K)
        d = np.sqrt(np.clip(np.diag(G), 0, None))
        denom = np.outer(d, d)
        c = np.divide(G, denom, out=np.zeros_like(G), where=denom > 0)
        sq += c ** 2
        mean += c
    rms = np.sqrt(sq / len(mods))
    return Compatibility(names=[f.name for f in factors], rms_cosine=rms, mean_cosine=mean / len(mods), modules=len(mods))


# ---------------------------------------------------------------- families (a pool whose adapters carry family tags)


@dataclass(frozen=True)
class Family:
    """Where an adapter sits in a pool, read from its tags ``kind:``, ``skill:`` (one per part), ``template:``,
    ``seed:`` (what :meth:`scalectl.tasks.skills.Skill.family_tags` writes)."""

    kind: str
    skills: frozenset[str]
    template: str
    seed: str

    @classmethod
    def from_tags(cls, tags: list[str] | None) -> "Family | None":
        vals: dict[str, list[str]] = {}
        for t in tags or []:
            key, sep, v = t.partition(":")
            if sep:
                vals.setdefault(key, []).append(v)
        if not vals.get("kind") or not vals.get("skill"):
            return None
        return cls(vals["kind"][0], frozenset(vals["skill"]), (vals.get("template") or ["plain"])[0],
                   (vals.get("seed") or ["0"])[0])

    def sort_key(self) -> tuple:
        seed = (0, int(self.seed), "") if self.seed.isdigit() else (1, 0, self.seed)
        return (self.kind == "distractor", min(self.skills), len(self.skills), self.template != "plain",
                self.template, seed)


def _mixture(f: Family) -> bool:
    return f.kind == "mixture"


RELATIONS: list[tuple[str, Any]] = [  # (label, test(a, b)); the first that holds names the pair
    ("seed repeat", lambda a, b: a.skills == b.skills and a.template == b.template and a.seed != b.seed),
    ("other template", lambda a, b: a.skills == b.skills and not _mixture(a) and a.template != b.template),
    ("mixture and its part", lambda a, b: _mixture(a) != _mixture(b) and bool(a.skills & b.skills)),
    ("mixtures sharing a skill", lambda a, b: _mixture(a) and _mixture(b) and bool(a.skills & b.skills)),
    ("with a distractor", lambda a, b: "distractor" in (a.kind, b.kind) and not a.skills & b.skills),
    ("unrelated skills", lambda a, b: not a.skills & b.skills),
]


def relation(a: Family, b: Family) -> str:
    return next((label for label, test in RELATIONS if test(a, b)), "other")


def relation_summary(names: list[str], families: dict[str, Family], rms: Any) -> list[dict[str, Any]]:
    """Per relation (:data:`RELATIONS` order): pairs, and the mean, median and max RMS cosine over them."""
    import numpy as np

    by: dict[str, list[float]] = {}
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            by.setdefault(relation(families[a], families[names[j]]), []).append(float(rms[i][j]))
    order = [label for label, _ in RELATIONS] + ["other"]
    return [{"relation": r, "pairs": len(by[r]), "mean": float(np.mean(by[r])), "median": float(np.median(by[r])),
             "max": float(np.max(by[r]))} for r in order if r in by]
