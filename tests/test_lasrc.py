"""LASRC (SCALE-LoRA, method.md): hand-computed cases, and the Gram path against the dense reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalectl.errors import ScalectlError
from scalectl.merge.lasrc import LasrcConfig, block_gram, lasrc_dense, lasrc_gram

F64 = torch.float64


def both(V, w, cfg=LasrcConfig()):
    """Run both implementations on rows V; check they agree; return (result, gram stats)."""
    V, w = torch.tensor(V, dtype=F64), torch.tensor(w, dtype=F64)
    out, dense = lasrc_dense(V, w, cfg)
    blk = lasrc_gram(V @ V.T, w, cfg)
    assert torch.allclose(blk.gamma @ V, out, atol=1e-12)
    assert torch.allclose(dense.gamma @ V, out, atol=1e-12)
    assert (blk.kept, blk.order, blk.guarded) == (dense.kept, dense.order, dense.guarded)
    assert blk.alpha == pytest.approx(dense.alpha, abs=1e-12)
    assert blk.overlap == pytest.approx(dense.overlap, abs=1e-12)
    return out, blk


def close(x, y):
    assert torch.allclose(x, torch.tensor(y, dtype=F64), atol=1e-12), (x, y)


# ----------------------------------------------------------------------------- hand-computed cases


def test_orthogonal_is_linear_sum_with_floor_alpha():
    out, b = both([[1.0, 0.0], [0.0, 2.0]], [1.0, 1.0])
    assert b.order == [1, 0] and b.kept == [1, 0]  # larger update first
    assert b.overlap == pytest.approx(0.0) and b.alpha == pytest.approx(0.05)  # o = 0 -> clipped up to the floor
    assert b.res_ratio == pytest.approx(1.0) and b.cos == pytest.approx(1.0) and not b.guarded
    close(out, [1.0, 2.0])
    close(b.gamma, [1.0, 1.0])


def test_identical_second_discarded():
    out, b = both([[1.0, 2.0], [1.0, 2.0]], [1.0, 1.0])
    assert b.order == [0, 1] and b.kept == [0]  # tie keeps index order; the duplicate is discarded at tau = 0
    assert b.overlap == pytest.approx(0.5) and b.alpha == pytest.approx(0.25)
    assert b.res_ratio == pytest.approx(0.5) and not b.guarded
    close(out, [2.0, 4.0])  # s_res = v rescaled to ||2v|| = s_lin
    close(b.gamma, [1.25, 0.75])  # 0.75 * (1, 1) + 0.25 * (2, 0)


def test_single_adapter_weight_one_returns_itself():
    v = [0.3, -1.2, 2.0]
    out, b = both([v], [1.0])
    close(out, v)
    close(b.gamma, [1.0])
    assert b.kept == [0] and b.overlap == 0.0


def test_zero_weights_drop_adapters():
    V = [[1.0, 0.0, 0.0], [5.0, 5.0, 5.0], [0.0, 1.0, 1.0]]
    out, b = both(V, [1.0, 0.0, 2.0])
    assert b.order == [2, 0] and b.kept == [2, 0] and b.gamma[1] == 0
    ref, sub = both([V[0], V[2]], [1.0, 2.0])  # same as composing without it
    close(out, ref.tolist())
    assert b.alpha == sub.alpha
    out, b = both(V, [0.0, 0.0, 0.0])  # nothing left
    assert b.order == [] and b.kept == [] and b.overlap == 0.0 and b.alpha == pytest.approx(0.05)
    close(out, [0.0, 0.0, 0.0])


def test_zero_update_is_discarded():
    out, b = both([[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0])
    assert b.order == [1, 0] and b.kept == [1]
    close(out, [1.0, 1.0])


def test_negative_weight_duplicate():
    # u0 = (1, 0), u1 = (-0.5, 0): u1 discarded; s_lin = (0.5, 0), s_res = (1, 0); o = 1 - 1/1.25 = 0.2
    V, w = [[1.0, 0.0], [1.0, 0.0]], [1.0, -0.5]
    out, b = both(V, w)
    assert b.kept == [0] and b.overlap == pytest.approx(0.2) and b.alpha == pytest.approx(0.1)
    assert b.res_ratio == pytest.approx(2.0)
    close(out, [0.5, 0.0])  # s_res rescaled to ||s_lin||
    out, b = both(V, w, LasrcConfig(norm_rescale=False))
    close(out, [0.9 * 0.5 + 0.1 * 1.0, 0.0])


def test_negative_weight_with_residual():
    # u0 = (2, 0), u1 = (-1, -1); r1 = (0, -1); s_lin = (1, -1), s_res = (2, -1); o = 1 - 5/6
    out, b = both([[2.0, 0.0], [1.0, 1.0]], [1.0, -1.0])
    assert b.kept == [0, 1]
    assert b.overlap == pytest.approx(1 / 6) and b.alpha == pytest.approx(0.5 / 6)
    assert b.cos == pytest.approx(3 / math.sqrt(10)) and b.res_ratio == pytest.approx(math.sqrt(5 / 2))
    a = 0.5 / 6
    s_res = torch.tensor([2.0, -1.0], dtype=F64) * math.sqrt(2 / 5)
    close(out, ((1 - a) * torch.tensor([1.0, -1.0], dtype=F64) + a * s_res).tolist())


def test_exact_cancellation_keeps_residual_unscaled():
    # s_lin = 0: no rescale, cos = 0, guard not evaluated; o = 0.5 -> alpha 0.25, result 0.25 u0
    out, b = both([[1.0, 2.0], [1.0, 2.0]], [1.0, -1.0])
    assert b.kept == [0] and b.res_ratio == 0.0 and b.cos == 0.0 and not b.guarded
    close(out, [0.25, 0.5])


def test_guard_fires():
    # four copies: s_lin = 4v, raw s_res = v, ratio 0.25 < 0.3 -> alpha = floor although o = 0.75
    V, w = [[1.0, -1.0]] * 4, [1.0] * 4
    out, b = both(V, w)
    assert b.guarded and b.res_ratio == pytest.approx(0.25) and b.overlap == pytest.approx(0.75)
    assert b.alpha == pytest.approx(0.05)
    close(out, [4.0, -4.0])
    out, b = both(V, w, LasrcConfig(norm_rescale=False))
    close(out, [3.85, -3.85])  # 0.95 * 4v + 0.05 * v
    _, b = both(V, w, LasrcConfig(use_guard=False))
    assert not b.guarded and b.alpha == pytest.approx(0.375)
    _, b = both(V, w, LasrcConfig(use_floor=False))
    assert b.guarded and b.alpha == 0.0  # the guard sets the floor, which is 0
    _, b = both(V, w, LasrcConfig(fixed_alpha=True))
    assert b.guarded and b.alpha == pytest.approx(0.05)
    _, b = both(V, w, LasrcConfig(guard=0.2))
    assert not b.guarded and b.alpha == pytest.approx(0.375)


def test_fixed_alpha_and_no_floor():
    V, w = [[1.0, 0.0], [0.0, 2.0]], [1.0, 1.0]
    _, b = both(V, w, LasrcConfig(fixed_alpha=True))
    assert b.alpha == 0.5
    _, b = both(V, w, LasrcConfig(fixed_alpha=True, alpha_max=0.3, floor=0.1))
    assert b.alpha == 0.3
    _, b = both(V, w, LasrcConfig(use_floor=False))
    assert b.alpha == 0.0  # o = 0 is no longer lifted to the floor
    _, b = both([[1.0, 2.0], [1.0, 2.0]], [1.0, 1.0], LasrcConfig(use_floor=False, fixed_alpha=True))
    assert b.alpha == 0.5


def test_kappa_align_and_clip():
    V, w = [[1.0, 2.0], [1.0, 2.0]], [1.0, 1.0]  # o = 0.5, cos = 1
    assert both(V, w, LasrcConfig(kappa=2.0))[1].alpha == pytest.approx(0.125)
    assert both(V, w, LasrcConfig(align=1.0))[1].alpha == pytest.approx(0.5)  # 0.5 * 0.5 * 2
    assert both(V, w, LasrcConfig(align=3.0))[1].alpha == pytest.approx(0.5)  # clipped to alpha_max
    assert both(V, w, LasrcConfig(align=-2.0))[1].alpha == pytest.approx(0.05)  # negative -> floor


def test_pruning_and_no_pruning():
    # u1 = (1, 0.1) is larger and goes first; u0's residual is ~0.0995 ||u0||
    V, w = [[1.0, 0.0], [1.0, 0.1]], [1.0, 1.0]
    assert both(V, w)[1].kept == [1, 0]
    assert both(V, w, LasrcConfig(tau=0.5))[1].kept == [1]
    assert both(V, w, LasrcConfig(tau=0.05))[1].kept == [1, 0]
    assert both(V, w, LasrcConfig(tau=0.5, no_pruning=True))[1].kept == [1, 0]


def test_block_gram_by_hand():
    A = [{"q": torch.tensor([[1.0, 0.0]]), "k": torch.eye(2)}, {"q": torch.tensor([[1.0, 1.0]])}]
    B = [{"q": torch.tensor([[1.0], [0.0]]), "k": torch.eye(2)}, {"q": torch.tensor([[1.0], [1.0]])}]
    s = [{"q": 2.0, "k": 0.5}, {"q": 1.0}]
    # q: dW0 = [[2, 0], [0, 0]], dW1 = ones -> <.,.> = 2, norms^2 4 and 4; k: 0.5 I only in adapter 0 -> +0.5
    G = block_gram(A, B, s, ["q", "k"])
    assert G.dtype == F64
    close(G, [[4.5, 2.0], [2.0, 4.0]])


def test_invalid_configs_and_shapes():
    for bad in [dict(tau=-0.1), dict(floor=-0.01), dict(floor=0.6), dict(alpha_max=1.5), dict(guard=-1.0),
                dict(kappa=0.0), dict(tau=float("nan")), dict(align=float("inf"))]:
        with pytest.raises(ScalectlError):
            LasrcConfig(**bad)
    G = torch.eye(3, dtype=F64)
    with pytest.raises(ScalectlError):
        lasrc_gram(G[:2], torch.ones(3))
    with pytest.raises(ScalectlError):
        lasrc_gram(G, torch.ones(2))
    with pytest.raises(ScalectlError):
        lasrc_gram(G, torch.ones(3, 1))
    with pytest.raises(ScalectlError):
        lasrc_gram(G * float("nan"), torch.ones(3))
    with pytest.raises(ScalectlError):
        lasrc_dense(torch.ones(3), torch.ones(3))
    with pytest.raises(ScalectlError):
        lasrc_dense(torch.ones(3, 4), torch.ones(4))
    A, B, s = [{"q": torch.ones(2, 3)}], [{"q": torch.ones(4, 2)}], [{"q": 1.0}]
    with pytest.raises(ScalectlError):
        block_gram(A, B, s, ["k"])  # no adapter has it
    with pytest.raises(ScalectlError):
        block_gram(A, [{"q": torch.ones(4, 3)}], s, ["q"])  # rank mismatch
    with pytest.raises(ScalectlError):
        block_gram(A + [{"q": torch.ones(2, 5)}], B + [{"q": torch.ones(4, 2)}], s + [{"q": 1.0}], ["q"])
    with pytest.raises(ScalectlError):
        block_gram(A, B, [{}], ["q"])  # no scaling


# ----------------------------------------------------------------------------- property tests

CONFIGS = [
    LasrcConfig(),
    LasrcConfig(norm_rescale=False),
    LasrcConfig(tau=0.4),
    LasrcConfig(tau=0.4, no_pruning=True),
    LasrcConfig(fixed_alpha=True),
    LasrcConfig(use_floor=False),
    LasrcConfig(use_guard=False),
    LasrcConfig(kappa=0.5, align=0.7),
]

# weights: exact zeros, or |w| >= 1e-3 (subnormal weights would underflow w^2 in the Gram path)
WEIGHT = st.one_of(st.just(0.0), st.floats(1e-3, 1.5), st.floats(-1.5, -1e-3), st.sampled_from([1.0, -1.0, 0.5]))


@st.composite
def blocks(draw):
    """A random block: K adapters over 1-3 modules, random, with duplicates, or mutually orthogonal."""
    K = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["random", "duplicates", "orthogonal"]))
    mods = [f"m{i}" for i in range(draw(st.integers(1, 3)))]
    dims = {m: (draw(st.integers(2, 12)), draw(st.integers(2, 12))) for m in mods}  # (d_out, d_in)
    if kind == "orthogonal":  # adapter n owns the rows d == n (mod K) of every B: disjoint supports
        dims = {m: (max(do, K), di) for m, (do, di) in dims.items()}
    ranks = draw(st.lists(st.integers(1, 4), min_size=K, max_size=K))
    scal = draw(st.lists(st.floats(0.05, 4.0), min_size=K * len(mods), max_size=K * len(mods)))
    src = list(range(K))  # duplicates: adapter n copies adapter src[n] < n
    if kind == "duplicates":
        src = [n if n == 0 else draw(st.sampled_from([n, *range(n)])) for n in range(K)]
    zero = draw(st.lists(st.integers(0, 7), min_size=K, max_size=K)) if kind == "random" else [1] * K
    w = torch.tensor(draw(st.lists(WEIGHT, min_size=K, max_size=K)), dtype=F64)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    A, B, s = [], [], []
    for n in range(K):
        if src[n] != n:
            A.append(A[src[n]])
            B.append(B[src[n]])
            s.append(s[src[n]])
            continue
        A.append({}), B.append({}), s.append({})
        for j, m in enumerate(mods):
            do, di = dims[m]
            A[n][m] = torch.randn(ranks[n], di, generator=g, dtype=F64)
            Bn = torch.randn(do, ranks[n], generator=g, dtype=F64)
            if kind == "orthogonal":
                Bn[torch.arange(do) % K != n] = 0
            if zero[n] == 0:  # a zero update (B = 0, as at LoRA init)
                Bn.zero_()
            B[n][m] = Bn
            s[n][m] = scal[n * len(mods) + j]
    V = torch.stack([torch.cat([(s[n][m] * B[n][m] @ A[n][m]).flatten() for m in mods]) for n in range(K)])  # (K, D)
    return A, B, s, mods, V, w


@settings(max_examples=60, deadline=None)
@given(blocks())
def test_gram_path_matches_dense(block):
    A, B, s, mods, V, w = block
    G = block_gram(A, B, s, mods)  # (K, K)
    Gd = V @ V.T
    assert (G - Gd).norm() <= 1e-9 * max(float(Gd.norm()), 1e-300)
    lin = float((w @ V).norm())
    u_sum = float((w[:, None] * V).norm(dim=1).sum())
    for cfg in CONFIGS:
        out, ref = lasrc_dense(V, w, cfg)
        blk = lasrc_gram(G, w, cfg)
        # 1e-5 relative to the result's scale; the tiny absolute term covers exact cancellations (s_lin = 0)
        tol = 1e-5 * max(lin, float(out.norm())) + 1e-10 * u_sum
        assert (blk.gamma @ V - out).norm() <= tol, cfg
        assert (ref.gamma @ V - out).norm() <= tol, cfg
        assert blk.order == ref.order and blk.kept == ref.kept and blk.guarded == ref.guarded, cfg
        assert blk.alpha == pytest.approx(ref.alpha, abs=1e-7), cfg
        assert blk.overlap == pytest.approx(ref.overlap, abs=1e-7), cfg
        assert blk.res_ratio == pytest.approx(ref.res_ratio, rel=1e-6, abs=1e-9), cfg
        assert (w == 0).sum() == 0 or blk.gamma[w == 0].abs().max() == 0
        if (w != 0).sum() == 1 and lin > 0:  # one adapter alone: the result is its own update
            assert (out - w @ V).norm() <= 1e-9 * lin


@settings(max_examples=60, deadline=None)
@given(blocks())
def test_structure(block):
    """Duplicates never add a residual; mutually orthogonal adapters give overlap 0 and the linear sum."""
    A, B, s, mods, V, w = block
    blk = lasrc_gram(block_gram(A, B, s, mods), w)
    U = w[:, None] * V
    rows = [tuple(r.tolist()) for r in V]
    for i in blk.kept:  # no two kept adapters are copies of each other
        assert sum(rows[i] == rows[j] for j in blk.kept) == 1
    gram = U @ U.T
    if (gram - torch.diag(gram.diagonal())).abs().max() == 0:  # mutually orthogonal
        assert blk.overlap == pytest.approx(0.0, abs=1e-12)
        assert blk.alpha == pytest.approx(0.05) and not blk.guarded
        assert torch.allclose(blk.gamma @ V, U.sum(0), atol=1e-10 * float(U.norm()) + 1e-300)
