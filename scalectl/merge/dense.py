"""Merge operators on dense per-module deltas: magnitude pruning, TIES, DARE and SDP.

Every function here is pure: it takes the dense updates dW[n, m] of ONE module m for the adapters n being
composed (stacked on dimension 0 as ``(K, d_out, d_in)``) and returns a new tensor; the caller loops over
modules. The order of floating-point operations follows ``peft.utils.merge_utils`` so that results match
PEFT's ``magnitude_prune``, ``ties``, ``dare_linear`` and ``dare_ties`` exactly (given the same masks).

Random masks (DARE, SDP) are not drawn from the global RNG: each is a pure function of
``(seed, adapter name, module name)`` (see :func:`keep_mask`), so a composition is reproducible bit for bit,
on any machine and whatever else consumed random numbers before it.

References:
    TIES: Yadav et al. 2023, "TIES-Merging: Resolving Interference When Merging Models".
    DARE: Yu et al. 2024, "Language Models are Super Mario: Absorbing Abilities from Homologous Models
        as a Free Lunch".
    SDP: Stochastic Delta Pruning, SCALE-LoRA method.md.
"""

from __future__ import annotations

import hashlib

import torch

from scalectl.errors import ScalectlError

SIGN_METHODS = ("total", "frequency")

_SEED_MASK = (1 << 63) - 1


# ---------------------------------------------------------------------------------------------- validation


def _check_density(density: float) -> None:
    if not 0 < density <= 1:  # also rejects NaN
        raise ScalectlError(f"density must be in (0, 1], got {density}")


def _check_drop_rate(drop_rate: float) -> None:
    if not 0 <= drop_rate < 1:  # also rejects NaN
        raise ScalectlError(f"drop rate must be in [0, 1), got {drop_rate}")


def _check_method(method: str) -> None:
    if method not in SIGN_METHODS:
        raise ScalectlError(f"unknown sign method {method!r}; expected one of {', '.join(SIGN_METHODS)}")


def _check_stack(deltas: torch.Tensor, weights: torch.Tensor, adapters: list[str] | None = None) -> None:
    if deltas.dim() < 2 or deltas.shape[0] == 0:
        raise ScalectlError(f"deltas must be a non-empty stack (K, d_out, d_in), got shape {tuple(deltas.shape)}")
    if weights.dim() != 1 or weights.shape[0] != deltas.shape[0]:
        raise ScalectlError(
            f"weights must have shape ({deltas.shape[0]},) to match deltas {tuple(deltas.shape)}, "
            f"got {tuple(weights.shape)}"
        )
    if adapters is not None and len(adapters) != deltas.shape[0]:
        raise ScalectlError(f"need one adapter name per delta: {len(adapters)} names for {deltas.shape[0]} deltas")


def _per_adapter(weights: torch.Tensor, stack: torch.Tensor) -> torch.Tensor:
    """View weights (K,) as (K, 1, ..., 1) so that they broadcast over a stack (K, ...)."""
    return weights.view(weights.shape + (1,) * (stack.dim() - weights.dim()))


# ---------------------------------------------------------------------------------------------- masks


def _mask_seed(seed: int, adapter: str, module: str, salt: str = "") -> int:
    """The 63-bit generator seed of a mask: the first 8 bytes (big-endian) of a sha256 of the key."""
    key = f"{salt}|{seed}|{adapter}|{module}" if salt else f"{seed}|{adapter}|{module}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


def keep_mask(shape, drop_rate: float, seed: int, adapter: str, module: str, salt: str = "") -> torch.Tensor:
    """A deterministic Bernoulli(1 - drop_rate) keep mask for one (adapter, module).

    The mask is a pure function of ``(seed, adapter, module, salt)``: a fresh CPU ``torch.Generator`` is seeded
    from a sha256 of ``"{salt}|{seed}|{adapter}|{module}"`` (``"{seed}|{adapter}|{module}"`` without salt),
    uniforms are drawn with it and an entry is kept where ``u >= drop_rate``. The global RNG is neither read
    nor advanced. DARE uses ``salt="dare"`` so that its masks differ from SDP's.

    Args:
        shape: shape of the mask, e.g. ``(d_out, d_in)``.
        drop_rate: probability p in [0, 1) that an entry is dropped; p = 0 keeps everything.
        seed: the user's seed.
        adapter: adapter name.
        module: module name.
        salt: optional prefix that separates mask families.

    Returns:
        A bool tensor of ``shape`` on the CPU, True where the entry is kept.
    """
    _check_drop_rate(drop_rate)
    g = torch.Generator(device="cpu")
    g.manual_seed(_mask_seed(seed, adapter, module, salt))
    u = torch.rand(tuple(shape), generator=g, dtype=torch.float32, device="cpu")  # (d_out, d_in)
    return u >= drop_rate


# ---------------------------------------------------------------------------------------------- pruning


def magnitude_prune(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest magnitude, zero the rest (TIES "trim" step).

    Exactly k = int(density * numel) entries are kept, chosen by ``torch.topk`` on the flattened absolute
    values, so ties in magnitude are broken as in PEFT's ``magnitude_based_pruning``. Density 1 is the
    identity (as in PEFT's ``prune``). Yadav et al. 2023.

    Args:
        delta: one dense update, e.g. (d_out, d_in).
        density: fraction of entries kept, in (0, 1].

    Returns:
        A new tensor of the same shape and dtype with the pruned entries set to zero.
    """
    _check_density(density)
    if density >= 1:
        return delta.clone()
    k = int(density * delta.numel())
    mask = torch.zeros_like(delta).reshape(-1)  # (d_out * d_in,)
    top = torch.topk(delta.abs().reshape(-1), k=k, largest=True)
    mask[top.indices] = 1
    return delta * mask.reshape(delta.shape)


def prune_and_sum(deltas: torch.Tensor, weights: torch.Tensor, density: float) -> torch.Tensor:
    """Magnitude-prune each adapter's delta, then take the weighted sum (task arithmetic).

    Matches PEFT's ``magnitude_prune`` combination. Yadav et al. 2023 (trim step).

    Args:
        deltas: stacked updates (K, d_out, d_in).
        weights: one weight per adapter (K,).
        density: fraction of entries kept per adapter, in (0, 1].

    Returns:
        The merged update (d_out, d_in).
    """
    _check_stack(deltas, weights)
    _check_density(density)
    pruned = torch.stack([magnitude_prune(d, density) for d in deltas], dim=0)  # (K, d_out, d_in)
    return (pruned * _per_adapter(weights, pruned)).sum(dim=0)  # (d_out, d_in)


# ---------------------------------------------------------------------------------------------- TIES


def majority_sign(weighted: torch.Tensor, method: str = "total") -> torch.Tensor:
    """Elect a sign per entry and mark the adapters that agree with it (TIES "elect" step).

    ``"total"`` elects the sign of the summed values (total mass), ``"frequency"`` the sign held by more
    adapters; a tie (sum exactly 0) elects +. An entry that is exactly zero never agrees. Same as PEFT's
    ``calculate_majority_sign_mask``. Yadav et al. 2023.

    Args:
        weighted: stacked (pruned) updates (K, d_out, d_in).
        method: ``"total"`` or ``"frequency"``.

    Returns:
        A bool mask (K, d_out, d_in), True where an adapter's entry has the elected sign.
    """
    _check_method(method)
    sign = weighted.sign()  # (K, d_out, d_in)
    mass = weighted.sum(dim=0) if method == "total" else sign.sum(dim=0)  # (d_out, d_in)
    elected = torch.where(mass >= 0, 1, -1)  # (d_out, d_in)
    return sign == elected  # (K, d_out, d_in)


def disjoint_mean(weighted: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """Average, per entry, only the adapters that agree with the elected sign (TIES "disjoint merge").

    An entry where no adapter agrees is 0. Same as PEFT's ``disjoint_merge``. Yadav et al. 2023.

    Args:
        weighted: stacked weighted updates (K, d_out, d_in).
        agree: bool mask of the same shape, from :func:`majority_sign`.

    Returns:
        The merged update (d_out, d_in).
    """
    if agree.shape != weighted.shape:
        raise ScalectlError(f"agree mask shape {tuple(agree.shape)} does not match {tuple(weighted.shape)}")
    total = (weighted * agree).sum(dim=0)  # (d_out, d_in)
    count = agree.sum(dim=0)  # (d_out, d_in)
    return total / torch.clamp(count, min=1.0)


SIGN_ELECTIONS = ("unweighted", "weighted")


def _sign_merge(pruned: torch.Tensor, weights: torch.Tensor, method: str, election: str = "unweighted") -> torch.Tensor:
    """The TIES sign election and disjoint merge of a pruned (or dropped) stack, in one of two conventions.

    ``unweighted`` (PEFT ``utils/merge_utils.py``, the default): signs are elected on the unweighted stack, then
    the weighted agreeing entries are averaged over their count. ``weighted`` (mergekit
    ``merge_methods/generalized_task_arithmetic.py``, ``normalize`` on): signs are elected on the weighted deltas
    ``w_k d_k``, and the agreeing weighted entries are summed and divided by the sum of their weights (1 where
    that is 0). With negative weights the two differ: under PEFT's an adapter whose weight is negative counts as
    agreeing on its unweighted sign and then adds the opposite one."""
    weighted = pruned * _per_adapter(weights, pruned)  # (K, d_out, d_in)
    if election == "unweighted":
        return disjoint_mean(weighted, majority_sign(pruned, method))  # (d_out, d_in)
    if election != "weighted":
        raise ScalectlError(f"unknown sign election {election!r}; expected one of {', '.join(SIGN_ELECTIONS)}")
    agree = majority_sign(weighted, method)  # (K, d_out, d_in)
    divisor = (_per_adapter(weights, pruned) * agree).sum(dim=0)  # (d_out, d_in)
    divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return (weighted * agree).sum(dim=0) / divisor


def ties(deltas: torch.Tensor, weights: torch.Tensor, density: float, method: str = "total",
         election: str = "unweighted") -> torch.Tensor:
    """TIES merging of one module: trim, elect sign, disjoint merge (Yadav et al. 2023).

    Identical to ``peft.utils.merge_utils.ties``: each delta is magnitude-pruned to ``density``, the sign is
    elected on the pruned (unweighted) stack, then the weighted entries that agree are averaged.

    Args:
        deltas: stacked updates (K, d_out, d_in).
        weights: one weight per adapter (K,); negative and zero weights are allowed.
        density: fraction of entries kept per adapter, in (0, 1].
        method: sign election, ``"total"`` (default) or ``"frequency"``.
        election: ``"unweighted"`` (PEFT's, default) or ``"weighted"`` (mergekit's); see :func:`_sign_merge`.

    Returns:
        The merged update (d_out, d_in).
    """
    _check_stack(deltas, weights)
    _check_density(density)
    _check_method(method)
    pruned = torch.stack([magnitude_prune(d, density) for d in deltas], dim=0)  # (K, d_out, d_in)
    return _sign_merge(pruned, weights, method, election)


# ---------------------------------------------------------------------------------------------- DARE


def dare_drop(delta: torch.Tensor, drop_rate: float, seed: int, adapter: str, module: str) -> torch.Tensor:
    """Drop each entry with probability p and rescale the survivors by 1 / (1 - p) (Yu et al. 2024).

    The mask is ``keep_mask(delta.shape, p, seed, adapter, module, salt="dare")``. Drop rate 0 is the identity.

    Args:
        delta: one dense update (d_out, d_in).
        drop_rate: p in [0, 1).
        seed: the user's seed.
        adapter: adapter name (part of the mask key).
        module: module name (part of the mask key).

    Returns:
        A new tensor of the same shape and dtype.
    """
    _check_drop_rate(drop_rate)
    if drop_rate == 0:
        return delta.clone()
    keep = keep_mask(delta.shape, drop_rate, seed, adapter, module, salt="dare")  # (d_out, d_in)
    return delta * keep.to(device=delta.device, dtype=delta.dtype) / (1 - drop_rate)


def _dare_stack(deltas, drop_rate, seed, adapters, module) -> torch.Tensor:
    return torch.stack(
        [dare_drop(d, drop_rate, seed, a, module) for d, a in zip(deltas, adapters)], dim=0
    )  # (K, d_out, d_in)


def dare_linear(deltas, weights, drop_rate, seed, adapters: list[str], module: str) -> torch.Tensor:
    """DARE then task arithmetic ("DARE-add", Yu et al. 2024); PEFT's ``dare_linear`` with density 1 - p.

    Args:
        deltas: stacked updates (K, d_out, d_in).
        weights: one weight per adapter (K,).
        drop_rate: p in [0, 1).
        seed: the user's seed.
        adapters: the K adapter names, in the order of ``deltas``.
        module: module name.

    Returns:
        The merged update (d_out, d_in).
    """
    _check_stack(deltas, weights, adapters)
    _check_drop_rate(drop_rate)
    dropped = _dare_stack(deltas, drop_rate, seed, adapters, module)  # (K, d_out, d_in)
    return (dropped * _per_adapter(weights, dropped)).sum(dim=0)  # (d_out, d_in)


def dare_ties(
    deltas, weights, drop_rate, seed, adapters: list[str], module: str, method: str = "total",
    election: str = "unweighted",
) -> torch.Tensor:
    """DARE then TIES sign election and disjoint merge (Yu et al. 2024; Yadav et al. 2023).

    PEFT's ``dare_ties`` with density 1 - p: signs are elected on the dropped, rescaled (unweighted) stack,
    then the weighted agreeing entries are averaged.

    Args:
        deltas: stacked updates (K, d_out, d_in).
        weights: one weight per adapter (K,).
        drop_rate: p in [0, 1).
        seed: the user's seed.
        adapters: the K adapter names, in the order of ``deltas``.
        module: module name.
        method: sign election, ``"total"`` (default) or ``"frequency"``.
        election: ``"unweighted"`` (PEFT's, default) or ``"weighted"`` (mergekit's); see :func:`_sign_merge`.

    Returns:
        The merged update (d_out, d_in).
    """
    _check_stack(deltas, weights, adapters)
    _check_drop_rate(drop_rate)
    _check_method(method)
    dropped = _dare_stack(deltas, drop_rate, seed, adapters, module)  # (K, d_out, d_in)
    return _sign_merge(dropped, weights, method, election)


# ---------------------------------------------------------------------------------------------- SDP


def sdp(
    delta: torch.Tensor,
    drop_rate: float,
    seed: int,
    adapter: str,
    module: str,
    rescale: bool = True,
    preserve_norm: bool = True,
) -> torch.Tensor:
    """Stochastic Delta Pruning of one adapter's update for one module (SCALE-LoRA method.md).

    ``dW~ = M * dW`` with ``M ~ Bernoulli(1 - p)`` from ``keep_mask(shape, p, seed, adapter, module)``; then,
    if ``rescale``, ``dW~ /= 1 - p``; then, if ``preserve_norm`` and both Frobenius norms are nonzero,
    ``dW~ *= ||dW||_F / ||dW~||_F``. Drop rate 0 is the identity; a zero delta stays zero.

    Args:
        delta: one dense update (d_out, d_in).
        drop_rate: p in [0, 1), default 0.5 in the method.
        seed: the user's seed.
        adapter: adapter name (part of the mask key).
        module: module name (part of the mask key).
        rescale: divide the survivors by 1 - p.
        preserve_norm: restore the Frobenius norm of ``delta``.

    Returns:
        A new tensor of the same shape and dtype.
    """
    _check_drop_rate(drop_rate)
    if drop_rate == 0:
        return delta.clone()
    keep = keep_mask(delta.shape, drop_rate, seed, adapter, module)  # (d_out, d_in)
    out = delta * keep.to(device=delta.device, dtype=delta.dtype)  # (d_out, d_in)
    if rescale:
        out = out / (1 - drop_rate)
    if preserve_norm:
        work = torch.promote_types(delta.dtype, torch.float32)  # norms of half-precision deltas in fp32
        before = torch.linalg.vector_norm(delta.to(work))
        after = torch.linalg.vector_norm(out.to(work))
        scale = torch.where((before > 0) & (after > 0), before / after, torch.ones_like(before))
        out = (out.to(work) * scale).to(delta.dtype)
    return out
