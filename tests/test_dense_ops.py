"""Dense merge operators (scalectl.merge.dense): cross-checked against PEFT's merge_utils, plus mask and SDP laws."""

from __future__ import annotations

import hashlib
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft.utils import merge_utils as mu

from scalectl.errors import ScalectlError
from scalectl.merge import dense

# PEFT warns on every density >= 1 ("no pruning will be performed"); that is the case being checked.
pytestmark = pytest.mark.filterwarnings("ignore:The density .* no pruning:UserWarning")

SHAPES = [(8, 8), (5, 13), (1, 7), (16, 4), (3, 4, 5)]
DENSITIES = [0.01, 0.1, 0.3, 0.5, 0.77, 0.9, 1.0]
METHODS = ["total", "frequency"]


def _stack(k: int, shape, seed: int, integer: bool = False) -> torch.Tensor:
    """K random deltas (K, *shape); integer-valued ones have many ties in magnitude."""
    g = torch.Generator().manual_seed(seed)
    if integer:
        return torch.randint(-3, 4, (k, *shape), generator=g).float()
    return torch.randn((k, *shape), generator=g)


def _weights(k: int, seed: int) -> torch.Tensor:
    """Weights mixing positives, negatives and zeros."""
    g = torch.Generator().manual_seed(seed + 1000)
    w = torch.randn(k, generator=g)
    if k >= 2:
        w[1] = 0.0
    if k >= 3:
        w[2] = -abs(w[2]) - 0.1
    return w


def _cases():
    for i, (shape, k, method) in enumerate(itertools.product(SHAPES, range(1, 6), METHODS)):
        yield pytest.param(shape, k, method, i, id=f"{'x'.join(map(str, shape))}-K{k}-{method}")


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ PEFT cross-checks


@pytest.mark.parametrize(("shape", "k", "method", "seed"), list(_cases()))
def test_ties_matches_peft(shape, k, method, seed):
    for integer in (False, True):
        deltas = _stack(k, shape, seed, integer=integer)
        w = _weights(k, seed)
        for density in DENSITIES:
            ours = dense.ties(deltas, w, density, method)
            ref = mu.ties(list(deltas), w, density, majority_sign_method=method)
            _close(ours, ref)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_magnitude_prune_matches_peft(shape, density):
    for seed, integer in [(0, False), (1, True), (2, False)]:
        delta = _stack(1, shape, seed, integer=integer)[0]
        ref = delta if density >= 1 else mu.magnitude_based_pruning(delta, density)
        assert torch.equal(dense.magnitude_prune(delta, density), ref)


@pytest.mark.parametrize(("shape", "k", "method", "seed"), [c for c in _cases() if c.values[2] == "total"])
def test_prune_and_sum_matches_peft(shape, k, method, seed):
    deltas = _stack(k, shape, seed, integer=seed % 2 == 1)
    w = _weights(k, seed)
    for density in DENSITIES:
        ours = dense.prune_and_sum(deltas, w, density)
        _close(ours, mu.magnitude_prune(list(deltas), w, density))
        pruned = [mu.magnitude_based_pruning(d, density) if density < 1 else d for d in deltas]
        _close(ours, mu.task_arithmetic(pruned, w))


def test_sign_and_disjoint_building_blocks_match_peft():
    deltas = _stack(4, (9, 11), 7, integer=True)  # zeros and exact sign ties
    w = _weights(4, 7)
    for method in METHODS:
        agree = dense.majority_sign(deltas, method)
        assert agree.dtype == torch.bool
        assert torch.equal(agree, mu.calculate_majority_sign_mask(deltas, method=method))
        weighted = deltas * w.view(-1, 1, 1)
        _close(dense.disjoint_mean(weighted, agree), mu.disjoint_merge(weighted, agree))


def _peft_with_our_masks(monkeypatch, fn, deltas, w, p, seed, adapters, module, **kw):
    """Run a PEFT DARE merge with torch.bernoulli replaced by our keep masks, in adapter order."""
    masks = [dense.keep_mask(d.shape, p, seed, a, module, salt="dare") for d, a in zip(deltas, adapters)]
    calls = iter(masks)

    def fake_bernoulli(probs, *args, **kwargs):
        assert torch.allclose(probs, torch.full_like(probs, 1 - p))
        return next(calls).to(probs.dtype)

    monkeypatch.setattr(torch, "bernoulli", fake_bernoulli)
    try:
        out = fn(list(deltas), w, 1 - p, **kw)
    finally:
        monkeypatch.undo()
    assert next(calls, None) is None, "PEFT drew fewer masks than adapters"
    return out


@pytest.mark.parametrize("shape", [(8, 8), (5, 13), (3, 4, 5)])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dare_matches_peft_given_same_masks(monkeypatch, shape, k, p):
    deltas = _stack(k, shape, k * 31 + len(shape))
    w = _weights(k, k)
    adapters = [f"adapter{i}" for i in range(k)]
    module = "model.layers.0.self_attn.q_proj"
    ours = dense.dare_linear(deltas, w, p, 11, adapters, module)
    _close(ours, _peft_with_our_masks(monkeypatch, mu.dare_linear, deltas, w, p, 11, adapters, module))
    for method in METHODS:
        ours = dense.dare_ties(deltas, w, p, 11, adapters, module, method)
        ref = _peft_with_our_masks(
            monkeypatch, mu.dare_ties, deltas, w, p, 11, adapters, module, majority_sign_method=method
        )
        _close(ours, ref)
    # and through PEFT's building blocks on our already-dropped tensors
    dropped = [dense.dare_drop(d, p, 11, a, module) for d, a in zip(deltas, adapters)]
    _close(dense.dare_linear(deltas, w, p, 11, adapters, module), mu.task_arithmetic(dropped, w))
    stacked = torch.stack(dropped)
    agree = mu.calculate_majority_sign_mask(stacked)
    weighted = stacked * w.view(-1, *[1] * len(shape))
    _close(dense.dare_ties(deltas, w, p, 11, adapters, module), mu.disjoint_merge(weighted, agree))


def test_dare_drop_rescales_survivors():
    delta = _stack(1, (50, 40), 3)[0]
    out = dense.dare_drop(delta, 0.3, 5, "a", "m")
    keep = dense.keep_mask(delta.shape, 0.3, 5, "a", "m", salt="dare")
    assert torch.equal(out == 0, ~keep | (delta == 0))
    _close(out[keep], delta[keep] / 0.7)


def test_drop_rate_zero_is_identity():
    deltas = _stack(3, (6, 7), 4)
    w = torch.tensor([1.0, -0.5, 2.0])
    names = ["a", "b", "c"]
    assert torch.equal(dense.dare_drop(deltas[0], 0.0, 1, "a", "m"), deltas[0])
    assert torch.equal(dense.sdp(deltas[0], 0.0, 1, "a", "m"), deltas[0])
    _close(dense.dare_linear(deltas, w, 0.0, 1, names, "m"), mu.task_arithmetic(list(deltas), w))
    assert dense.keep_mask((6, 7), 0.0, 1, "a", "m").all()


# ------------------------------------------------------------------------------------ deterministic masks


def test_mask_seed_follows_spec():
    key = "7|adapterA|layers.3.mlp.down_proj"
    expected = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") & ((1 << 63) - 1)
    g = torch.Generator(device="cpu").manual_seed(expected)
    assert torch.equal(dense.keep_mask((30, 20), 0.4, 7, "adapterA", "layers.3.mlp.down_proj"),
                       torch.rand((30, 20), generator=g) >= 0.4)
    dare_key = "dare|7|adapterA|layers.3.mlp.down_proj"
    expected = int.from_bytes(hashlib.sha256(dare_key.encode()).digest()[:8], "big") & ((1 << 63) - 1)
    g = torch.Generator(device="cpu").manual_seed(expected)
    assert torch.equal(dense.keep_mask((30, 20), 0.4, 7, "adapterA", "layers.3.mlp.down_proj", salt="dare"),
                       torch.rand((30, 20), generator=g) >= 0.4)


def test_masks_are_pure_functions_of_their_key():
    first = dense.keep_mask((64, 32), 0.5, 3, "a", "m")
    torch.manual_seed(12345)
    torch.rand(1000)
    second = dense.keep_mask((64, 32), 0.5, 3, "a", "m")
    torch.manual_seed(999)
    third = dense.keep_mask(torch.Size([64, 32]), 0.5, 3, "a", "m")
    assert first.dtype == torch.bool and first.shape == (64, 32)
    assert torch.equal(first, second) and torch.equal(first, third)
    # the global RNG is not advanced
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    dense.keep_mask((64, 32), 0.5, 3, "a", "m")
    assert torch.equal(torch.rand(5), expected)


def test_different_keys_give_different_masks():
    base = dense.keep_mask((64, 32), 0.5, 3, "a", "m")
    for other in [
        dense.keep_mask((64, 32), 0.5, 4, "a", "m"),
        dense.keep_mask((64, 32), 0.5, 3, "b", "m"),
        dense.keep_mask((64, 32), 0.5, 3, "a", "n"),
        dense.keep_mask((64, 32), 0.5, 3, "a", "m", salt="dare"),
    ]:
        assert not torch.equal(base, other)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_fraction_close_to_p(p):
    keep = dense.keep_mask((200, 200), p, 0, "adapter", "module")
    assert abs((~keep).float().mean().item() - p) < 0.02
    delta = torch.randn(200, 200, generator=torch.Generator().manual_seed(1))
    assert abs((dense.dare_drop(delta, p, 0, "adapter", "module") == 0).float().mean().item() - p) < 0.02


# ------------------------------------------------------------------------------------ SDP


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdp_preserves_norm(p, dtype):
    delta = torch.randn(40, 30, generator=torch.Generator().manual_seed(2), dtype=dtype)
    for rescale in (True, False):
        out = dense.sdp(delta, p, 9, "a", "m", rescale=rescale, preserve_norm=True)
        assert out.dtype == dtype
        rel = abs(torch.linalg.norm(out) - torch.linalg.norm(delta)) / torch.linalg.norm(delta)
        assert rel.item() < 1e-6
        keep = dense.keep_mask(delta.shape, p, 9, "a", "m")
        assert torch.equal(out != 0, keep)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_sdp_without_norm_preservation(p):
    delta = torch.randn(40, 30, generator=torch.Generator().manual_seed(3))
    keep = dense.keep_mask(delta.shape, p, 9, "a", "m").float()
    _close(dense.sdp(delta, p, 9, "a", "m", preserve_norm=False), keep * delta / (1 - p))
    _close(dense.sdp(delta, p, 9, "a", "m", rescale=False, preserve_norm=False), keep * delta)


def test_sdp_defaults_and_differs_from_dare():
    delta = torch.randn(40, 30, generator=torch.Generator().manual_seed(4))
    assert torch.equal(dense.sdp(delta, 0.5, 1, "a", "m"), dense.sdp(delta, 0.5, 1, "a", "m", True, True))
    assert not torch.equal(dense.sdp(delta, 0.5, 1, "a", "m") != 0, dense.dare_drop(delta, 0.5, 1, "a", "m") != 0)


def test_sdp_zero_delta_stays_zero():
    for preserve in (True, False):
        out = dense.sdp(torch.zeros(10, 12), 0.5, 1, "a", "m", preserve_norm=preserve)
        assert torch.equal(out, torch.zeros(10, 12))
    # a nonzero delta whose surviving entries are all zero: no NaN either
    delta = torch.zeros(10, 12)
    keep = dense.keep_mask((10, 12), 0.5, 1, "a", "m")
    delta[~keep] = 1.0
    out = dense.sdp(delta, 0.5, 1, "a", "m")
    assert not out.isnan().any() and torch.equal(out, torch.zeros(10, 12))


# ------------------------------------------------------------------------------------ properties

_finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def _matrices(draw):
    rows = draw(st.integers(1, 6))
    cols = draw(st.integers(1, 6))
    values = draw(st.lists(_finite, min_size=rows * cols, max_size=rows * cols))
    return torch.tensor(values, dtype=torch.float32).reshape(rows, cols)


@settings(max_examples=50, deadline=None)
@given(_matrices())
def test_density_one_is_identity(delta):
    assert torch.equal(dense.magnitude_prune(delta, 1.0), delta)


@settings(max_examples=50, deadline=None)
@given(_matrices(), st.sampled_from(METHODS))
def test_single_adapter_ties_density_one_is_itself(delta, method):
    out = dense.ties(delta.unsqueeze(0), torch.tensor([1.0]), 1.0, method)
    assert torch.equal(out, delta)


@settings(max_examples=50, deadline=None)
@given(_matrices(), st.floats(min_value=0.01, max_value=1.0))
def test_magnitude_prune_keeps_the_largest(delta, density):
    out = dense.magnitude_prune(delta, density)
    kept = out != 0
    k = delta.numel() if density >= 1 else int(density * delta.numel())
    assert kept.sum().item() <= k
    assert torch.equal(out[kept], delta[kept])
    if kept.any() and (~kept).any():
        assert delta[~kept].abs().max() <= delta[kept].abs().min()


# ------------------------------------------------------------------------------------ validation

_D = _stack(2, (4, 5), 0)
_W = torch.tensor([1.0, 0.5])


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2, float("nan")])
def test_bad_density(density):
    msg = "density must be in \\(0, 1\\]"
    with pytest.raises(ScalectlError, match=msg):
        dense.magnitude_prune(_D[0], density)
    with pytest.raises(ScalectlError, match=msg):
        dense.prune_and_sum(_D, _W, density)
    with pytest.raises(ScalectlError, match=msg):
        dense.ties(_D, _W, density)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_bad_drop_rate(p):
    msg = "drop rate must be in \\[0, 1\\)"
    for call in [
        lambda: dense.keep_mask((4, 5), p, 0, "a", "m"),
        lambda: dense.dare_drop(_D[0], p, 0, "a", "m"),
        lambda: dense.sdp(_D[0], p, 0, "a", "m"),
        lambda: dense.dare_linear(_D, _W, p, 0, ["a", "b"], "m"),
        lambda: dense.dare_ties(_D, _W, p, 0, ["a", "b"], "m"),
    ]:
        with pytest.raises(ScalectlError, match=msg):
            call()


def test_bad_sign_method():
    with pytest.raises(ScalectlError, match="unknown sign method 'median'"):
        dense.ties(_D, _W, 0.5, "median")
    with pytest.raises(ScalectlError, match="unknown sign method"):
        dense.majority_sign(_D, "median")
    with pytest.raises(ScalectlError, match="unknown sign method"):
        dense.dare_ties(_D, _W, 0.5, 0, ["a", "b"], "m", "median")


def test_shape_mismatch():
    with pytest.raises(ScalectlError, match="weights must have shape \\(2,\\)"):
        dense.ties(_D, torch.tensor([1.0, 2.0, 3.0]), 0.5)
    with pytest.raises(ScalectlError, match="weights must have shape"):
        dense.prune_and_sum(_D, torch.tensor([[1.0, 2.0]]), 0.5)
    with pytest.raises(ScalectlError, match="weights must have shape"):
        dense.dare_linear(_D, torch.tensor([1.0]), 0.5, 0, ["a", "b"], "m")
    with pytest.raises(ScalectlError, match="one adapter name per delta"):
        dense.dare_ties(_D, _W, 0.5, 0, ["a"], "m")
    with pytest.raises(ScalectlError, match="non-empty stack"):
        dense.ties(torch.zeros(0, 3, 3), torch.zeros(0), 0.5)
    with pytest.raises(ScalectlError, match="agree mask shape"):
        dense.disjoint_mean(_D, torch.ones(2, 4, 4, dtype=torch.bool))


def _mergekit_consensus(deltas: torch.Tensor, weights: torch.Tensor, method: str) -> torch.Tensor:
    """arcee-ai/mergekit merge_methods/generalized_task_arithmetic.py, GTATask.execute with a consensus method and
    normalize on, and get_mask (transcribed; the sparsified deltas come in)."""
    weights = weights.clone()
    while len(deltas.shape) > len(weights.shape):
        weights.unsqueeze_(-1)
    weighted_deltas = deltas * weights
    sign = weighted_deltas.sign()
    if method == "sum":
        majority_sign = (weighted_deltas.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
    else:
        majority_sign = (sign.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
    mask = sign == majority_sign
    mixed_delta = (weighted_deltas * mask).sum(dim=0)
    divisor = (weights * mask).sum(dim=0)
    divisor[divisor == 0] = 1
    return mixed_delta / divisor


@pytest.mark.parametrize("shape,k,method", [((8, 8), 3, "total"), ((5, 13), 4, "frequency"), ((16, 4), 5, "total")])
def test_ties_weighted_sign_election_is_mergekits(shape, k, method):
    deltas, w = _stack(k, shape, 7), _weights(k, 7)
    pruned = torch.stack([dense.magnitude_prune(d, 0.5) for d in deltas])
    want = _mergekit_consensus(pruned, w, "sum" if method == "total" else "count")
    got = dense.ties(deltas, w, 0.5, method, election="weighted")
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, dense.ties(deltas, w, 0.5, method), atol=1e-6)  # PEFT's differs here


def test_dare_ties_weighted_sign_election_is_mergekits():
    deltas, w = _stack(4, (6, 9), 3), _weights(4, 3)
    names = ["a", "b", "c", "d"]
    dropped = torch.stack([dense.dare_drop(d, 0.3, 42, n, "m") for d, n in zip(deltas, names)])
    got = dense.dare_ties(deltas, w, 0.3, 42, names, "m", election="weighted")
    assert torch.allclose(got, _mergekit_consensus(dropped, w, "sum"), atol=1e-6)


def test_negative_weights_warn_and_sign_election_is_a_parameter(llama_adapters):
    from scalectl.compose import compose_inputs, load_inputs
    from scalectl.merge.table import MergeError, resolve_merger
    from scalectl.registry import Registry

    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters[:2]], pool="tiny")
    inp = load_inputs(reg, ["arith", "sorting"], pool="tiny")
    comp = compose_inputs(inp, [0.8, -0.4], resolve_merger("ties"))
    assert comp.warnings and "sign_election=weighted is mergekit's" in comp.warnings[0]
    assert not compose_inputs(inp, [0.8, 0.4], resolve_merger("ties")).warnings
    weighted = compose_inputs(inp, [0.8, -0.4], resolve_merger("ties", {"sign_election": "weighted"}))
    m = inp.modules[0]
    assert not torch.allclose(weighted.delta(m), comp.delta(m))
    with pytest.raises(MergeError, match="sign_election must be unweighted or weighted"):
        resolve_merger("dare-ties", {"sign_election": "both"})
