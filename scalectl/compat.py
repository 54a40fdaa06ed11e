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
