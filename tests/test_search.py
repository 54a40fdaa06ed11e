"""Support-weight search: NGOpt defaults, one attach per search, losses equal the composed models'."""

from __future__ import annotations

import math

import pytest

from scalectl.errors import EvalError
from scalectl.registry import Registry
from scalectl.search import SearchConfig, encode_support, search_weights, support_loss

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
    assert (c.steps, c.lower, c.upper, c.init, c.seed, c.l1, c.batch_size) == (40, -1.5, 1.5, 0.0, 42, 0.05, 5)


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
    real_init = stacked.StackedLora.__init__

    def counting(self, *a, **k):
        attached.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(stacked.StackedLora, "__init__", counting)
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    res = search_weights(bb, factors, SUPPORT, SearchConfig(steps=12))
    assert len(attached) == 1  # attached once, never rebuilt between steps
    assert all(bool((before[k] == v).all()) for k, v in bb.model.state_dict().items())
    assert len(res.history) == 12 and res.history[0]["weights"] == [0.0, 0.0, 0.0]
    for h in res.history:
        assert h["objective"] == pytest.approx(h["loss"] + 0.05 * sum(abs(w) for w in h["weights"]) / 3, abs=1e-5)
        assert all(-1.5 <= w <= 1.5 for w in h["weights"])
    assert res.objective <= min(h["objective"] for h in res.history) + 1e-9
    # the loss the search saw for its weights is the loss of the linear composition with them
    assert res.support_loss == pytest.approx(_composed_loss(reg, bb, ["arith", "sorting", "dates"], res.weights, "linear"),
                                             rel=1e-4)
    again = search_weights(bb, factors, SUPPORT, SearchConfig(steps=12))
    assert [(x, y) for x, y in zip(again.history, res.history) if x != y] == []
    # (NGOpt picks a deterministic optimizer for 3 weights and 12 steps, so the seed need not change the path)


def test_lorahub_rule_matches_lorahub_merger(setup):
    reg, bb, factors = setup
    res = search_weights(bb, factors[:2], SUPPORT, SearchConfig(steps=6), rule="lorahub")
    for h in res.history[1:3]:  # each step's loss is the loss of LoRAHub's merged factors with its weights
        assert h["loss"] == pytest.approx(_composed_loss(reg, bb, ["arith", "sorting"], h["weights"], "lorahub"), rel=1e-4)
    with pytest.raises(EvalError, match="equal ranks"):
        search_weights(bb, factors, SUPPORT, SearchConfig(steps=2), rule="lorahub")


def test_nan_loss_stops_and_reports_step(setup, monkeypatch):
    import scalectl.search as search

    reg, bb, factors = setup
    calls = []
    real = search.support_loss

    def flaky(*a, **k):
        calls.append(1)
        return math.nan if len(calls) == 3 else real(*a, **k)

    monkeypatch.setattr(search, "support_loss", flaky)
    with pytest.raises(EvalError, match="at step 3"):
        search_weights(bb, factors, SUPPORT, SearchConfig(steps=5))
    assert not any(type(m).__name__ == "StackedLoraLinear" for m in bb.model.modules())  # detached after the error


def test_empty_support_target_refused(setup):
    reg, bb, factors = setup
    with pytest.raises(EvalError, match="empty target"):
        search_weights(bb, factors, SUPPORT[:2] + [{"input": "x", "target": " "}], SearchConfig(steps=2))
