"""LASRC: Layer-Adaptive Sparse Residual Composition, in Gram (factor) space, plus a dense reference.

SCALE-LoRA (method.md, LASRC). Per block b, with ``v[n]`` the concatenation of ``vec(dW[n, m])`` over
the block's modules m (``dW = s * B @ A``) and ``w`` one weight per adapter:

    1. u[n] = w[n] v[n]; drop adapters with w[n] == 0
    2. order by ||u[n]||, largest first (stable)
    3. modified Gram-Schmidt: r = u[n] - projections on the kept unit basis; keep r[n] unless small
    4. s_lin = sum_n u[n];  s_res = sum of the kept r[n]
    5. s_res *= ||s_lin|| / ||s_res||                              (ablation: no norm rescale)
    6. overlap o = 1 - sum_kept ||r[n]||^2 / sum_n ||u[n]||^2
    7. alpha = clip(alpha_max o^kappa (1 + a cos(s_lin, s_res)), floor, alpha_max);
       alpha = floor when the raw ||s_res|| / ||s_lin|| < g   (the norm guard)
    8. result (1 - alpha) s_lin + alpha s_res

Every step is linear in the ``v[n]`` and every norm and dot product is a quadratic form in the K x K
Gram matrix ``G[i, j] = <v[i], v[j]>``. :func:`lasrc_gram` therefore runs the recipe on coefficient
vectors (``x = sum_n c[n] u[n]``, ``<x, y> = c_x^T G_u c_y``) and returns ``gamma`` with
``result = sum_n gamma[n] v[n]``: exactly a LoRA of rank ``sum(r)``, and no d_out x d_in matrix is
ever formed. :func:`block_gram` builds ``G`` from the factors; :func:`lasrc_dense` is the literal
vector reference the tests hold the Gram path to.

Numerics (beyond method.md; both implementations apply the same rules):

- a residual is discarded when ``||r|| <= max(tau, EPS) ||u[n]||`` (``EPS = 1e-6``) or ``||u[n]|| == 0``,
  so exact duplicates and zero updates are dropped even at ``tau = 0``;
- ``||s_lin||`` (and ``||s_res||``) count as zero when ``<= EPS * sqrt(sum_n ||u[n]||^2)``: an exact
  cancellation computed through G leaves ~1e-8 relative noise, which must not be rescaled up;
- ``||u||`` values equal to ~1e-9 relative are ties (kept in index order), so rounding cannot reorder
  duplicates differently in the two implementations;
- the overlap is clamped to [0, 1] (it leaves that range only by rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ScalectlError

EPS = 1e-6  # relative size below which a residual (or s_lin) counts as zero
_TIE = 1e-9  # ||u|| values within this relative distance are ties


@dataclass(frozen=True)
class LasrcConfig:
    """LASRC parameters and ablation switches; defaults are the paper's matched row (SCALE-LoRA, method.md, LASRC)."""

    tau: float = 0.0  # discard residuals with ||r|| <= tau ||u||
    alpha_max: float = 0.5  # largest residual weight (the paper's value was lost; 0.5 is our choice)
    floor: float = 0.05  # smallest residual weight
    guard: float = 0.3  # g: alpha = floor when raw ||s_res|| / ||s_lin|| < g
    kappa: float = 1.0  # consensus exponent on the overlap
    align: float = 0.0  # a: alignment term (1 + a cos(s_lin, s_res))
    fixed_alpha: bool = False  # ablation: alpha = alpha_max instead of the overlap rule
    norm_rescale: bool = True  # ablation "no norm rescale" = False
    no_pruning: bool = False  # ablation: forces tau = 0
    use_floor: bool = True  # ablation "no floor" = False: floor = 0, also for the guard
    use_guard: bool = True  # ablation "no guard" = False

    def __post_init__(self):
        # written as "not (ok)" so NaN fails every check
        checks = [
            (self.tau >= 0, f"tau must be >= 0, got {self.tau}"),
            (0 <= self.floor <= self.alpha_max <= 1,
             f"need 0 <= floor <= alpha_max <= 1, got floor={self.floor}, alpha_max={self.alpha_max}"),
            (self.guard >= 0, f"guard must be >= 0, got {self.guard}"),
            (self.kappa > 0, f"kappa must be > 0, got {self.kappa}"),
            (math.isfinite(self.align), f"align must be finite, got {self.align}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ScalectlError(f"invalid LASRC config: {msg}")

    @property
    def prune_tau(self) -> float:
        """The pruning threshold in effect (0 under the no-pruning ablation)."""
        return 0.0 if self.no_pruning else self.tau

    @property
    def alpha_floor(self) -> float:
        """The floor in effect (0 under the no-floor ablation)."""
        return self.floor if self.use_floor else 0.0


@dataclass
class LasrcBlock:
    """One block's LASRC outcome: coefficients over the v[n] and the statistics that decided them."""

    gamma: torch.Tensor  # (K,) float64, block result = sum_n gamma[n] * v[n]
    alpha: float
    overlap: float
    kept: list[int]  # adapters kept by Gram-Schmidt, in processing order
    order: list[int]  # processing order: nonzero-weight adapters by ||u|| desc
    res_ratio: float  # raw ||s_res|| / ||s_lin|| (0 if ||s_lin|| == 0)
    cos: float  # cos(s_lin, s_res)
    guarded: bool  # True when the norm guard fired


# ----------------------------------------------------------------------------- shared rules


def _order(w: list[float], unorm: list[float]) -> list[int]:
    """Step 2: nonzero-weight adapters by ||u|| desc; near-equal norms (1e-9 relative) keep index order."""
    def key(n: int) -> float:
        return -round(math.log(unorm[n]) / _TIE) if unorm[n] > 0 else math.inf
    return sorted((n for n in range(len(w)) if w[n] != 0), key=key)


def _discard(rn: float, un: float, tau: float) -> bool:
    """Step 3: drop a residual of norm rn from an update of norm un (zero updates and duplicates included)."""
    return un == 0 or rn <= max(tau, EPS) * un


def _overlap(kept_r2: float, total_u2: float) -> float:
    """Step 6: 1 - sum_kept ||r||^2 / sum ||u||^2, clamped to [0, 1]; 0 when there is nothing."""
    return min(max(1.0 - kept_r2 / total_u2, 0.0), 1.0) if total_u2 > 0 else 0.0


def _alpha(overlap: float, cos: float, ratio: float, lin_zero: bool, cfg: LasrcConfig) -> tuple[float, bool]:
    """Step 7: the residual weight alpha_b and whether the norm guard fired. SCALE-LoRA (method.md, LASRC).

    Args:
        overlap: o_b in [0, 1]. cos: cos(s_lin, s_res). ratio: raw ||s_res|| / ||s_lin||.
        lin_zero: s_lin is zero (the guard is then not evaluated).
    Returns:
        (alpha, guarded).
    """
    floor = cfg.alpha_floor
    raw = cfg.alpha_max if cfg.fixed_alpha else cfg.alpha_max * overlap ** cfg.kappa * (1 + cfg.align * cos)
    alpha = min(max(raw, floor), cfg.alpha_max)
    guarded = cfg.use_guard and not lin_zero and ratio < cfg.guard
    return (floor if guarded else alpha), guarded


def _check_weights(w: torch.Tensor, K: int, what: str) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.dim() != 1 or w.numel() != K:
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ScalectlError(f"LASRC weights must be a 1-D tensor of length K={K} (one per row of {what}), got {shape}")
    w = w.detach().to("cpu", torch.float64)
    if not torch.isfinite(w).all():
        raise ScalectlError("LASRC weights must be finite")
    return w


# ----------------------------------------------------------------------------- Gram (factor) space


def block_gram(A: list[dict[str, torch.Tensor]], B: list[dict[str, torch.Tensor]], s: list[dict[str, float]],
               modules: list[str]) -> torch.Tensor:
    """(K,K) float64 Gram of the block's concatenated updates, from factors only. SCALE-LoRA (method.md, LASRC).

    ``G[i, j] = sum_m <dW[i,m], dW[j,m]>_F = sum_m s_i s_j sum((B_i^T B_j) * (A_i A_j^T))``; per module the
    factors of all adapters are concatenated (R = sum r_n) and the (R, R) products are summed back per adapter.

    Args:
        A: per adapter, module -> (r_n, d_in). B: per adapter, module -> (d_out, r_n).
        s: per adapter, module -> scaling. modules: the block's modules. An adapter that lacks a module
            (neither A nor B has it) contributes a zero update there; a module no adapter has is an error.
    Returns:
        G (K, K) float64 on the CPU, symmetric.
    """
    K = len(A)
    if len(B) != K or len(s) != K:
        raise ScalectlError(f"block_gram needs A, B and s for the same adapters, got {len(A)}, {len(B)}, {len(s)}")
    G = torch.zeros(K, K, dtype=torch.float64)  # (K, K)
    for m in modules:
        have = [n for n in range(K) if m in A[n] or m in B[n]]
        if not have:
            raise ScalectlError(f"module {m!r} is in none of the {K} adapters of the block")
        dev = A[have[0]][m].device if m in A[have[0]] else B[have[0]][m].device
        a, b, owner = [], [], []
        pairs = [_module_factors(A[n], B[n], s[n], m, n) for n in have]
        # The products run in float32 unless a factor is float64: the factors carry float32 precision
        # at best, and float64 products cost twice the time (the K^2 r^2 d term dominates LASRC).
        dt = torch.float64 if any(t.dtype == torch.float64 for pr in pairs for t in pr) else torch.float32
        for n, (An, Bn) in zip(have, pairs):
            a.append(An.to(dev, dt))  # (r_n, d_in)
            b.append(Bn.to(dev, dt) * float(s[n][m]))  # (d_out, r_n), scaling folded in
            owner += [n] * An.shape[0]
        shapes = {(bb.shape[0], aa.shape[1]) for aa, bb in zip(a, b)}
        if len(shapes) != 1:
            raise ScalectlError(f"module {m!r}: adapters disagree on its shape (d_out, d_in): {sorted(shapes)}")
        a, b = torch.cat(a, 0), torch.cat(b, 1)  # (R, d_in), (d_out, R)
        G += module_gram(a, b, torch.tensor(owner, device=dev), K)
    return (G + G.T) / 2


def sym_gram(x: torch.Tensor, leaf: int = 80) -> torch.Tensor:
    """``x @ x.T`` computing each off-diagonal block once (recursive halving: about 3/5 of the flops at R = 320)."""
    R = x.shape[0]
    if R <= leaf:
        return x @ x.T
    h = R // 2
    x1, x2 = x[:h], x[h:]
    out = torch.empty(R, R, dtype=x.dtype, device=x.device)  # (R, R)
    out[:h, :h] = sym_gram(x1, leaf)
    out[h:, h:] = sym_gram(x2, leaf)
    off = x1 @ x2.T  # (h, R - h)
    out[:h, h:] = off
    out[h:, :h] = off.T
    return out


def module_gram(a: torch.Tensor, b: torch.Tensor, owner: torch.Tensor, K: int) -> torch.Tensor:
    """One module's contribution to the block Gram from stacked factors.

    Args:
        a: (R, d_in) the adapters' A stacked. b: (d_out, R) their B stacked, scalings folded in.
        owner: (R,) adapter index of each rank row. K: number of adapters.
    Returns:
        (K, K) float64 on the CPU: ``G[i, j] = <s_i B_i A_i, s_j B_j A_j>_F``.
    """
    P = sym_gram(b.T).double() * sym_gram(a).double()  # (R, R)
    S = torch.zeros(owner.numel(), K, dtype=torch.float64, device=a.device)  # (R, K) one-hot
    S[torch.arange(owner.numel(), device=a.device), owner] = 1.0
    return (S.T @ P @ S).cpu()  # (K, K)


def _module_factors(A: dict, B: dict, s: dict, m: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapter n's (A, B) for module m, validated: A (r, d_in), B (d_out, r), a scaling present."""
    if m not in A or m not in B or m not in s:
        missing = [k for k, d in (("A", A), ("B", B), ("s", s)) if m not in d]
        raise ScalectlError(f"adapter {n}, module {m!r}: missing {', '.join(missing)}")
    An, Bn = A[m], B[m]
    if An.dim() != 2 or Bn.dim() != 2 or An.shape[0] != Bn.shape[1]:
        raise ScalectlError(f"adapter {n}, module {m!r}: need A (r, d_in) and B (d_out, r), "
                            f"got A {tuple(An.shape)} and B {tuple(Bn.shape)}")
    return An, Bn


def lasrc_gram(G: torch.Tensor, w: torch.Tensor, cfg: LasrcConfig = LasrcConfig()) -> LasrcBlock:
    """LASRC in coefficient space from the block Gram matrix. SCALE-LoRA (method.md, LASRC).

    Vectors are coefficient vectors c (K,) over the u[n] = w[n] v[n]; ``<x, y> = c_x^T G_u c_y`` with
    ``G_u = diag(w) G diag(w)``. All arithmetic is float64 on the CPU.

    Args:
        G: (K, K) Gram matrix of the block updates v[n] (see :func:`block_gram`). w: (K,) weights.
    Returns:
        LasrcBlock whose gamma (K,) gives the block result ``sum_n gamma[n] v[n]``.
    """
    if not isinstance(G, torch.Tensor) or G.dim() != 2 or G.shape[0] != G.shape[1]:
        raise ScalectlError(f"LASRC needs a square (K, K) Gram matrix, got {tuple(getattr(G, 'shape', ()))}")
    K = G.shape[0]
    w = _check_weights(w, K, "G")
    G = G.detach().to("cpu", torch.float64)
    if not torch.isfinite(G).all():
        raise ScalectlError("LASRC Gram matrix must be finite")
    Gu = w[:, None] * G * w[None, :]  # (K, K) Gram of the u[n]

    def dot(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(x @ Gu @ y)

    def norm(x: torch.Tensor) -> float:
        return math.sqrt(max(dot(x, x), 0.0))

    eye = torch.eye(K, dtype=torch.float64)  # (K, K) row n = u[n]
    unorm = [norm(eye[n]) for n in range(K)]
    order = _order(w.tolist(), unorm)  # step 2
    basis, kept, kept_r2 = [], [], 0.0
    s_res = torch.zeros(K, dtype=torch.float64)  # (K,)
    for n in order:  # step 3: modified Gram-Schmidt
        r = eye[n].clone()  # (K,)
        for e in basis:
            r -= dot(r, e) * e
        rn = norm(r)
        if _discard(rn, unorm[n], cfg.prune_tau):
            continue
        basis.append(r / rn)
        kept.append(n)
        kept_r2 += rn * rn
        s_res += r  # step 4
    s_lin = torch.ones(K, dtype=torch.float64)  # (K,) step 4 (dropped adapters have u = 0)

    total_u2 = sum(x * x for x in unorm)
    lin, res = norm(s_lin), norm(s_res)
    lin_zero, res_zero = lin <= EPS * math.sqrt(total_u2), res <= EPS * math.sqrt(total_u2)
    ratio = 0.0 if lin_zero else res / lin
    cos = 0.0 if lin_zero or res_zero else min(max(dot(s_lin, s_res) / (lin * res), -1.0), 1.0)
    scale = lin / res if cfg.norm_rescale and not (lin_zero or res_zero) else 1.0  # step 5
    overlap = _overlap(kept_r2, total_u2)  # step 6
    alpha, guarded = _alpha(overlap, cos, ratio, lin_zero, cfg)  # step 7
    gamma_u = (1 - alpha) * s_lin + alpha * scale * s_res  # (K,) step 8, over the u[n]
    return LasrcBlock(gamma=w * gamma_u, alpha=alpha, overlap=overlap, kept=kept, order=order,
                      res_ratio=ratio, cos=cos, guarded=guarded)


# ----------------------------------------------------------------------------- dense reference


def lasrc_dense(V: torch.Tensor, w: torch.Tensor, cfg: LasrcConfig = LasrcConfig()) -> tuple[torch.Tensor, LasrcBlock]:
    """Dense reference: steps 1-8 on the vectors themselves. SCALE-LoRA (method.md, LASRC).

    The test oracle for :func:`lasrc_gram` (and usable on dense, e.g. SDP-masked, updates). Each residual
    carries its coefficient vector over the v[n] alongside, which gives gamma. Runs in float64 on V's device.

    Args:
        V: (K, D), row n = v[n] (the block's updates, flattened and concatenated). w: (K,) weights.
    Returns:
        (block result (D,) float64, LasrcBlock with gamma (K,) on the CPU).
    """
    if not isinstance(V, torch.Tensor) or V.dim() != 2:
        raise ScalectlError(f"LASRC needs V as a (K, D) matrix, got {tuple(getattr(V, 'shape', ()))}")
    K = V.shape[0]
    w = _check_weights(w, K, "V")
    V = V.detach().to(torch.float64)  # (K, D)
    wd = w.to(V.device)
    U = wd[:, None] * V  # (K, D) step 1: u[n] = w[n] v[n]
    unorm = [float(U[n].norm()) for n in range(K)]
    order = _order(w.tolist(), unorm)  # step 2

    basis, kept, kept_r2 = [], [], 0.0  # basis: (unit vector (D,), its coefficients over v (K,))
    s_res = torch.zeros(V.shape[1], dtype=torch.float64, device=V.device)  # (D,)
    c_res = torch.zeros(K, dtype=torch.float64)  # (K,)
    for n in order:  # step 3: modified Gram-Schmidt
        r, c = U[n].clone(), torch.zeros(K, dtype=torch.float64)  # (D,), (K,)
        c[n] = w[n]
        for e, ce in basis:
            p = float(r @ e)
            r, c = r - p * e, c - p * ce
        rn = float(r.norm())
        if _discard(rn, unorm[n], cfg.prune_tau):
            continue
        basis.append((r / rn, c / rn))
        kept.append(n)
        kept_r2 += rn * rn
        s_res, c_res = s_res + r, c_res + c  # step 4
    s_lin, c_lin = U.sum(0), w.clone()  # (D,), (K,) step 4

    total_u2 = sum(x * x for x in unorm)
    lin, res = float(s_lin.norm()), float(s_res.norm())
    lin_zero, res_zero = lin <= EPS * math.sqrt(total_u2), res <= EPS * math.sqrt(total_u2)
    ratio = 0.0 if lin_zero else res / lin  # raw, before the rescale
    cos = 0.0 if lin_zero or res_zero else min(max(float(s_lin @ s_res) / (lin * res), -1.0), 1.0)
    if cfg.norm_rescale and not (lin_zero or res_zero):  # step 5
        s_res, c_res = s_res * (lin / res), c_res * (lin / res)
    overlap = _overlap(kept_r2, total_u2)  # step 6
    alpha, guarded = _alpha(overlap, cos, ratio, lin_zero, cfg)  # step 7
    out = (1 - alpha) * s_lin + alpha * s_res  # (D,) step 8
    gamma = (1 - alpha) * c_lin + alpha * c_res  # (K,)
    return out, LasrcBlock(gamma=gamma, alpha=alpha, overlap=overlap, kept=kept, order=order,
                           res_ratio=ratio, cos=cos, guarded=guarded)
