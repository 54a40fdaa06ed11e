"""`scalectl report --markdown`: the paper's tables run and written from the records, resumable, one command."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert "Adapter pool: `tiny`, 4 adapters, rank 4." in text  # the pool's ranks (column r), no compositions
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
    assert r3.exit_code != 0 and "nothing is finished yet" in r3.output
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


def test_report_markdown_renders_a_partial_page(world, llama_base, tmp_path):
    """`--rows zero-shot --limit 3` runs that row and writes the page it can: the rows and tasks not finished are
    named at the top with the command that fills them in; nothing is paired with a baseline that is not there."""
    reg, d = world
    out = tmp_path / "partial.md"
    common = ["report", "--markdown", str(out), "--tasks", "mix_a,mix_b", "--limit", "3", "--pool", "tiny",
              "--base", str(llama_base), "--bbh-dir", str(d), "--device", "cpu"]
    r = runner.invoke(app, common + ["--rows", "zero-shot"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    text = out.read_text()
    head = text.split("## Setup")[0]
    fill = f"scalectl report --markdown {out} --tasks mix_a,mix_b --limit 3 --pool tiny"
    assert "Partial page" in head and f"`{fill}`" in head
    assert "15 of 16 rows" in head and "(`ilc`)" in head and "LoRAHub (`lorahub`)" in head and "(`zero-shot`)" not in head
    assert "Tasks: 2 BBH tasks (mix_a, mix_b)" in text  # both tasks are on the page, for the one row
    assert "| Zero-shot |" in text
    for row in results.ROWS:
        if row.key != "zero-shot":
            assert f"| {row.title} |" not in text, row.key
    # zero-shot is its own baseline; iLoRAComp is not there: '-' and the reason
    t1 = text.split("## Table 1")[1].split("## Table 2")[0]
    z = next(x for x in t1.splitlines() if x.startswith("| Zero-shot |")).split(" | ")
    assert z[4:8] == ["-", "-", "-", "-"] and z[8] == "+0.0" and z[9] == "0/0/6"
    assert "`-`: iLoRAComp (`ilc`) has no finished run on these tasks" in t1
    assert "None of this table's rows has finished" in text.split("## Table 2")[1].split("## Table 3")[0]
    # the CLI's summary says it in one line
    lines = [x for x in r.stderr.splitlines() if "Partial page" in x]
    assert len(lines) == 1 and "15 of 16 rows" in lines[0] and fill in lines[0]
    # --json says the same; a second row fills in, and a task only one row finished is named as missing
    js = json.loads(runner.invoke(app, common + ["--no-run", "--json"]).stdout)
    assert js["complete"] is False and js["tasks"] == ["bbh/mix_a", "bbh/mix_b"] and js["missing_tasks"] == []
    assert "zero-shot" not in js["missing_rows"] and len(js["missing_rows"]) == 15 and js["fill_command"] == fill
    assert js["rows"]["zero-shot"]["vs_ilc"] is None and js["rows"]["zero-shot"]["vs_zero_shot"]["delta"] == 0
    r2 = runner.invoke(app, common[:4] + ["mix_a"] + common[5:] + ["--rows", "ilc", "--json"])
    assert r2.exit_code == 0, (r2.stdout, r2.stderr)
    r3 = runner.invoke(app, common + ["--no-run", "--json"])
    assert r3.exit_code == 0, (r3.stdout, r3.stderr)
    js = json.loads(r3.stdout)
    assert js["tasks"] == ["bbh/mix_a"] and js["missing_tasks"] == ["bbh/mix_b"] and set(js["rows"]) == {"zero-shot", "ilc"}
    assert js["rows"]["ilc"]["vs_zero_shot"] is not None and js["rows"]["zero-shot"]["vs_ilc"] is not None
    text = out.read_text()
    assert "1 of 2 tasks (mix_b: 1 of 16 rows finished)" in text.split("## Setup")[0]
    assert "Not complete yet: mix_b." in text


def test_report_markdown_no_run_with_nothing_finished_is_one_error_and_writes_nothing(world, tmp_path):
    """An empty page would only overwrite a page that has numbers: a one-line error naming the command instead."""
    reg, d = world
    out = tmp_path / "empty.md"
    r = runner.invoke(app, ["report", "--markdown", str(out), "--tasks", "mix_a", "--limit", "3", "--pool", "tiny",
                            "--bbh-dir", str(d), "--no-run"])
    assert r.exit_code == 1, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("error: nothing is finished yet")
    assert "no page was written" in err and f"scalectl report --markdown {out} --tasks mix_a --limit 3 --pool tiny" in err
    assert not out.exists()


PAGES = sorted((Path(__file__).resolve().parent.parent / "docs").glob("results*.md"))  # results.md, results-28.md


def test_the_results_page_and_the_old_pools_page_are_committed():
    assert [p.name for p in PAGES] == ["results-28.md", "results.md"]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_committed_page_is_the_render_of_its_committed_bundle(page, tmp_path, monkeypatch):
    """Each committed page (docs/results.md; docs/results-28.md, the 28-adapter pool's) is exactly what the command
    it names renders with ``--from`` its bundle, read alone: anyone with a clone can recompute every number on it."""
    import re
    import shlex

    root = page.parent.parent
    text = page.read_text(encoding="utf-8")
    command = re.search(r"Rendered by `(scalectl report [^`]+)`", text).group(1)
    bundle = re.search(r"\(the bundle `([^`]+)`, read alone\)", text).group(1)
    out = re.search(r"--markdown (\S+)", command).group(1)
    assert out == f"docs/{page.name}" and bundle == f"docs/{page.stem}", (out, bundle)
    (tmp_path / "docs").mkdir()
    (tmp_path / bundle).symlink_to(root / bundle)
    monkeypatch.chdir(tmp_path)  # the same relative paths as the page names
    r = runner.invoke(app, ["report", *shlex.split(command)[2:], "--from", bundle])
    assert r.exit_code == 0, r.output
    assert (tmp_path / out).read_text(encoding="utf-8") == text
