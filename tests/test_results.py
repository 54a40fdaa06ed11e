"""`scalectl report --markdown`: the paper's tables run and written from the records, resumable, one command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_adapter, write_two_task_bbh
from typer.testing import CliRunner

from scalectl import audit, results
from scalectl.cli import app
from scalectl.registry import Registry

runner = CliRunner()


@pytest.fixture(scope="module")
def equal_rank_adapters(tmp_path_factory, llama_base):
    d = tmp_path_factory.mktemp("eq_adapters")
    return [make_adapter(llama_base, d / n, r=4, alpha=8, seed=s,
                         sidecar={"description": f"tiny {n} skill", "source_task": n,
                                  "examples": [{"input": f"{n} q{i}", "output": f"a{i}"} for i in range(3)]})
            for s, n in enumerate(["arith", "sorting", "dates", "parity"], start=1)]


@pytest.fixture
def world(tmp_path, equal_rank_adapters):
    d = write_two_task_bbh(tmp_path / "bbh")
    reg = Registry()
    reg.add_sources([str(p) for p in equal_rank_adapters], pool="tiny")
    return reg, d


def test_report_markdown_runs_every_row_and_writes_the_tables(world, llama_base, tmp_path):
    reg, d = world
    out = tmp_path / "docs" / "results.md"
    args = ["report", "--markdown", str(out), "--tasks", "mix_a,mix_b", "--limit", "4", "--pool", "tiny",
            "--base", str(llama_base), "--bbh-dir", str(d), "--device", "cpu", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["tasks"] == ["bbh/mix_a", "bbh/mix_b"] and res["n_queries"] == 8
    assert set(res["rows"]) == set(results.ROW_KEYS)
    text = out.read_text()
    for heading in ("Table 1", "Table 2", "Table 3", "Table 4", "Path cost in seconds", "Per-task accuracy",
                    "What happened", "Reproduce"):
        assert heading in text
    for row in results.ROWS:
        assert f"| {row.title} |" in text
    assert "scalectl report --markdown" in text
    # every number comes from the records: recompute the lasrc-vs-ilc audit from the registry directly
    runs = reg.runs(kind="eval", status="done")
    by = {}
    for key in ("ilc", "lasrc", "zero-shot"):
        recs = []
        for t in ("bbh/mix_a", "bbh/mix_b"):
            run = results.find_run(reg, results.row(key), t, 4, "tiny", runs)
            assert run is not None and run["label"] == f"results:{key}"
            recs += reg.records(run["id"])
        by[key] = {(x["task"], x["query_id"]): x["correct"] for x in recs}
    keys = sorted(by["ilc"])
    t = np.array([k[0] for k in keys])
    cl, ci = (np.array([by[m][k] for k in keys], dtype=float) for m in ("lasrc", "ilc"))
    f = audit.flips(cl, ci)
    got = res["rows"]["lasrc"]["vs_ilc"]
    assert (got["i2c"], got["c2i"], got["unchanged"]) == (f["i2c"], f["c2i"], f["unchanged"])
    assert got["p"] == pytest.approx(audit.permutation_test(cl - ci))
    assert res["rows"]["lasrc"]["macro_accuracy"] == pytest.approx(audit.macro_accuracy(cl, t))
    assert res["rows"]["scale-oracle"]["macro_accuracy"] >= res["rows"]["scale"]["macro_accuracy"] - 1e-12
    assert res["rows"]["scale"]["cost"]["paths"] == 3.0
    # the findings' statements against ilc follow the paired numbers: better / worse with p < 0.05
    against = next(x for x in res["findings"] if x.startswith("Against iLoRAComp"))
    better, _, worse = against.partition("Worse with p < 0.05:")
    for row in results.ROWS:
        v = res["rows"][row.key]["vs_ilc"]
        if row.uses_labels or row.key in ("ilc", "zero-shot") or v["p"] >= 0.05:
            continue
        assert row.title in (worse if v["delta"] < 0 else better), (row.key, v, against)
    # running it again reuses every run: nothing new is recorded, the page is rewritten
    n_runs = len(reg.runs())
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0, r2.output
    assert len(reg.runs()) == n_runs
    # --no-run renders only; with no finished runs for the tasks it says so and exits non-zero
    r3 = runner.invoke(app, ["report", "--markdown", str(tmp_path / "x.md"), "--tasks", "mix_a", "--limit", "3",
                             "--pool", "tiny", "--bbh-dir", str(d), "--no-run"])
    assert r3.exit_code != 0 and "no task has a finished run for every row" in r3.output
    assert not (tmp_path / "x.md").exists()


def test_report_markdown_bad_input(world, tmp_path):
    reg, d = world
    cases = [
        (["report", "--markdown", str(tmp_path / "a.md"), "--tasks", "nope", "--bbh-dir", str(d), "--pool", "tiny"], "nope"),
        (["report", "--markdown", str(tmp_path / "a.md"), "--tasks", "mix_a", "--bbh-dir", str(d), "--rows", "lasrx"],
         "unknown results row"),
        (["report", "--markdown", str(tmp_path / "a.md"), "--tasks", "mix_a", "--bbh-dir", str(d), "--pool", "nopool"],
         "no pool"),
        (["report", "--markdown", str(tmp_path / "a.md"), "--html", str(tmp_path / "a.html")], "give one of"),
        (["report", "--markdown", str(tmp_path / "a.md"), "--tasks", "mix_a", "--bbh-dir", str(d), "--limit", "0"],
         "--limit"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
    assert not (tmp_path / "a.md").exists()
