"""`scalectl audit views|ablations|calibration|compat|errors` and `scalectl report --html`, checked by hand on small
synthetic runs (no model; tiny real adapters for compat), and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from scalectl import audit
from scalectl.audit import ERROR_RULES, classify_errors, correlation, coverage_risk, retrieval_miss
from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.methods import get as get_method
from scalectl.methods.scale import aggregate
from scalectl.plots import PNG_MAGIC
from scalectl.registry import Registry
from scalectl.runrecords import (
    GroupSummary,
    PathCost,
    PathRecord,
    PlanSummary,
    QueryRecord,
    RunSummary,
    TaskScoreRecord,
    ViewAnswer,
    ViewsPlanSummary,
    ViewsRecord,
)
from scalectl.tasks.bbh import exact_match, normalize

runner = CliRunner()
BASE = "huggingfacetb/smollm2-135m-instruct"
VIEWS = ("a", "b", "c")

# Two tasks, three views. Per query: (reference, {view: answer}). Support losses per task (lower = more trusted).
SCALE_DATA = {
    "bbh/t1": [("x", {"a": "x", "b": "x", "c": "x"}),   # all right
               ("x", {"a": "y", "b": "x", "c": "x"}),   # support: a (omega .665) says y: wrong; uniform: x right
               ("x", {"a": "x", "b": "y", "c": "z"}),   # support and uniform (tie -> lowest loss a): x right
               ("x", {"a": "y", "b": "y", "c": "x"})],  # support/uniform/best-view wrong, c right
    "bbh/t2": [("1", {"a": "1", "b": "2", "c": "1"}),   # support: b (.505) beats a + c (.495): wrong; uniform right
               ("1", {"a": "3", "b": "3", "c": "3"})],  # every view wrong
}
LOSSES = {"bbh/t1": {"a": 1.0, "b": 2.0, "c": 3.0}, "bbh/t2": {"a": 0.5, "b": 0.4, "c": 3.0}}


def _summary(recs, plans=None, path_cost=None):
    """The stored summary of a run with these records (as `eval` writes it), its plans and path cost."""
    tasks = []
    for t in dict.fromkeys(r["task"] for r in recs):
        cs = [bool(r["correct"]) for r in recs if r["task"] == t]
        tasks.append(TaskScoreRecord(task=t, n=len(cs), correct=sum(cs), accuracy=sum(cs) / len(cs), extracted_accuracy=0.0))
    return RunSummary(tasks=tasks, macro_accuracy=sum(x.accuracy for x in tasks) / len(tasks), macro_extracted=0.0,
                      n_queries=len(recs), plans=plans, path_cost=path_cost or PathCost()).to_dict()


def _group(label="support-0", weights=(0.7,), support_loss=None, search=None, merger="lasrc"):
    """One decoding path of a plan: its label, searched weights, support loss and search (history)."""
    return GroupSummary(label=label, merger=merger, params=None, candidates=[f"m{i}" for i in range(len(weights))],
                        weights=list(weights), queries=1, support_loss=support_loss, search=search)


def _plan(groups, support_ids=("s0",), retrieval=None, **kw):
    return PlanSummary(support_ids=list(support_ids), retrieval=retrieval, notes=[], seconds={}, groups=list(groups), **kw)


def _views_plan(views):
    """SCALE's plan of one task: one plan per view."""
    return ViewsPlanSummary(views=views, view_losses={v: p.support_loss or 0.0 for v, p in views.items()},
                            paths_per_query=len(views))


def make_scale(reg, data=SCALE_DATA, losses=LOSSES, sdp=True, label=None, groups=None, derive=True):
    """A SCALE run as `eval --method scale` records it: the support aggregation of each query from its views' answers."""
    views = list(next(iter(losses.values())))
    cfg = {"tasks": list(data), "base_model": BASE, "queries": {t: len(q) for t, q in data.items()},
           "method_config": {"method": "scale", "views": views, "sdp_rate": 0.5 if sdp else 0.0, "scale_merger": "lasrc",
                             "merger_params": {}, "search": {"seed": 42}, "pool": "p"}}
    rid = reg.create_run("eval", "scale", cfg, base_model=BASE, label=label)
    recs = []
    for t, qs in data.items():
        for i, (ref, ans) in enumerate(qs):
            norm = {v: normalize(a) for v, a in ans.items()}
            _, view, agree = aggregate(norm, losses[t], "support")
            ok = exact_match(ans[view], ref)
            recs.append(QueryRecord(
                task=t, query_id=f"q{i}", idx=i, input_hash=f"h{t}{i}", raw_output=ans[view], prediction=ans[view],
                normalized=norm[view], reference=ref, correct=ok, extracted=ans[view], extracted_correct=ok,
                extra=ViewsRecord(aggregation="support", chosen_view=view, agreement=round(agree, 6), view_losses=losses[t],
                                  views={v: ViewAnswer(output=ans[v], normalized=norm[v], correct=exact_match(ans[v], ref))
                                         for v in ans},
                                  support_ids=["s0"])).to_dict())
    reg.add_records(rid, recs)
    merger = "sdp+lasrc" if sdp else "lasrc"
    plans = {t: _views_plan({v: _plan((groups or {}).get((t, v)) or [
        _group(merger=merger, support_loss=L, search={"history": [{"step": 1, "weights": [0.0], "loss": 9.0}]})],
        support_loss=L, cluster_losses=[L]) for v, L in losses[t].items()}) for t in data}
    reg.finish_run(rid, "done", summary=_summary(recs, plans=plans, path_cost=PathCost(
        paths_per_query=float(len(views)), compose_seconds=1.5, decode_seconds=2.0, peak_rss_mb=100.0)))
    if derive:
        get_method("scale").derive(reg, rid)
    return rid


def make_run(reg, method, correct, config=None, extracted=None, extra=None, label=None):
    """A plain run: ``correct`` maps task -> 0/1 per query (ids q0, q1, ...; input hashes as make_scale's)."""
    cfg = {"tasks": list(correct), "base_model": BASE, **(config or {})}
    rid = reg.create_run("eval", method, cfg, base_model=BASE, label=label)
    recs = []
    for t, cs in correct.items():
        for i, c in enumerate(cs):
            recs.append(QueryRecord(task=t, query_id=f"q{i}", idx=i, input_hash=f"h{t}{i}", raw_output="o", prediction="o",
                                    normalized="o", reference="r", correct=c, extracted="o",
                                    extracted_correct=c if extracted is None else extracted[t][i],
                                    extra=None if extra is None else extra[t][i]).to_dict())
    reg.add_records(rid, recs)
    reg.finish_run(rid, "done", summary=_summary(recs))
    return rid


@pytest.fixture
def reg(monkeypatch):
    from scalectl import report

    monkeypatch.setattr(report.console, "_width", 250)  # wide tables: cells do not fold
    return Registry()


def _json(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _fails(args, *words):
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    msg = " ".join(r.output.split())
    assert "error:" in msg and "Traceback" not in r.output, r.output
    for w in words:
        assert w in msg, (w, msg)
    return msg


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temp file left beside it


# ---------------------------------------------------------------- views


def test_views_by_hand(reg):
    rid = make_scale(reg)
    res = audit.views(reg, rid)
    t1, t2 = res["tasks"]
    assert res["views"] == list(VIEWS) and not res["notes"]  # the three derived runs exist
    assert t1["view_accuracy"] == {"a": 0.5, "b": 0.5, "c": 0.75}
    assert (t1["support"], t1["uniform"], t1["best_view"], t1["oracle"], t1["any_view_correct"]) == (0.5, 0.75, 0.5, 0.75, 1.0)
    assert t1["oracle_view"] == "c" and t1["headroom"] == pytest.approx(0.25) and t1["lowest_loss_view"] == "a"
    assert t2["view_accuracy"] == {"a": 0.5, "b": 0.0, "c": 0.5}
    assert (t2["support"], t2["uniform"], t2["best_view"], t2["oracle"], t2["any_view_correct"]) == (0.0, 0.5, 0.0, 0.5, 0.5)
    assert t2["oracle_view"] == "a"  # a and c tie on accuracy: the lower support loss
    m = res["macro"]
    assert m["view_accuracy"] == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.625})
    assert [m[k] for k in ("support", "uniform", "best_view", "oracle", "any_view_correct", "headroom")] == \
        pytest.approx([0.25, 0.625, 0.25, 0.625, 0.75, 0.375])
    assert res["path_cost"]["paths_per_query"] == 3.0 and set(res["derived"]) == {"uniform", "best-view", "oracle"}
    # a derived run resolves to its SCALE parent; without derived runs the aggregations are recomputed, same numbers
    oracle = res["derived"]["oracle"]
    assert audit.views(reg, oracle)["tasks"] == res["tasks"]
    rid2 = make_scale(Registry(reg.path), derive=False, label="again")
    res2 = audit.views(reg, rid2)
    assert res2["tasks"] == res["tasks"] and len(res2["notes"]) == 3 and all("recomputed" in n for n in res2["notes"])


def test_views_cli_json_csv_and_refusals(reg, tmp_path):
    rid = make_scale(reg)
    out = _json(["audit", "views", "--json"])  # default: the latest done scale run
    assert out["run"] == rid and out["macro"]["headroom"] == pytest.approx(0.375)
    r = runner.invoke(app, ["audit", "views", "--run", rid, "--csv", str(tmp_path / "v.csv")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "USE QUERY LABELS" in text and "3 decoded paths per query (3x one view)" in text
    rows = list(csv.DictReader(open(tmp_path / "v.csv")))
    assert [x["task"] for x in rows] == ["bbh/t1", "bbh/t2", "macro"]
    assert float(rows[0]["view:c"]) == 0.75 and float(rows[2]["oracle"]) == pytest.approx(0.625)
    zs = make_run(reg, "zero-shot", {"bbh/t1": [1, 0, 0, 0]})
    _fails(["audit", "views", "--run", zs], "not a SCALE run")
    _fails(["audit", "views", "--run", "nope"], "no run or method 'nope'")


# ---------------------------------------------------------------- calibration


def test_coverage_risk_by_hand():
    # confidences with a tie: 0.9 (right), 0.7 (wrong), 0.7 (right), 0.2 (wrong)
    cr = coverage_risk([0.7, 0.9, 0.2, 0.7], [0, 1, 0, 1])
    pts = [(p["threshold"], p["covered"], p["coverage"], p["risk"]) for p in cr["points"]]
    assert pts == [(0.9, 1, 0.25, 0.0), (0.7, 3, 0.75, pytest.approx(1 / 3)), (0.2, 4, 1.0, 0.5)]
    assert cr["aurc"] == pytest.approx(0.0 * 0.25 + (1 / 3) * 0.5 + 0.5 * 0.25)
    assert cr["full_risk"] == 0.5 and cr["n"] == 4
    # the result does not depend on the order of tied queries
    assert coverage_risk([0.7, 0.7, 0.9, 0.2], [1, 0, 1, 0]) == cr
    with pytest.raises(ValueError):
        coverage_risk([0.5], [1, 0])


def test_correlation_matches_scipy_and_undefined_cases():
    x, y = [1.0, 2.0, 3.0, 0.5, 0.4, 3.0], [0.5, 0.5, 0.75, 0.5, 0.0, 0.5]
    c = correlation(x, y)
    assert c["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert c["pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue)
    assert c["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert c["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue)
    assert correlation([1, 2], [1, 2])["pearson"] is None  # fewer than 3 points
    assert correlation([1, 2, 3], [1, 1, 1])["spearman"] is None  # a constant side


def test_calibration_by_hand(reg):
    rid = make_scale(reg)
    res = audit.calibration(reg, rid)
    pts = [(p["task"], p["view"], p["support_loss"], p["accuracy"]) for p in res["points"]]
    assert pts == [("bbh/t1", "a", 1.0, 0.5), ("bbh/t1", "b", 2.0, 0.5), ("bbh/t1", "c", 3.0, 0.75),
                   ("bbh/t2", "a", 0.5, 0.5), ("bbh/t2", "b", 0.4, 0.0), ("bbh/t2", "c", 3.0, 0.5)]
    xs, ys = [p[2] for p in pts], [p[3] for p in pts]
    assert res["correlation"]["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic)
    assert res["correlation"]["spearman"] == pytest.approx(stats.spearmanr(xs, ys).statistic)
    assert res["lowest_loss_best"] == {"tasks": 0, "n_tasks": 2}  # a on t1 (.5 < .75), b on t2 (0 < .5)
    # agreement = omega of the chosen answer: t1 q0 and t2 q1 unanimous (1.0), t1 q3 a+b (w_a + w_b),
    # t1 q1 and q2 a alone (w_a, tied), t2 q0 b alone
    w1 = np.exp(-np.array([1.0, 2.0, 3.0]))
    w1 /= w1.sum()
    w2 = np.exp(-np.array([0.5, 0.4, 3.0]))
    w2 /= w2.sum()
    got = [(p["threshold"], p["covered"], p["risk"]) for p in res["coverage_risk"]["points"]]
    want = [(1.0, 2, 1 / 2), (w1[0] + w1[1], 3, 2 / 3), (w1[0], 5, 3 / 5), (w2[1], 6, 4 / 6)]
    assert len(got) == len(want)
    for (th, n, risk), (th2, n2, risk2) in zip(got, want):
        assert th == pytest.approx(th2, abs=1e-6) and n == n2 and risk == pytest.approx(risk2)


def test_calibration_cli_png_json_csv(reg, tmp_path):
    rid = make_scale(reg)
    png = tmp_path / "plots" / "cal.png"
    out = _json(["audit", "calibration", "--run", rid, "--png", str(png), "--json", "--csv", str(tmp_path / "c.csv")])
    assert out["run"] == rid and len(out["coverage_risk"]["points"]) == 4
    _png_ok(png)
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [x["section"] for x in rows].count("coverage-risk") == 4 and [x["section"] for x in rows].count("loss-accuracy") == 6
    r = runner.invoke(app, ["audit", "calibration", "--run", rid])
    assert r.exit_code == 0 and "Pearson r" in " ".join(r.stdout.split())
    _fails(["audit", "calibration", "--run", rid, "--png", str(tmp_path / "c.csv" / "x.png")], "cannot write")
    zs = make_run(reg, "zero-shot", {"bbh/t1": [1, 0, 0, 0]})
    _fails(["audit", "calibration", "--run", zs], "not a SCALE run")


# ---------------------------------------------------------------- ablations

SW = {"no_norm_rescale": False, "no_pruning": False, "fixed_alpha": False, "no_floor": False, "no_guard": False}
LASRC_DEFAULTS = {"tau": 0.0, "alpha_max": 0.5, "floor": 0.05, "guard": 0.3, "kappa": 1.0, "align": 0.0, **SW}


def _composition(switch=None, weights=(0.5, 0.5)):
    params = {**LASRC_DEFAULTS, **({switch: True} if switch else {})}
    return {"composition": {"merger": "lasrc", "params": params, "sdp": None, "adapters": [{"name": "u"}, {"name": "v"}],
                            "weights": list(weights)}}


def _method(params=None):
    return {"method_config": {"method": "lasrc", "view": "balanced", "merger_params": params or {}, "search": {"seed": 42},
                              "pool": "p"}}


def test_ablations_by_hand(reg):
    from scalectl.merge.table import resolve_merger

    assert set(SW) <= set(resolve_merger("lasrc", {}).params)  # the switches this test writes are the real ones
    ref = make_run(reg, "lasrc", {"bbh/t1": [1, 1, 0, 0], "bbh/t2": [1, 0]}, config=_composition())   # macro .5
    nn = make_run(reg, "lasrc", {"bbh/t1": [1, 1, 1, 0], "bbh/t2": [0, 0]}, config=_composition("no_norm_rescale"))  # .375
    fa = make_run(reg, "lasrc", {"bbh/t1": [1, 1, 1, 1], "bbh/t2": [1, 1]}, config=_composition("fixed_alpha"))  # 1.0
    other = make_run(reg, "lasrc", {"bbh/t1": [0, 0, 0, 0], "bbh/t2": [1, 1]}, config=_composition("no_guard", (1.0, 0.0)))
    mref = make_run(reg, "lasrc", {"bbh/t1": [0, 0, 0, 0], "bbh/t2": [0, 0]}, config=_method())
    mng = make_run(reg, "lasrc", {"bbh/t1": [1, 0, 0, 0], "bbh/t2": [0, 0]}, config=_method({"no_guard": "true"}))  # string
    make_run(reg, "ilc", {"bbh/t1": [1, 1, 1, 1]}, config={"method_config": {"method": "ilc"}})  # no lasrc: left out
    res = audit.ablations(reg)
    rows = {r["run"]: r for r in res["runs"]}
    assert set(rows) == {ref, nn, fa, other, mref, mng}
    assert rows[ref]["reference"] == ref and rows[ref]["delta"] == 0.0 and rows[ref]["on"] == []
    assert rows[nn]["on"] == ["no_norm_rescale"] and rows[nn]["switches"]["no_norm_rescale"] is True
    assert rows[nn]["macro_accuracy"] == pytest.approx(0.375) and rows[nn]["delta"] == pytest.approx(-0.125)
    assert (rows[nn]["i2c"], rows[nn]["c2i"]) == (1, 1) and rows[nn]["reference"] == ref
    assert rows[fa]["delta"] == pytest.approx(0.5) and rows[fa]["on"] == ["fixed_alpha"]
    assert rows[other]["reference"] is None and rows[other]["delta"] is None  # other weights: no reference in its family
    assert any(other in n for n in res["notes"])
    assert rows[mng]["on"] == ["no_guard"] and rows[mng]["reference"] == mref and rows[mng]["delta"] == pytest.approx(0.125)
    # the table's order: each family's reference first
    order = [r["run"] for r in res["runs"]]
    assert order.index(ref) < order.index(nn) and order.index(mref) < order.index(mng)
    out = _json(["audit", "ablations", "--runs", f"{nn},{ref}", "--json"])
    assert [r["run"] for r in out["runs"]] == [ref, nn]
    ilc = reg.runs(method="ilc")[0]["id"]
    _fails(["audit", "ablations", "--runs", ilc], "does not compose with lasrc")


def test_ablations_cli_csv_and_none(reg, tmp_path):
    _fails(["audit", "ablations"], "no done run composes with lasrc")
    ref = make_run(reg, "lasrc", {"bbh/t1": [1, 0]}, config=_composition())
    ng = make_run(reg, "lasrc", {"bbh/t1": [1, 1]}, config=_composition("no_guard"))
    r = runner.invoke(app, ["audit", "ablations", "--csv", str(tmp_path / "a.csv")])
    assert r.exit_code == 0, r.output
    assert "reference" in r.stdout and "+50.0" in r.stdout
    rows = {x["run"]: x for x in csv.DictReader(open(tmp_path / "a.csv"))}
    assert rows[ng]["no_guard"] == "True" and rows[ng]["reference"] == ref and float(rows[ng]["delta"]) == 0.5


# ---------------------------------------------------------------- compat


def test_compat_matches_pairwise_cosines(reg, llama_adapters, tmp_path):
    from scalectl.compat import pairwise_cosines

    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    res = audit.compat(reg, "tiny", top=2)
    want = pairwise_cosines([reg.load_factors(r["name"], "tiny") for r in reg.list(pool="tiny")])
    assert res["names"] == want.names and np.allclose(res["rms_cosine"], want.rms_cosine)
    assert res["n_pairs"] == 3 and [p["rank"] for p in res["pairs"]] == [1, 2]
    assert [(p["a"], p["b"]) for p in res["pairs"]] == [(p["a"], p["b"]) for p in want.pairs()[:2]]
    assert res["pairs"][0]["rms_cosine"] >= res["pairs"][1]["rms_cosine"]
    png = tmp_path / "heat.png"
    out = _json(["audit", "compat", "--pool", "tiny", "--png", str(png), "--json", "--csv", str(tmp_path / "p.csv")])
    assert len(out["pairs"]) == 3 and out["modules"] == want.modules
    _png_ok(png)
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 3
    _fails(["audit", "compat", "--pool", "nothing"], "pool 'nothing' has no adapters")
    _fails(["audit", "compat", "--pool", "tiny", "--top", "0"], "--top must be at least 1")


# ---------------------------------------------------------------- errors: each rule, a record in it and one not


def _rec(correct, extracted_correct=None, extra=None, task="bbh/t", qid="q0"):
    """A stored record: what the rules read (correct, extracted_correct, extra) as given, the rest fixed."""
    return QueryRecord(task=task, query_id=qid, idx=0, input_hash=f"h{qid}", raw_output="o", prediction="o", normalized="o",
                       reference="r", correct=correct, extracted_correct=extracted_correct, extra=extra).to_dict()


def _views(ans, losses=None):
    """SCALE's per-view answers: each view right or wrong as ``ans`` says, with these support losses."""
    return ViewsRecord(aggregation="support", chosen_view=next(iter(ans)), agreement=1.0,
                       view_losses=losses or {"a": 1.0, "b": 2.0, "c": 3.0},
                       views={v: ViewAnswer(output="o", normalized="o", correct=bool(c)) for v, c in ans.items()},
                       support_ids=["s0"])


def test_rules_are_documented_in_the_command_help():
    from scalectl.cli.audit import errors_cmd

    doc = " ".join(errors_cmd.__doc__.split())
    for k, v in ERROR_RULES.items():
        assert f"{k}: {' '.join(v.split())}" in doc


def test_rule_normalization_failure():
    out = classify_errors([_rec(0, 1, qid="in"), _rec(0, 0, qid="out"), _rec(1, 1, qid="right")])
    assert [q["query_id"] for q in out] == ["in", "out"]  # only wrong queries are classified
    assert out[0]["categories"] == ["normalization_failure"] and out[1]["categories"] == ["other"]


def test_rule_agreement_and_calibration_failures():
    recs = [_rec(0, 0, _views({"a": 1, "b": 0, "c": 0}), qid="agree-only"),  # lowest-loss a right, aggregate wrong
            _rec(0, 0, _views({"a": 0, "b": 1, "c": 0}), qid="both"),  # lowest-loss a wrong, b right
            _rec(0, 0, _views({"a": 0, "b": 0, "c": 0}), qid="neither")]
    cats = {q["query_id"]: q["categories"] for q in classify_errors(recs)}
    assert cats == {"agree-only": ["agreement_failure"], "both": ["agreement_failure", "calibration_failure"],
                    "neither": ["other"]}
    # the lowest-loss view decides: with b the most trusted, "both" is an agreement failure only
    low_b = _rec(0, 0, _views({"a": 0, "b": 1, "c": 0}, {"a": 2.0, "b": 1.0, "c": 3.0}))
    assert classify_errors([low_b])[0]["categories"] == ["agreement_failure"]
    # not SCALE: both undecided
    assert {"agreement_failure", "calibration_failure"} <= set(classify_errors([_rec(0, 0)])[0]["undecided"])


def test_rule_composition_failure():
    recs = [_rec(0, 0, qid="q0"), _rec(0, 0, qid="q1")]
    base = {("bbh/t", "q0"): _rec(1, qid="q0"), ("bbh/t", "q1"): _rec(0, qid="q1")}
    cats = {q["query_id"]: q["categories"] for q in classify_errors(recs, baseline=base)}
    assert cats == {"q0": ["composition_failure"], "q1": ["other"]}
    assert "composition_failure" in classify_errors(recs)[0]["undecided"]  # no baseline: undecided


def test_rule_sparsification_failure():
    recs = [_rec(0, 0, _views({"a": 0, "b": 0, "c": 0}), qid="in"),  # every SDP view wrong, a control view right
            _rec(0, 0, _views({"a": 0, "b": 0, "c": 0}), qid="ctrl-wrong"),  # the control is wrong too
            _rec(0, 0, _views({"a": 0, "b": 0, "c": 1}), qid="sdp-right")]  # an SDP view was right
    ctrl = {("bbh/t", "in"): _rec(0, extra=_views({"a": 0, "b": 1, "c": 0}), qid="in"),
            ("bbh/t", "ctrl-wrong"): _rec(0, extra=_views({"a": 0, "b": 0, "c": 0}), qid="ctrl-wrong"),
            ("bbh/t", "sdp-right"): _rec(0, extra=_views({"a": 1, "b": 1, "c": 1}), qid="sdp-right")}
    cats = {q["query_id"]: q["categories"] for q in classify_errors(recs, no_sdp=ctrl)}
    assert cats["in"] == ["sparsification_failure"] and cats["ctrl-wrong"] == ["other"]
    assert "sparsification_failure" not in cats["sdp-right"]


def _hist(base_loss):
    return {"history": [{"step": 1, "weights": [0.0, 0.0], "loss": base_loss}, {"step": 2, "weights": [0.3, 0.1], "loss": 1.0}]}


def test_rule_retrieval_miss_method_paths():
    plan = _plan([_group("support-0", search=_hist(1.9)), _group("support-1", search=_hist(1.2))]).to_dict()
    x = lambda w, loss, path="support-0": PathRecord(support_ids=["s0"], path=path, weights=w, support_loss=loss)  # noqa: E731
    assert retrieval_miss(_rec(0, extra=x([0.0005, -0.001], 0.5)), plan) is True  # every weight within 1e-3 of 0
    assert retrieval_miss(_rec(0, extra=x([0.0011, 0.0], 0.5)), plan) is False  # just outside, and loss improved
    assert retrieval_miss(_rec(0, extra=x([0.5, 0.2], 1.9)), plan) is True  # no lower than the base loss (1.9)
    assert retrieval_miss(_rec(0, extra=x([0.5, 0.2], 1.5)), plan) is False  # better than 1.9
    assert retrieval_miss(_rec(0, extra=x([0.5, 0.2], 1.5, "support-1")), plan) is True  # its own path: base 1.2
    assert retrieval_miss(_rec(0, extra=x([0.5, 0.2], 1.5)), None) is False  # no history: weights decide
    assert retrieval_miss(_rec(0, extra=None), None) is None  # zero-shot: undecidable
    assert retrieval_miss(_rec(0, extra=PathRecord(support_ids=["s0"], path="soft-mix", weights=[0.5, 0.5])),
                          None) is None  # no searched path


def test_rule_retrieval_miss_scale_routes_each_view():
    miss = _group("support-1", [0.0, 0.0], 2.0)
    hit = _group("support-0", [0.9, 0.0], 1.0)
    # as a method plan stores it: the retrieval names support examples by position, the plan by example id
    vplan = _plan([hit, miss], support_ids=["t/10", "t/11"],
                  retrieval={"local": [{"support": "0"}, {"support": "1"}],
                             "queries": [{"id": "q0", "support": "0"}, {"id": "q1", "support": "1"}]})
    views = {"a": vplan, "b": _plan([dataclasses.replace(miss, label="support-0")])}
    plan = _views_plan(views).to_dict()
    ex = _views({"a": 0, "b": 0}, {"a": 1.0, "b": 2.0})
    assert retrieval_miss(_rec(0, extra=ex, qid="q1"), plan) is True  # routed to support-1 in a; b's only path misses
    assert retrieval_miss(_rec(0, extra=ex, qid="q0"), plan) is False  # routed to a searched path in view a
    no_route = _views_plan({"a": _plan([hit, miss], support_ids=()), "b": views["b"]}).to_dict()
    assert retrieval_miss(_rec(0, extra=ex, qid="q1"), no_route) is False  # unrouted: every group of a must miss


def test_errors_on_registry_runs_and_cli(reg, tmp_path):
    # SCALE run with SDP: wrong queries t1 q1, t1 q3, t2 q0, t2 q1; t2's view "b" path kept its weights at 0 ...
    groups = {("bbh/t2", v): [_group(merger="sdp+lasrc", weights=[0.0], support_loss=1.0)] for v in VIEWS}
    rid = make_scale(reg, groups=groups, derive=False)
    # ... and a no-SDP control where view a gets t2 q1 right
    ctrl_data = {t: [(ref, dict(ans)) for ref, ans in qs] for t, qs in SCALE_DATA.items()}
    ctrl_data["bbh/t2"][1][1]["a"] = "1"
    ctrl = make_scale(reg, data=ctrl_data, sdp=False, derive=False, label="no-sdp")
    res = audit.errors(reg, rid, no_sdp=ctrl)
    cats = {(q["task"], q["query_id"]): q["categories"] for q in res["queries"]}
    assert cats == {("bbh/t1", "q1"): ["agreement_failure", "calibration_failure"],
                    ("bbh/t1", "q3"): ["agreement_failure", "calibration_failure"],
                    ("bbh/t2", "q0"): ["retrieval_miss", "agreement_failure", "calibration_failure"],
                    ("bbh/t2", "q1"): ["retrieval_miss", "sparsification_failure"]}
    counts = {c["category"]: (c["count"], c["decided"]) for c in res["categories"]}
    assert counts == {"retrieval_miss": (2, True), "composition_failure": (0, False), "sparsification_failure": (1, True),
                      "agreement_failure": (3, True), "calibration_failure": (3, True), "normalization_failure": (0, True),
                      "other": (0, True)}
    assert res["n_wrong"] == 4 and res["n_queries"] == 6
    # composition failures: an lasrc method run against its linear anchor (ilc-linear; ilc merges with the factor rule)
    las = make_run(reg, "lasrc", {"bbh/t1": [0, 0, 1]}, config=_method(), extracted={"bbh/t1": [1, 0, 1]})
    ilc = make_run(reg, "ilc-linear", {"bbh/t1": [1, 0, 0]}, config={"method_config": {"method": "ilc-linear"}})
    factor = make_run(reg, "ilc", {"bbh/t1": [1, 0, 0]}, config={"method_config": {"method": "ilc"}})
    r = runner.invoke(app, ["audit", "errors", "--run", las, "--baseline", factor])
    assert r.exit_code == 1 and "is not a linear merge (merger lorahub)" in r.stderr and "ilc-linear" in r.stderr
    out = _json(["audit", "errors", "--run", las, "--baseline", ilc, "--json", "--csv", str(tmp_path / "e.csv")])
    qc = {q["query_id"]: q["categories"] for q in out["queries"]}
    assert qc == {"q0": ["composition_failure", "normalization_failure"], "q1": ["other"]}
    rows = {x["category"]: x for x in csv.DictReader(open(tmp_path / "e.csv"))}
    assert rows["composition_failure"]["count"] == "1" and rows["other"]["count"] == "1"
    assert rows["retrieval_miss"]["decided"] == "False"
    r = runner.invoke(app, ["audit", "errors", "--run", rid, "--no-sdp", ctrl])
    assert r.exit_code == 0, r.output
    assert "agreement_failure" in r.stdout and "undecided" in r.stdout  # composition: no --baseline
    # refusals
    zs = make_run(reg, "zero-shot", {"bbh/t1": [1, 0, 0]})
    _fails(["audit", "errors", "--run", las, "--baseline", zs], "not a linear merge")
    _fails(["audit", "errors", "--run", ilc, "--baseline", ilc], "does not compose with lasrc")
    _fails(["audit", "errors", "--run", las, "--no-sdp", ctrl], "no per-view records")
    _fails(["audit", "errors", "--run", rid, "--no-sdp", rid], "must be a SCALE run without SDP")
    _fails(["audit", "errors", "--run", ctrl, "--no-sdp", ctrl], "without SDP; nothing to compare")
    other_q = make_run(reg, "ilc-linear", {"bbh/t1": [1, 0]}, config={"method_config": {"method": "ilc-linear"}})
    _fails(["audit", "errors", "--run", las, "--baseline", other_q], "cover different queries")
    with pytest.raises(EvalError):
        audit.errors(reg, "nope")


# ---------------------------------------------------------------- HTML report


def _report_registry(reg, llama_adapters):
    rid = make_scale(reg)
    zs = make_run(reg, "zero-shot", {"bbh/t1": [1, 0, 0, 1], "bbh/t2": [0, 0]})
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    return rid, zs


def test_report_html_self_contained(reg, llama_adapters, tmp_path):
    from scalectl.html_report import build

    _fails(["report", "--html", str(tmp_path / "empty.html")], "no done runs to report")
    rid, zs = _report_registry(reg, llama_adapters)
    out = tmp_path / "site" / "report.html"
    res = _json(["report", "--html", str(out), "--baseline", zs, "--pool", "tiny", "--samples", "500", "--json",
                 "--csv", str(tmp_path / "acc.csv")])
    assert res["out"] == str(out) and out.stat().st_size == res["bytes"]
    assert res["sections"] == ["runs", "accuracy", "paired", f"scale-{rid}", "compat"]
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count('src="data:image/png;base64,') == 3  # accuracy, calibration, heatmap
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    assert "oracle (uses labels)" in page and "any view correct (uses labels)" in page
    assert not list(out.parent.glob(".report.html.*"))
    # the paired numbers on the page are audit.paired's
    pair = build(reg, baseline=zs, n_samples=500)["paired"]
    assert {r["run"] for r in pair["results"]} == {rid} | {d["id"] for d in audit.derived_runs(reg, rid).values()}
    page_deltas = [f"{100 * r['delta']:+.1f}" for r in pair["results"]]
    assert all(d in page for d in page_deltas)
    rows = list(csv.DictReader(open(tmp_path / "acc.csv")))
    assert {x["task"] for x in rows} == {"bbh/t1", "bbh/t2", "macro"}
    # without runs: a one-line error
    _fails(["report", "--html", str(tmp_path / "x.html"), "--runs", "nope"], "no run or method 'nope'")


def test_report_renders_in_chromium(reg, llama_adapters, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium; `make test` installs it where it can)")
    _, zs = _report_registry(reg, llama_adapters)
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--html", str(out), "--baseline", zs, "--pool", "tiny", "--samples", "200"])
    assert r.exit_code == 0, r.output
    shot = tmp_path / "shot.png"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run(flags + [f"--user-data-dir={prof}", f"--screenshot={shot}", "--window-size=1200,1600",
                                out.as_uri()], capture_output=True, timeout=180, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 20_000
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[0] >= 1000 and img.std() > 10  # not blank: text, tables and plots
    assert (img < 128).mean() > 0.01  # some dark pixels (text)
    with tempfile.TemporaryDirectory() as prof:
        dom = subprocess.run(flags + [f"--user-data-dir={prof}", "--dump-dom", out.as_uri()], capture_output=True,
                             text=True, timeout=180, check=False).stdout
    assert dom.count("<table>") >= 6 and "scalectl audit report" in dom and dom.count("<img") == 3


# ---------------------------------------------------------------- retrieval families


def test_retrieval_families_by_hand(reg, llama_adapters, tmp_path):
    from scalectl.retrieve import Retrieval

    tags = {"arith": ["kind:skill", "skill:arith"], "sorting": ["kind:mixture", "skill:sorting", "skill:arith"],
            "dates": ["kind:distractor", "skill:dates"]}
    for p in llama_adapters:
        reg.add_sources([str(p)], pool="fam", tags=tags[p.name])
    ret = Retrieval(names_in_index=3, global_candidates=[("dates", 0.9), ("arith", 0.5), ("sorting", 0.1)],
                    local_candidates=[[("arith", 0.8), ("sorting", 0.7)], [("dates", 0.6), ("sorting", 0.2)]],
                    routes=[0, 1, 1], n_global=3, n_local=2, query_ids=["q0", "q1", "q2"], support_ids=["s0", "s1"],
                    pool="fam", view="balanced")
    assert Retrieval.from_dict(ret.to_dict()) == ret  # read back by the class that writes it
    cfg = {"tasks": ["bbh/t"], "base_model": BASE, "method_config": {"method": "ilc", "pool": "fam"}}
    rid = reg.create_run("eval", "ilc", cfg, base_model=BASE)
    recs = [QueryRecord(task="bbh/t", query_id=f"q{i}", idx=i, input_hash=f"h{i}", raw_output="o", prediction="o",
                        normalized="o", reference="o", correct=True, extracted="o", extracted_correct=True).to_dict()
            for i in range(3)]
    reg.add_records(rid, recs)
    reg.finish_run(rid, "done", summary=_summary(recs, plans={"bbh/t": _plan([_group()], ("s0", "s1"),
                                                                              retrieval=ret.to_dict())}))
    res = audit.retrieval_families(reg, rid)
    (e,) = res["tasks"]["bbh/t"]
    assert e["view"] == "balanced" and res["pool"] == "fam"
    assert e["global"] == {"n": 3, "distractors": 1, "kinds": {"distractor": 1, "skill": 1, "mixture": 1},
                           "families": [("arith", 1), ("arith+sorting", 1), ("dates", 1)]}
    assert [c["distractors"] for c in e["local"]] == [0, 1] and e["local_distractors_mean"] == 0.5
    out = _json(["audit", "retrieval", "--run", rid, "--json", "--csv", str(tmp_path / "r.csv")])
    assert out["tasks"]["bbh/t"][0]["global"]["distractors"] == 1
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["list"] for r in rows] == ["global", "local 0", "local 1"] and rows[2]["families"] == "arith+sorting x1, dates x1"
    r = runner.invoke(app, ["audit", "retrieval", "--run", rid])
    assert r.exit_code == 0 and "global distractors" in r.output and "1/3" in r.output
    lorahub = make_run(reg, "lorahub", {"bbh/t": [1]})
    _fails(["audit", "retrieval", "--run", lorahub], "recorded no retrieval")
