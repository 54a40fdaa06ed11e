"""Factor-space operators: the composed update is itself a LoRA, written exactly.

For one module with K adapters, ``A[n]`` (r_n x d_in), ``B[n]`` (d_out x r_n), scaling ``s[n]``.
"""

from __future__ import annotations

import torch

from ..errors import ScalectlError


def weighted_concat(A: list[torch.Tensor], B: list[torch.Tensor], s: list[float],
                    coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_n coef[n] * s[n] * B[n] @ A[n]`` as one LoRA of rank ``sum(r_n)``.

    This is ``linear`` (iLoRAComp's delta-space anchor; method.md) and PEFT's
    ``add_weighted_adapter(combination_type="cat")``: ``B' = [c1 s1 B1 | ... | cK sK BK]``,
    ``A' = [A1; ...; AK]``. LASRC's per-block coefficients use it too.

    Args:
        A: K tensors (r_n, d_in). B: K tensors (d_out, r_n). s: K scalings. coef: (K,).
    Returns:
        (A' (R, d_in), B' (d_out, R)) with R = sum(r_n); scaling folded into B'.
    """
    A_cat = torch.cat(A, dim=0)  # (R, d_in)
    B_cat = torch.cat([float(c) * float(sn) * b for c, sn, b in zip(coef.tolist(), s, B)], dim=1)  # (d_out, R)
    return A_cat, B_cat


def lorahub_factors(A: list[torch.Tensor], B: list[torch.Tensor], s: list[float],
                    w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRAHub's rule (Huang et al. 2024): ``A = sum w A[n]``, ``B = sum w B[n]``, update ``s * B @ A``.

    The product has cross terms ``w_i w_j B_i A_j``; the rule needs equal ranks. Differing
    scalings are folded into B (``B = sum w s_n B_n``), which equals LoRAHub's when all are equal.

    Returns:
        (A (r, d_in), B (d_out, r)) with the scaling folded into B.
    """
    ranks = {a.shape[0] for a in A}
    if len(ranks) != 1:
        raise ScalectlError(
            f"lorahub sums factors elementwise, which needs equal ranks (got ranks {sorted(ranks)}); "
            "use --merger linear, which composes any ranks exactly"
        )
    wl = w.tolist()
    A_sum = sum(float(wi) * a for wi, a in zip(wl, A))  # (r, d_in)
    B_sum = sum(float(wi) * float(sn) * b for wi, sn, b in zip(wl, s, B))  # (d_out, r)
    return A_sum, B_sum
