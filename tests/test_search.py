"""Support-weight search: LoRAHub's parametrization, loss and schedule (held to transcriptions of sail-sg/lorahub
``lorahub/algorithm.py`` and noname822/iLoraComp ``code/algorithm.py``), one attach per search, losses equal the
composed models'."""

from __future__ import annotations

import math

import pytest

from scalectl.errors import EvalError
from scalectl.registry import Registry
from scalectl.search import SearchConfig, encode_support, search_weights, support_loss

pytestmark = pytest.mark.filterwarnings("ignore:COBYLA:UserWarning")  # the transcribed LoRAHub lines run NGOpt bare

SUPPORT = [{"input": f"sort: c{i} a b", "target": f"a b c{i}"} for i in range(5)]


@pytest.fixture(scope="module")
def setup(llama_base, llama_adapters, tmp_path_factory):
    import os

    from scalectl.backbone import load_backbone

    old = os.environ.get("SCALECTL_HOME")
    os.environ["SCALECTL_HOME"] = str(tmp_path_factory.mktemp("search-home"))
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    factors = [reg.load_factors(n, "tiny") for n in ("arith", "sorting", "dates")]
    bb = load_backbone(str(llama_base), device="cpu")
    yield reg, bb, factors
    if old is not None:
        os.environ["SCALECTL_HOME"] = old


def test_defaults_are_method_md():
    c = SearchConfig()
    assert (c.steps, c.lower, c.upper, c.init, c.seed, c.l1, c.batch_size, c.loss) == \
        (40, -1.5, 1.5, 0.0, 42, 0.05, 5, "lorahub")
    from scalectl.search import two_stage

    assert two_stage(40) == [30, 10]  # iLoraCamp_main.py: step1 = 30, step2 = 10


def _toy(w):
    import numpy as np

    return float(np.sum((np.asarray(w) - np.array([0.7, -0.3, 0.2, 0.0, 1.1])[: len(w)]) ** 2))


def _lorahub_transcript(objective, k, budget, init=None, seed=42):
    """sail-sg/lorahub lorahub/algorithm.py, lorahub_learning: the seeding, parametrization and optimizer lines
    (iLoraComp's stage 2 passes ``init=start_weights``). Returns the points evaluated and the recommendation."""
    import random

    import nevergrad as ng
    import numpy

    seen = []

    def f(w):
        seen.append([float(x) for x in w])
        return objective(w)

    random.seed(seed)
    numpy.random.seed(seed)
    instrum = ng.p.Array(init=[0] * k if init is None else init, upper=[1.5] * k, lower=[-1.5] * k)
    optimizer = ng.optimizers.NGOpt(parametrization=instrum, budget=budget)
    recommendation = optimizer.minimize(f, verbosity=0)
    return seen, [float(x) for x in recommendation.value], instrum


@pytest.mark.parametrize("k,budget", [(3, 12), (5, 40), (2, 3)])
def test_parametrization_and_points_are_lorahubs(k, budget):
    import numpy as np

    from scalectl.search import lorahub_parametrization, minimize

    want_points, want_rec, instrum = _lorahub_transcript(_toy, k, budget)
    ours = lorahub_parametrization(np.zeros(k), -1.5, 1.5, 42)
    assert np.all(np.asarray(ours.sigma.value) == 0.5) and np.all(np.asarray(instrum.sigma.value) == 0.5)  # not 1.0
    got = []
    state = np.random.get_state()
    rec = minimize(lambda w: (got.append([float(x) for x in w]), _toy(w))[1], np.zeros(k), budget,
                   SearchConfig(steps=budget))
    assert (np.random.get_state()[1] == state[1]).all()  # numpy's global generator is left as it was
    assert got == want_points and [float(x) for x in rec] == want_rec
    assert max(abs(v) for v in got[1]) in (0.0, 0.5)  # the first probes step by sigma 0.5 (COBYLA's rhobeg)


def test_two_stage_schedule_is_ilorcomps():
    """Stage 2 is a new optimizer seeded as stage 1, whose init is stage 1's recommendation
    (iLoraComp code/algorithm.py lorahub_learning, mode='succeed')."""
    import numpy as np

    from scalectl.search import minimize

    p1, r1, _ = _lorahub_transcript(_toy, 4, 9)
    p2, r2, _ = _lorahub_transcript(_toy, 4, 3, init=r1)
    got = []
    f = lambda w: (got.append([float(x) for x in w]), _toy(w))[1]  # noqa: E731
    rec = minimize(f, minimize(f, np.zeros(4), 9, SearchConfig()), 3, SearchConfig())
    assert got == p1 + p2 and [float(x) for x in rec] == r2


def test_lorahub_loss_is_sum_of_batch_means_over_examples(setup, t5_base):
    """LoRAHub's default_get_loss: per batch the model's mean target-token loss (``outputs.loss``), summed over
    batches, divided by the number of examples; on a decoder-only and an encoder-decoder model."""
    import torch

    from scalectl.backbone import load_backbone
    from scalectl.search import support_losses
    from scalectl.train import _batch

    for bb in (setup[1], load_backbone(str(t5_base), device="cpu")):
        enc = encode_support(bb, SUPPORT)
        train_loss = 0.0
        for i in range(0, len(enc), 2):  # batch_size 2: three batches of 2, 2, 1
            with torch.no_grad():
                train_loss += float(bb.model(**_batch(bb, enc[i:i + 2])).loss)
        want = train_loss / len(SUPPORT)
        mean, lorahub = support_losses(bb, bb.model, enc, batch_size=2)
        assert lorahub == pytest.approx(want, rel=1e-5)
        assert mean == pytest.approx(support_loss(bb, bb.model, enc, 2), rel=1e-6) and mean != pytest.approx(lorahub)


def _composed_loss(reg, bb, names, weights, merger):
    from scalectl.compose import compose_inputs, load_inputs
    from scalectl.merge.table import resolve_merger
    from scalectl.stacked import merged_weights

    inp = load_inputs(reg, names, pool="tiny")
    comp = compose_inputs(inp, weights, resolve_merger(merger))
    with merged_weights(bb.model, {m: comp.delta(m).float() for m in inp.modules}):
        return support_loss(bb, bb.model, encode_support(bb, SUPPORT))


def test_linear_search_history_and_result_match_merged_model(setup, monkeypatch):
    import scalectl.stacked as stacked

    reg, bb, factors = setup
    attached = []
    real_init = stacked.JobStack.__init__

    def counting(self, *a, **k):
        attached.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(stacked.JobStack, "__init__", counting)
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    res = search_weights(bb, factors, SUPPORT, SearchConfig(steps=12, l1=0.01))  # a light L1: weights move off 0
    assert len(attached) == 1  # attached once, never rebuilt between steps
    assert all(bool((before[k] == v).all()) for k, v in bb.model.state_dict().items())
    assert len(res.history) == 12 and res.history[0]["weights"] == [0.0, 0.0, 0.0]
    for h in res.history:
        assert h["objective"] == pytest.approx(h["loss"] + 0.01 * sum(abs(w) for w in h["weights"]) / 3, abs=1e-5)
        assert h["loss"] == pytest.approx(h["ce"] / 5, rel=1e-5)  # one batch of 5: LoRAHub's loss is its mean / 5
        assert all(-1.5 <= w <= 1.5 for w in h["weights"])
    assert (res.k, res.stages, res.loss) == (3, [12], "lorahub") and res.warning is None  # 12 >= 2(3 + 1)
    assert "below 2(K + 1) = 8" in search_weights(bb, factors, SUPPORT, SearchConfig(steps=7)).warning
    # the loss the search saw for its weights is the loss of the linear composition with them
    assert res.support_loss == pytest.approx(_composed_loss(reg, bb, ["arith", "sorting", "dates"], res.weights, "linear"),
                                             rel=1e-4)
    again = search_weights(bb, factors, SUPPORT, SearchConfig(steps=12, l1=0.01))
    assert [(x, y) for x, y in zip(again.history, res.history) if x != y] == []
    # (NGOpt picks a deterministic optimizer for 3 weights and 12 steps, so the seed need not change the path)


def test_lorahub_rule_matches_lorahub_merger(setup):
    reg, bb, factors = setup
    res = search_weights(bb, factors[:2], SUPPORT, SearchConfig(steps=6), rule="lorahub")
    for h in res.history[1:3]:  # each step's loss is the loss of LoRAHub's merged factors with its weights
        assert h["ce"] == pytest.approx(_composed_loss(reg, bb, ["arith", "sorting"], h["weights"], "lorahub"), rel=1e-4)
    with pytest.raises(EvalError, match="equal ranks"):
        search_weights(bb, factors, SUPPORT, SearchConfig(steps=2), rule="lorahub")


def test_nan_loss_stops_and_reports_step(setup, monkeypatch):
    import scalectl.search as search

    reg, bb, factors = setup
    calls = []
    real = search.lockstep_losses

    def flaky(*a, **k):
        calls.append(1)
        got = real(*a, **k)
        return {j: (math.nan, math.nan) for j in got} if len(calls) == 3 else got

    monkeypatch.setattr(search, "lockstep_losses", flaky)
    with pytest.raises(EvalError, match="at step 3"):
        search_weights(bb, factors, SUPPORT, SearchConfig(steps=5))
    assert not any(type(m).__name__ == "JobsLoraLinear" for m in bb.model.modules())  # detached after the error


def test_empty_support_target_refused(setup):
    reg, bb, factors = setup
    with pytest.raises(EvalError, match="empty target"):
        search_weights(bb, factors, SUPPORT[:2] + [{"input": "x", "target": " "}], SearchConfig(steps=2))


def test_lockstep_searches_are_the_searches_run_alone(setup):
    """search_many advances several searches together (one batched forward pass per step, each search's slice
    through its own branch): every trajectory, weight and loss is bit-identical to the search run by itself, for
    both rules, mixed K, one and two stages, and support batches split across forward passes."""
    import dataclasses

    import scalectl.search as search
    from scalectl.search import SearchJob, search_many, two_stage

    reg, bb, factors = setup
    cfg = SearchConfig(steps=9, batch_size=2)  # 3 support batches of 2, 2, 1
    jobs = [SearchJob(factors[:2], cfg, "lorahub", two_stage(9)), SearchJob(factors[:2], cfg, "linear"),
            SearchJob(factors[1::-1], cfg, "lorahub"), SearchJob(factors[::-1], SearchConfig(steps=5, batch_size=2), "linear")]
    alone = [search_weights(bb, j.factors, SUPPORT, j.cfg, rule=j.rule, stages=j.stages) for j in jobs]
    together = search_many(bb, jobs, SUPPORT)
    timing = ("seconds", "forward_seconds", "lockstep")
    strip = lambda r: {k: v for k, v in dataclasses.asdict(r).items() if k not in timing}  # noqa: E731
    assert [strip(r) for r in together] == [strip(r) for r in alone]
    assert [r.lockstep for r in together] == [4] * 4 and [r.lockstep for r in alone] == [1] * 4
    assert [len(r.history) for r in together] == [9, 9, 9, 5]  # the short search stops early; the others go on
    old = search.LOGITS_BYTES
    try:  # one copy per forward pass: the same results again
        search.LOGITS_BYTES = {"cpu": 1, "cuda": 1}
        assert [strip(r) for r in search_many(bb, jobs[:2], SUPPORT)] == [strip(r) for r in alone[:2]]
    finally:
        search.LOGITS_BYTES = old
    assert not any(type(m).__name__ == "JobsLoraLinear" for m in bb.model.modules())
