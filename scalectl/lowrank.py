"""Low-rank export: the best rank-k approximation of a composed update (Eckart-Young), per module.

A factor composition's update is ``B @ A`` with ``B`` (d_out, R) and ``A`` (R, d_in), R the sum of the
inputs' ranks (linear, LASRC, PEFT ``cat``) or one rank (LoRAHub's factor rule). Its SVD comes from the factors
alone, no d_out x d_in matrix formed. When ``A``'s rows are well-conditioned, from the R x R Grams in float64
(:class:`GramSpectrum`: Cholesky ``A A.T = L L.T``, then the eigendecomposition of ``L.T (B.T B) L``); else
(``A`` rank deficient or nearly so) thin QR of ``B`` and of ``A.T`` (``B = Qb Rb``, ``A.T = Qa Ra``) and the SVD
of the small core ``Rb Ra.T = U S V.T`` (R x R), so ``B A = (Qb U) S (Qa V).T``. Keeping the
top k singular triplets is the best rank-k approximation in Frobenius norm, and the relative error is
``sqrt(sum S[k:]^2 / sum S^2)``. A dense update (TIES, DARE) takes the SVD of the matrix itself.

The rank is per module: ``rank`` caps it; ``max_error`` picks the smallest rank whose relative error is at most
that (under the cap); a module's rank never exceeds its numerical rank (the count of singular values above
float32 round-off of the largest one). Inputs of any float dtype are computed in float32 (float64 on the Gram
route) and written in float32.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ParameterError

if TYPE_CHECKING:
    import torch


def rank_problem(v: Any) -> str | None:
    """What is wrong with a ``rank`` setting (None: fine), for every place that takes one."""
    return None if v is None or v >= 1 else f"must be at least 1, got {v}"


def max_error_problem(v: Any) -> str | None:
    return None if v is None or 0 <= v < 1 else f"must be in [0, 1), got {v}"  # NaN fails too


@dataclass(frozen=True)
class LowRankSpec:
    """What to keep: at most ``rank`` per module, and/or the smallest rank within ``max_error``."""

    rank: int | None = None
    max_error: float | None = None

    def check(self) -> "LowRankSpec":
        for name, problem in (("rank", rank_problem(self.rank)), ("max_error", max_error_problem(self.max_error))):
            if problem:
                raise ParameterError("{0} " + problem.replace("{", "{{").replace("}", "}}"), name)
        return self

    @property
    def active(self) -> bool:
        return self.rank is not None or self.max_error is not None

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "max_error": self.max_error}


@dataclass
class LowRank:
    """The exported factors per module (``A`` (k, d_in), ``B`` (d_out, k), scaling folded into ``B``), the rank
    kept and the relative Frobenius error of each module."""

    spec: LowRankSpec
    A: dict[str, "torch.Tensor"] = field(default_factory=dict)
    B: dict[str, "torch.Tensor"] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)

    def delta(self, module: str) -> "torch.Tensor":
        return self.B[module] @ self.A[module]

    def summary(self) -> dict[str, Any]:
        """What a record and the printed summary carry: max/mean error and the rank range (per module below)."""
        errs = list(self.errors.values())
        ranks = list(self.ranks.values())
        return {"max_rel_error": round(max(errs, default=0.0), 6),
                "mean_rel_error": round(sum(errs) / len(errs), 6) if errs else 0.0,
                "rank_min": min(ranks, default=0), "rank_max": max(ranks, default=0),
                "rank_total": sum(ranks)}

    def record(self) -> dict[str, Any]:
        """What was asked and what was kept, as results and provenance store it."""
        return {**self.spec.to_dict(), **self.summary()}

    def note(self) -> str:
        """One line on what a scored approximation kept (stored with a run's plan and printed)."""
        s = self.summary()
        asked = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in self.spec.to_dict().items() if v is not None)
        ranks = f"rank {s['rank_max']}" if s["rank_min"] == s["rank_max"] else f"ranks {s['rank_min']}-{s['rank_max']}"
        return (f"scored the low-rank approximation ({asked}): {ranks}, relative error max {s['max_rel_error']:.3g} "
                f"mean {s['mean_rel_error']:.3g}")


@dataclass
class Spectrum:
    """One module's SVD held factored: ``update = (left @ U) diag(S) (Vh @ right)`` (``left``/``right`` None: the
    identity). The factor route keeps ``Qb`` and ``Qa.T`` aside, so only the k kept directions are ever multiplied
    out."""

    U: "torch.Tensor"
    S: "torch.Tensor"
    Vh: "torch.Tensor"
    left: "torch.Tensor | None" = None
    right: "torch.Tensor | None" = None

    def top(self, k: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(A (k, d_in), B (d_out, k)) of the top k triplets, the singular values folded into ``B``."""
        u, vh = self.U[:, :k] * self.S[:k], self.Vh[:k]
        B = u if self.left is None else self.left @ u
        A = vh if self.right is None else vh @ self.right
        return A.contiguous(), B.contiguous()

    @property
    def shape(self) -> tuple[int, int]:
        """(d_out, d_in) of the update."""
        return (self.U.shape[0] if self.left is None else self.left.shape[0],
                self.Vh.shape[-1] if self.right is None else self.right.shape[-1])


@dataclass
class GramSpectrum:
    """One module's SVD from its R x R Gram matrices, float64: ``A A.T = L L.T`` (Cholesky) and
    ``L.T (B.T B) L = W diag(S^2) W.T`` (eigendecomposition). Then ``L^-1 A`` has orthonormal rows and
    ``B @ A = (B L W) (L^-T W).T A`` is the SVD, so the top k are ``B_k = B (L W)[:, :k]`` (``U_k S_k``) and
    ``A_k = (L^-T W)[:, :k].T A`` (``V_k.T``); only those k directions are ever multiplied out."""

    S: "torch.Tensor"
    B: "torch.Tensor"  # (d_out, R) float64
    A: "torch.Tensor"  # (R, d_in) float64
    L: "torch.Tensor"  # (R, R) lower triangular
    W: "torch.Tensor"  # (R, R) eigenvectors, columns in the order of S

    def top(self, k: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(A (k, d_in), B (d_out, k)) of the top k triplets, the singular values folded into ``B``; float32."""
        import torch

        W = self.W[:, :k]
        a_mix = torch.linalg.solve_triangular(self.L.T, W, upper=True)  # (R, k) L^-T W_k
        return ((a_mix.T @ self.A).to(torch.float32).contiguous(),
                (self.B @ (self.L @ W)).to(torch.float32).contiguous())

    @property
    def shape(self) -> tuple[int, int]:
        return self.B.shape[0], self.A.shape[1]


# Cholesky's smallest pivot against its largest, below which the QR route is taken: the Gram route's loss of
# orthogonality grows as float64 round-off times cond(A)^2, so at this ratio (cond(A) about 1e4) it stays near
# 1e-8, under the float32 the result is written in.
GRAM_PIVOT_RATIO = 1e-4


def factor_spectrum(B: "torch.Tensor", A: "torch.Tensor") -> "Spectrum | GramSpectrum":
    """The SVD of ``B @ A`` from the factors: from their R x R Grams (:class:`GramSpectrum`, about half the time
    of QR) when ``A``'s rows are well-conditioned; else thin QR of each and the SVD of the (R x R) core (rank
    deficient ``A``, such as R > d_in or one adapter twice)."""
    import torch

    if A.shape[0] > 0:
        a, b = A.to(torch.float64), B.to(torch.float64)
        L, info = torch.linalg.cholesky_ex(a @ a.T)  # (R, R)
        d = L.diagonal()
        if int(info) == 0 and float(d.min()) > GRAM_PIVOT_RATIO * float(d.max()):
            X = L.T @ (b.T @ b) @ L  # (R, R): the Gram of B L
            lam, W = torch.linalg.eigh((X + X.T) / 2)  # ascending
            lam, W = lam.flip(0), W.flip(1)
            return GramSpectrum(lam.clamp(min=0).sqrt(), b, a, L, W)
    return qr_spectrum(B, A)


def qr_spectrum(B: "torch.Tensor", A: "torch.Tensor") -> Spectrum:
    """The SVD of ``B @ A`` from the factors: thin QR of each, SVD of the (R x R) core."""
    import torch

    Qb, Rb = torch.linalg.qr(B.to(torch.float32), mode="reduced")  # (d_out, p), (p, R)
    Qa, Ra = torch.linalg.qr(A.to(torch.float32).T, mode="reduced")  # (d_in, q), (q, R)
    U, S, Vh = torch.linalg.svd(Rb @ Ra.T, full_matrices=False)  # (p, q) core
    return Spectrum(U, S, Vh, left=Qb, right=Qa.T)


def dense_spectrum(delta: "torch.Tensor") -> Spectrum:
    import torch

    return Spectrum(*torch.linalg.svd(delta.to(torch.float32), full_matrices=False))


def factor_svd(B: "torch.Tensor", A: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """``U, S, Vh`` (float32) with ``B @ A = U diag(S) Vh`` from the factors (:func:`factor_spectrum`)."""
    import torch

    sp = factor_spectrum(B, A)
    k = sp.S.numel()
    A_k, B_k = sp.top(k)
    S = sp.S.to(torch.float32)
    return B_k / torch.where(S > 0, S, 1.0), S, A_k


def numerical_rank(S: "torch.Tensor") -> int:
    """Singular values above float32 round-off of the largest (what a factor of that rank can carry)."""
    if S.numel() == 0 or float(S[0]) == 0.0:
        return 0
    tol = float(S[0]) * max(S.numel(), 1) * 1.2e-7
    return int((S > tol).sum())


def tail_errors(S: "torch.Tensor") -> list[float]:
    """``err[k]``: the relative Frobenius error of keeping the top k singular values, k = 0..len(S)."""
    sq = [float(s) ** 2 for s in S]
    total = sum(sq)
    if total == 0:
        return [0.0] * (len(sq) + 1)
    out, tail = [], total
    for s2 in sq:
        out.append(math.sqrt(max(tail, 0.0) / total))
        tail -= s2
    out.append(0.0)
    return out


def choose_rank(S: "torch.Tensor", spec: LowRankSpec) -> tuple[int, float]:
    """(rank, relative error) for one module's singular values under ``spec`` (at least 1: PEFT needs r >= 1)."""
    errs = tail_errors(S)
    cap = max(1, numerical_rank(S))
    if spec.rank is not None:
        cap = min(cap, spec.rank)
    k = cap
    if spec.max_error is not None:
        k = next((i for i in range(1, cap + 1) if errs[i] <= spec.max_error), cap)
    k = min(k, S.numel()) if S.numel() else 1
    return k, errs[k] if k < len(errs) else 0.0


def truncate(sp: Spectrum, spec: LowRankSpec) -> tuple["torch.Tensor", "torch.Tensor", int, float]:
    """(A (k, d_in), B (d_out, k), k, error) of one module under ``spec``."""
    import torch

    k, err = choose_rank(sp.S, spec)
    if sp.S.numel() == 0:  # an empty module: one zero direction
        d_out, d_in = sp.shape
        return (torch.zeros(1, d_in), torch.zeros(d_out, 1), 1, 0.0)
    A, B = sp.top(k)
    return A, B, k, err


@contextmanager
def _module_workers():
    """A pool of threads, one per intra-op thread, each running its modules' LAPACK calls single-threaded: the
    per-module QRs and SVDs are too small to gain from two threads each (a 1024 x 320 QR took 24 ms with two
    threads and 13 ms with one on the 2-core development machine), but two modules at once do."""
    import torch

    n = max(1, torch.get_num_threads())
    if n == 1:
        yield map
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n, initializer=torch.set_num_threads, initargs=(1,)) as ex:
            yield ex.map
    finally:
        torch.set_num_threads(n)


def compress(factors: dict[str, tuple["torch.Tensor", "torch.Tensor"]] | None,
             dense: dict[str, "torch.Tensor"] | None, spec: LowRankSpec) -> LowRank:
    """Each module's best approximation under ``spec``: from ``factors`` (module -> (B, A)), else ``dense``.
    Modules are independent, so they run side by side (:func:`_module_workers`); each one's result does not
    depend on which thread computed it."""
    out = LowRank(spec)
    items = list(factors.items() if factors else (dense or {}).items())
    spectrum = (lambda v: factor_spectrum(*v)) if factors else dense_spectrum
    with _module_workers() as pmap:
        done = list(pmap(lambda mv: truncate(spectrum(mv[1]), spec), items))
    for (m, _), (A, B, k, err) in zip(items, done):
        out.A[m], out.B[m], out.ranks[m], out.errors[m] = A, B, k, err
    return out
