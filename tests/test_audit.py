"""`scalectl audit`: the statistics against scipy and by hand, paired comparisons of registry runs, refusals, seeds, export."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from scalectl import audit
from scalectl.audit import (
    bootstrap_ci,
    flips,
    macro_accuracy,
    paired,
    permutation_test,
    task_accuracy,
    task_bootstrap_ci,
    win_loss_tie,
)
from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.registry import Registry
from scalectl.runrecords import QueryRecord, RunSummary, TaskScoreRecord

runner = CliRunner()
BASE = "huggingfacetb/smollm2-135m-instruct"


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _signs(i2c: int, c2i: int, zeros: int, seed: int = 0) -> np.ndarray:
    d = np.array([1.0] * i2c + [-1.0] * c2i + [0.0] * zeros)
    return np.random.default_rng(seed).permutation(d)


# ---------------------------------------------------------------- statistics vs scipy


@pytest.mark.parametrize("i2c,c2i,zeros", [(35, 20, 145), (30, 18, 100), (40, 30, 230), (26, 20, 60)])
def test_permutation_matches_scipy_and_the_exact_sign_test(i2c, c2i, zeros):
    d = _signs(i2c, c2i, zeros)
    p = permutation_test(d)  # defaults: 10,000 samples, seed 0
    ps = stats.permutation_test((d,), _mean, permutation_type="samples", alternative="two-sided", n_resamples=10_000,
                                rng=np.random.default_rng(1)).pvalue
    # sign flips of +-1 differences are the two-sided sign test: the exact p is binomial
    exact = stats.binomtest(i2c, i2c + c2i, 0.5).pvalue
    assert 0.04 < exact < 0.6
    assert abs(p - ps) < 0.02, (p, ps)
    assert abs(p - exact) < 0.02, (p, exact)


def test_permutation_by_hand():
    assert permutation_test(np.zeros(50)) == 1.0  # all d = 0
    assert permutation_test(np.array([1.0, -1.0, 0, 0])) == 1.0  # mean 0: every sample is as extreme
    n = 10_000
    p = permutation_test(np.ones(40), n_samples=n)  # 2^-39 chance per sample: no sample is as extreme
    assert p == 1 / (n + 1)
    d = _signs(30, 18, 100)
    assert permutation_test(d, seed=0) == permutation_test(d, seed=0)  # seeded
    assert permutation_test(d, seed=0) != permutation_test(d, seed=1)
    assert permutation_test(d, n_samples=999) == pytest.approx(permutation_test(d, n_samples=999), abs=0)
    # zero differences drawn or not, p is the same: only non-zero entries matter
    assert permutation_test(d) == permutation_test(d[d != 0])
    # float differences: |mean| ties are counted despite summation order
    assert permutation_test(np.array([0.1, 0.2, -0.3])) == 1.0


def test_permutation_chunking_does_not_change_the_result(monkeypatch):
    d = _signs(35, 20, 145)
    p = permutation_test(d)
    monkeypatch.setattr(audit, "_CHUNK", 7 * 55 + 3)  # 7 samples a chunk, the last one partial
    assert permutation_test(d) == p


def test_task_bootstrap_matches_scipy():
    rng = np.random.default_rng(7)
    diffs = rng.normal(0.02, 0.05, 27)  # 27 BBH-sized tasks
    lo, hi = task_bootstrap_ci(diffs)
    ci = stats.bootstrap((diffs,), _mean, method="percentile", n_resamples=10_000,
                         rng=np.random.default_rng(1)).confidence_interval
    assert abs(lo - ci.low) < 0.01 and abs(hi - ci.high) < 0.01, (lo, hi, ci)
    assert lo < diffs.mean() < hi


@pytest.mark.parametrize("kw, says", [({"resample": "bogus"}, "resample must be one of tasks, queries, got 'bogus'"),
                                      ({"n_samples": 0}, "n_samples must be at least 1, got 0"),
                                      ({"level": 1.0}, "level must be in (0, 1), got 1.0")])
def test_bootstrap_ci_refuses_bad_requests_naming_the_argument(kw, says):
    c, t = np.array([1.0, 0.0]), np.array(["bbh/a", "bbh/a"])
    with pytest.raises(ValueError) as e:
        bootstrap_ci(c, c, t, **kw)
    assert str(e.value) == says


def test_bootstrap_ci_over_queries_matches_scipy():
    # query level: 12 tasks of 40 queries; resampling tasks = the bootstrap of the per-task differences
    rng = np.random.default_rng(3)
    tasks = np.repeat([f"bbh/t{i:02d}" for i in range(12)], 40)
    cb = (rng.random(tasks.size) < 0.4).astype(float)
    cm = np.where(rng.random(tasks.size) < 0.3, (rng.random(tasks.size) < 0.55).astype(float), cb)
    _, acc_m, _ = task_accuracy(cm, tasks)
    _, acc_b, _ = task_accuracy(cb, tasks)
    lo, hi = bootstrap_ci(cm, cb, tasks)
    ci = stats.bootstrap((acc_m - acc_b,), _mean, method="percentile", n_resamples=10_000,
                         rng=np.random.default_rng(2)).confidence_interval
    assert abs(lo - ci.low) < 0.01 and abs(hi - ci.high) < 0.01, (lo, hi, ci)
    assert (lo, hi) == pytest.approx(task_bootstrap_ci(acc_m - acc_b), abs=1e-12)  # same generator stream
    # resampling queries within each task: with one task it is the plain bootstrap of the query differences
    one = tasks == "bbh/t00"
    qlo, qhi = bootstrap_ci(cm[one], cb[one], tasks[one], resample="queries")
    qci = stats.bootstrap((cm[one] - cb[one],), _mean, method="percentile", n_resamples=10_000,
                          rng=np.random.default_rng(2)).confidence_interval
    assert abs(qlo - qci.low) < 0.02 and abs(qhi - qci.high) < 0.02, (qlo, qhi, qci)
    # stratified over all tasks: narrower than the one-task interval, around the macro difference
    slo, shi = bootstrap_ci(cm, cb, tasks, resample="queries")
    delta = macro_accuracy(cm, tasks) - macro_accuracy(cb, tasks)
    assert slo < delta < shi and shi - slo < qhi - qlo


def test_identical_runs_give_zero_flips_and_a_zero_interval():
    tasks = np.repeat(["a", "b", "c"], 10)
    c = (np.arange(30) % 3 == 0).astype(float)
    assert flips(c, c) == {"i2c": 0, "c2i": 0, "unchanged": 30}
    assert bootstrap_ci(c, c, tasks) == (0.0, 0.0)
    assert bootstrap_ci(c, c, tasks, resample="queries") == (0.0, 0.0)
    assert permutation_test(c - c) == 1.0
    _, acc, _ = task_accuracy(c, tasks)
    assert win_loss_tie(acc, acc) == {"wins": 0, "losses": 0, "ties": 3}


def test_flips_and_wlt_by_hand():
    tasks = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2)
    base = np.array([0, 0, 1, 1, 1, 1, 0, 0, 1, 0])
    meth = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 1])
    # a: 0->1, 0->1, 1->1, 1->0   b: 1->1, 1->0, 0->0, 0->0   c: 1->0, 0->1
    assert flips(meth, base) == {"i2c": 3, "c2i": 3, "unchanged": 4}
    names, acc_m, n = task_accuracy(meth, tasks)
    _, acc_b, _ = task_accuracy(base, tasks)
    assert list(names) == ["a", "b", "c"] and list(n) == [4, 4, 2]
    assert list(acc_m) == [0.75, 0.25, 0.5] and list(acc_b) == [0.5, 0.5, 0.5]
    assert win_loss_tie(acc_m, acc_b) == {"wins": 1, "losses": 1, "ties": 1}
    assert macro_accuracy(meth, tasks) == pytest.approx(0.5)


def test_bad_parameters():
    with pytest.raises(ValueError):
        permutation_test(np.array([]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), np.ones(3), np.array(["a"] * 3), resample="bogus")
    with pytest.raises(ValueError):
        flips(np.ones(3), np.ones(2))


# ---------------------------------------------------------------- runs in a registry


def make_run(reg, method, correct, label=None, status="done", base=BASE, seed=None, hash_salt="", drop=0):
    """A run without a model: ``correct`` maps task -> list of 0/1 per query (query ids q0, q1, ...)."""
    cfg = {"tasks": list(correct), "queries": {t: len(c) for t, c in correct.items()}, "limit": None, "base_model": base,
           "method_config": {"method": method, "search": {"seed": seed}} if seed is not None else None}
    rid = reg.create_run("eval", method, cfg, base_model=base, label=label)
    recs = []
    for t, cs in correct.items():
        for i, c in enumerate(cs[: len(cs) - drop] if drop else cs):
            recs.append(QueryRecord(task=t, query_id=f"q{i}", idx=i, input_hash=f"h{t}{i}{hash_salt if i == 1 else ''}",
                                    raw_output="x", prediction="x", normalized="x", reference="y", correct=c,
                                    extracted="x", extracted_correct=c).to_dict())
    reg.add_records(rid, recs)
    if status != "running":
        tasks = [TaskScoreRecord(task=t, n=len(c), correct=sum(c), accuracy=sum(c) / len(c),
                                 extracted_accuracy=sum(c) / len(c), seconds=0.1) for t, c in correct.items()]
        macro = sum(x.accuracy for x in tasks) / len(tasks)
        summary = RunSummary(tasks=tasks, macro_accuracy=macro, macro_extracted=macro,
                             n_queries=sum(len(c) for c in correct.values())).to_dict()
        reg.finish_run(rid, status, summary=summary if status == "done" else None, error="boom" if status == "failed" else None)
    return rid


BASE_C = {"bbh/a": [0, 0, 1, 1], "bbh/b": [1, 1, 0, 0], "bbh/c": [1, 0]}
METH_C = {"bbh/a": [1, 1, 1, 0], "bbh/b": [1, 0, 0, 0], "bbh/c": [0, 1]}


@pytest.fixture
def reg():
    return Registry()


@pytest.fixture
def two(reg):
    return make_run(reg, "ilc", BASE_C), make_run(reg, "lasrc", METH_C, label="main")


def cli(*args):
    return runner.invoke(app, ["audit", *args])


def test_paired_by_hand(reg, two):
    b, m = two
    res = paired(reg, [m], b, per_task=True, n_samples=2000)
    assert res["baseline"]["run"] == b and res["tasks"] == ["bbh/a", "bbh/b", "bbh/c"]
    (r,) = res["results"]
    assert r["run"] == m and r["method"] == "lasrc" and r["label"] == "main"
    assert (r["i2c"], r["c2i"], r["unchanged"]) == (3, 3, 4)
    assert (r["wins"], r["losses"], r["ties"]) == (1, 1, 1)
    assert r["macro_accuracy"] == pytest.approx(0.5) and r["baseline_macro_accuracy"] == pytest.approx(0.5)
    assert r["delta"] == pytest.approx(0.0) and r["p"] == 1.0  # 3 up, 3 down: mean difference 0
    assert r["n_queries"] == 10 and r["n_tasks"] == 3
    assert r["ci_low"] <= 0 <= r["ci_high"]
    a = {t["task"]: t for t in r["tasks"]}
    assert a["bbh/a"]["delta"] == pytest.approx(0.25) and (a["bbh/a"]["i2c"], a["bbh/a"]["c2i"]) == (2, 1)
    assert a["bbh/b"]["accuracy"] == pytest.approx(0.25) and a["bbh/b"]["baseline_accuracy"] == pytest.approx(0.5)
    # the same run against itself: nothing moves
    same = paired(reg, [b], b)["results"][0]
    assert (same["i2c"], same["c2i"], same["delta"], same["p"], same["ci_low"], same["ci_high"]) == (0, 0, 0.0, 1.0, 0.0, 0.0)


def test_paired_task_filter(reg, two):
    b, m = two
    r = paired(reg, m, b, tasks="bbh/a")["results"][0]
    assert r["n_tasks"] == 1 and r["n_queries"] == 4 and r["delta"] == pytest.approx(0.25)
    assert paired(reg, m, b, tasks="bbh/a")["notes"]  # one task: the task bootstrap is degenerate, say so


def test_baseline_by_method_name_picks_the_latest_done_run(reg):
    old = make_run(reg, "ilc", BASE_C, label="old")
    new = make_run(reg, "ilc", METH_C, label="new")  # same second as `old`: insertion order decides
    make_run(reg, "ilc", BASE_C, status="failed")
    m = make_run(reg, "lasrc", METH_C)
    res = paired(reg, [m], "ilc")
    assert res["baseline"]["run"] == new and res["baseline"]["label"] == "new"
    assert any("the latest of 2 done runs it names" in n for n in res["notes"])
    assert res["results"][0]["delta"] == 0.0
    assert paired(reg, [m], old)["baseline"]["run"] == old  # by id
    assert paired(reg, [m], old[:-1])["baseline"]["run"] == old  # by unique prefix
    r = cli("paired", "--baseline", "ilc", "--runs", m, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["baseline"]["run"] == new


def test_default_runs_are_the_latest_of_every_other_method_over_the_same_queries(reg):
    b = make_run(reg, "zero-shot", BASE_C)
    make_run(reg, "ilc", BASE_C)
    ilc2 = make_run(reg, "ilc", METH_C)
    lasrc = make_run(reg, "lasrc", METH_C)
    make_run(reg, "logo", METH_C, drop=1)  # fewer queries: not comparable, skipped with a note
    make_run(reg, "lmix-fr", METH_C, status="running")  # not done: ignored
    make_run(reg, "lorahub", METH_C, base="other/model")  # another backbone: skipped
    res = paired(reg, None, "zero-shot")
    assert [r["run"] for r in res["results"]] == [ilc2, lasrc]
    assert any("logo" in n and "other queries" in n for n in res["notes"])
    assert any("lorahub" in n and "another backbone" in n for n in res["notes"])
    assert res["baseline"]["run"] == b


def test_cli_paired_table_json_and_csv(reg, two, tmp_path, monkeypatch):
    from scalectl import report

    monkeypatch.setattr(report.console, "_width", 200)  # a wide terminal: no folded cells
    b, m = two
    r = cli("paired", "--baseline", b, "--runs", m, "--per-task", "--samples", "500")
    assert r.exit_code == 0, r.output
    for s in ("lasrc", "+3/-3/=4", "1/1/1", "bbh/a", "+25.0", "50.0"):
        assert s in r.stdout, s
    out = tmp_path / "sub" / "paired.csv"
    r = cli("paired", "--baseline", "ilc", "--per-task", "--json", "--csv", str(out), "--seed", "3", "--resample", "queries")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["seed"] == 3 and data["resample"] == "queries" and data["n_samples"] == 10_000
    (res,) = data["results"]
    assert res["run"] == m and res["i2c"] == 3 and res["c2i"] == 3 and res["wins"] == 1 and len(res["tasks"]) == 3
    assert res["p"] == 1.0 and res["ci_low"] < 0 < res["ci_high"]
    rows = list(csv.DictReader(out.open()))
    assert [x["task"] for x in rows] == ["macro", "bbh/a", "bbh/b", "bbh/c"]
    assert rows[0]["run"] == m and rows[0]["baseline_run"] == b and rows[0]["i2c"] == "3" and rows[0]["wins"] == "1"
    assert float(rows[0]["p"]) == 1.0 and float(rows[0]["ci_low"]) == pytest.approx(res["ci_low"])
    assert float(rows[1]["delta"]) == pytest.approx(0.25) and rows[1]["wins"] == ""
    assert [p.name for p in out.parent.iterdir()] == ["paired.csv"]  # no temp file left


def _fails(r, *parts):
    assert r.exit_code == 1, r.output
    msg = r.stderr
    assert "error:" in msg and len(msg.strip().splitlines()) == 1, msg
    for p in parts:
        assert p in msg, (p, msg)


def test_refuses_different_query_sets(reg):
    b = make_run(reg, "ilc", BASE_C)
    m = make_run(reg, "lasrc", METH_C, drop=1)
    _fails(cli("paired", "--baseline", b, "--runs", m), "cover different queries", "0 only in the run",
           "3 only in the baseline", "bbh/a query q3")
    with pytest.raises(EvalError, match="different queries"):
        paired(reg, [m], b)


def test_refuses_different_inputs(reg):
    b = make_run(reg, "ilc", BASE_C)
    m = make_run(reg, "lasrc", METH_C, hash_salt="!")
    _fails(cli("paired", "--baseline", b, "--runs", m), "different inputs for 3 queries", "input_hash differs",
           "bbh/a query q1")


def test_refuses_unknown_or_ambiguous_baseline(reg, two):
    b, m = two
    _fails(cli("paired", "--baseline", "ilcc"), "no run or method 'ilcc'", "did you mean ilc")
    _fails(cli("paired", "--baseline", "lasr"), "did you mean lasrc")
    make_run(reg, "lmix-fr", METH_C)
    make_run(reg, "lmix-sr", METH_C)
    _fails(cli("paired", "--baseline", "lmix"), "ambiguous", "lmix-fr, lmix-sr")
    _fails(cli("paired", "--baseline", b[:2]), "ambiguous", "matches")  # a date prefix shared by every run
    _fails(cli("paired", "--baseline", b, "--runs", "nope"), "no run or method 'nope'")


def test_refuses_runs_not_done(reg, two):
    b, m = two
    running = make_run(reg, "logo", METH_C, status="running")
    failed = make_run(reg, "lmix-fr", METH_C, status="failed")
    _fails(cli("paired", "--baseline", b, "--runs", f"{m},{running},{failed}"), "only done runs", f"{running} (logo) is running",
           f"{failed} (lmix-fr) is failed")
    _fails(cli("paired", "--baseline", running, "--runs", m), f"{running} (logo) is running")
    _fails(cli("paired", "--baseline", "lmix-fr", "--runs", m), "no done run", "failed")


def test_refuses_different_backbones(reg):
    b = make_run(reg, "ilc", BASE_C)
    m = make_run(reg, "lasrc", METH_C, base="Qwen/Qwen2.5-0.5B")
    _fails(cli("paired", "--baseline", b, "--runs", m), "backbone 'Qwen/Qwen2.5-0.5B'", BASE)


def test_refuses_an_empty_task_filter(reg, two):
    b, m = two
    _fails(cli("paired", "--baseline", b, "--runs", m, "--task", "bbh/aa"), "task 'bbh/aa' has no records",
           "did you mean bbh/a", "its tasks: bbh/a, bbh/b, bbh/c")


def test_refuses_bad_options_and_no_comparable_run(reg, two):
    b, m = two
    _fails(cli("paired", "--baseline", b, "--resample", "bogus"), "--resample must be one of tasks, queries")
    _fails(cli("paired", "--baseline", b, "--samples", "0"), "--samples must be at least 1")
    reg2 = make_run(reg, "zero-shot", BASE_C, base="other/model")
    _fails(cli("paired", "--baseline", reg2), "no done run of another method covers the same queries", "--runs")


def test_seeds(reg, tmp_path):
    macros = []
    for s, cs in [(1, METH_C), (2, BASE_C), (3, {"bbh/a": [1, 1, 1, 1], "bbh/b": [1, 0, 0, 0], "bbh/c": [1, 1]})]:
        make_run(reg, "lasrc", cs, seed=s)
        macros.append(macro_accuracy(np.array(sum(cs.values(), [])), np.repeat(list(cs), [len(c) for c in cs.values()])))
    make_run(reg, "lasrc", METH_C, seed=9, status="failed")
    make_run(reg, "ilc", METH_C, seed=4)
    res = audit.seeds(reg, "lasrc")
    assert [r["seed"] for r in res["runs"]] == [1, 2, 3]
    assert [r["macro_accuracy"] for r in res["runs"]] == pytest.approx(macros)
    s = res["summary"]
    assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(macros)) and s["std"] == pytest.approx(np.std(macros, ddof=1))
    assert (s["min"], s["max"]) == (pytest.approx(min(macros)), pytest.approx(max(macros)))
    out = tmp_path / "seeds.csv"
    r = cli("seeds", "--method", "lasrc", "--json", "--csv", str(out))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["n"] == 3
    rows = list(csv.DictReader(out.open()))
    assert [x["seed"] for x in rows] == ["1", "2", "3", ""] and rows[-1]["run"] == "summary"
    r = cli("seeds", "--method", "lasrc")
    assert r.exit_code == 0 and "all 3 runs" in r.stdout
    _fails(cli("seeds", "--method", "lasr"), "no runs of method 'lasr'", "did you mean lasrc")
    # a run without a search seed falls back to config["seed"]
    rid = reg.create_run("eval", "zero-shot", {"seed": 7, "tasks": ["bbh/a"]}, base_model=BASE)
    reg.add_records(rid, [QueryRecord(task="bbh/a", query_id="q0", idx=0, input_hash="h", raw_output="x", prediction="x",
                                      normalized="x", reference="x", correct=True).to_dict()])
    reg.finish_run(rid, "done")  # no summary: macro accuracy recomputed from the records
    row = audit.seeds(reg, "zero-shot")["runs"][0]
    assert row["seed"] == 7 and row["macro_accuracy"] == 1.0 and row["n_queries"] == 1


def test_export_bundle(reg, two, tmp_path):
    b, m = two
    out = tmp_path / "bundle"
    csv_out = tmp_path / "export.csv"
    r = cli("export", "--runs", f"{b},lasrc", "--out", str(out), "--json", "--csv", str(csv_out))
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n_records"] == 20 and [x["run"] for x in res["runs"]] == [b, m]
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl.gz", "runs.json.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "export.csv", "home"]  # no temp dir left
    lines = [json.loads(x) for x in gzip.decompress((out / "records.jsonl.gz").read_bytes()).decode().splitlines()]
    assert len(lines) == 20 and {x["run_id"] for x in lines} == {b, m}
    assert {(x["task"], x["query_id"], x["correct"]) for x in lines if x["run_id"] == m} == {
        (t, f"q{i}", c) for t, cs in METH_C.items() for i, c in enumerate(cs)}
    meta = json.loads(gzip.decompress((out / "runs.json.gz").read_bytes()))
    assert [x["id"] for x in meta["runs"]] == [b, m]
    assert meta["runs"][1]["config"]["tasks"] == list(METH_C) and meta["runs"][1]["summary"]["macro_accuracy"] == 0.5
    assert meta["records"]["n"] == 20 and meta["records"]["sha256"] == res["records_sha256"]
    assert [x["run"] for x in csv.DictReader(csv_out.open())] == [b, m]
    # a non-empty out is refused unless --force; --force replaces it whole
    _fails(cli("export", "--runs", b, "--out", str(out)), "not empty", "--force")
    r = cli("export", "--runs", b, "--out", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert len(gzip.decompress((out / "records.jsonl.gz").read_bytes()).decode().splitlines()) == 10
    first = (out / "records.jsonl.gz").read_bytes()
    assert cli("export", "--runs", b, "--out", str(out), "--force").exit_code == 0
    assert (out / "records.jsonl.gz").read_bytes() == first  # the same runs give the same bytes (no gzip timestamp)
    running = make_run(reg, "logo", METH_C, status="running")
    _fails(cli("export", "--runs", running, "--out", str(tmp_path / "b2")), "still running")
    assert not (tmp_path / "b2").exists()


def test_import_bundle_keeps_what_is_there_and_refuses_a_tampered_one(reg, two, tmp_path, monkeypatch):
    b, m = two
    out = tmp_path / "bundle"
    assert cli("export", "--runs", f"{b},{m}", "--out", str(out)).exit_code == 0
    monkeypatch.setenv("SCALECTL_HOME", str(tmp_path / "other-home"))
    r = runner.invoke(app, ["audit", "import", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"] == 2
    again = runner.invoke(app, ["audit", "import", str(out), "--json"])
    assert json.loads(again.stdout) == {**json.loads(r.stdout), "imported": 0, "kept": 2}
    other = Registry()
    assert [x["id"] for x in other.runs()] == [b, m] and len(other.records(m)) == 10
    assert other.run(m)["summary"]["macro_accuracy"] == 0.5
    meta = json.loads(gzip.decompress((out / "runs.json.gz").read_bytes()))
    meta["records"]["sha256"] = "0" * 64
    (out / "runs.json.gz").write_bytes(gzip.compress(json.dumps(meta).encode()))
    r = runner.invoke(app, ["audit", "import", str(out)])
    assert r.exit_code == 1 and "does not match the sha256" in r.stderr
