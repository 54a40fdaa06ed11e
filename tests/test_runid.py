"""A run's identity is its configuration (scalectl/runid.py): method names never pick a control or an ablation."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from scalectl import audit, runid
from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.methods import MethodConfig
from scalectl.registry import Registry
from scalectl.runrecords import QueryRecord, RunSummary, TaskScoreRecord
from scalectl.search import SearchConfig

runner = CliRunner()
BASE = "huggingfacetb/smollm2-135m-instruct"
CORRECT = {"bbh/a": [1, 0, 1, 1], "bbh/b": [0, 1, 1, 0]}


def run(reg, method="scale", correct=None, label=None, **cfg):
    """A finished run whose stored method_config is exactly what `scalectl eval` stores (asdict + pool)."""
    correct = correct or CORRECT
    mc = asdict(MethodConfig(method=method, **cfg))
    mc["pool"] = "p"
    config = {"tasks": list(correct), "queries": {t: len(c) for t, c in correct.items()}, "limit": None,
              "base_model": BASE, "method_config": mc}
    rid = reg.create_run("eval", method, config, base_model=BASE, label=label)
    reg.add_records(rid, [QueryRecord(task=t, query_id=f"q{i}", idx=i, input_hash=f"h{t}{i}", raw_output="x",
                                      prediction="x", normalized="x", reference="y", correct=c, extracted="x",
                                      extracted_correct=c).to_dict() for t, cs in correct.items() for i, c in enumerate(cs)])
    n = sum(len(c) for c in correct.values())
    tasks = [TaskScoreRecord(task=t, n=len(c), correct=sum(c), accuracy=sum(c) / len(c), extracted_accuracy=sum(c) / len(c))
             for t, c in correct.items()]
    macro = sum(x.accuracy for x in tasks) / len(tasks)
    reg.finish_run(rid, "done", summary=RunSummary(tasks=tasks, macro_accuracy=macro, macro_extracted=macro,
                                                   n_queries=n).to_dict())
    return rid


@pytest.fixture
def reg():
    return Registry()


def test_variant_and_selectors(reg):
    r = reg.run(run(reg))
    assert runid.variant(r) == {} and runid.describe(r) == "scale"
    c = reg.run(run(reg, random_views=True, sdp_seed=52))
    assert runid.variant(c) == {"random_views": True, "sdp_seed": 52}
    assert runid.describe(c) == "scale[random_views=true,sdp_seed=52]"
    a = reg.run(run(reg, "lasrc", merger_params={"no_guard": True}))
    assert runid.describe(a) == "lasrc[merger_params.no_guard=true]"
    assert runid.parse_selector("lasrc[adapters=a,b,c,merger_params.no_guard=true]") == \
        ("lasrc", {"adapters": "a,b,c", "merger_params.no_guard": True})
    assert runid.parse_selector("scale") == ("scale", {}) and runid.parse_selector("scale[x") is None
    assert runid.matches(c, {"random_views": True}) and not runid.matches(c, {})
    assert runid.matches(r, {"random_views": False})  # a key at its default matches the default run
    assert runid.seed_key(c) == "sdp_seed" and runid.seed_of(c) == 52 and runid.seed_of(r) == 42
    assert runid.seed_key(a) == "search.seed"


def test_a_method_name_never_picks_a_control(reg):
    control = run(reg, random_views=True)
    only, note = audit.resolve_run(reg, "scale")  # one configuration only: that one, and the note says so
    assert only["id"] == control and "only configuration" in note and "random_views=true" in note
    default = run(reg)
    run(reg, random_views=True)  # the newest scale run is a control again
    picked, _ = audit.resolve_run(reg, "scale")
    assert picked["id"] == default
    picked, _ = audit.resolve_run(reg, "scale[random_views=true]")
    assert runid.describe(picked) == "scale[random_views=true]"


def test_names_that_fit_no_run_are_refused_with_the_candidates(reg):
    run(reg, "lasrc", merger_params={"no_guard": True})
    run(reg, "lasrc", merger_params={"fixed_alpha": True})
    with pytest.raises(EvalError, match=r"no done lasrc run with no control.*no_guard=true.*fixed_alpha"):
        audit.resolve_run(reg, "lasrc")
    with pytest.raises(EvalError, match=r"no done lasrc run with that configuration"):
        audit.resolve_run(reg, "lasrc[merger_params.no_floor=true]")
    r, _ = audit.resolve_run(reg, "lasrc[merger_params.fixed_alpha=true]")
    assert runid.describe(r) == "lasrc[merger_params.fixed_alpha=true]"
    run(reg, "scale", sdp_rate=0.0, sdp_seed=52)
    latest = run(reg, "scale", sdp_rate=0.0, sdp_seed=133)
    r, note = audit.resolve_run(reg, "scale[sdp_rate=0]")  # the latest it names; the note lists the others
    assert r["id"] == latest and "sdp_seed=52" in note
    r, _ = audit.resolve_run(reg, "scale[sdp_rate=0,sdp_seed=52]")
    assert runid.variant(r) == {"sdp_rate": 0.0, "sdp_seed": 52}


def test_smaller_budgets_still_resolve_the_plain_method(reg):
    """Runs made with other budgets (fewer steps, candidates) or seeds are still the method; its controls are not."""
    small = {"search": SearchConfig(steps=2), "n_global": 3, "n_local": 2}
    run(reg, **small)
    latest = run(reg, **small, sdp_seed=52)
    run(reg, **small, random_views=True)
    run(reg, **small, sdp_rate=0.0)
    picked, note = audit.resolve_run(reg, "scale")
    assert picked["id"] == latest and "random_views" not in note
    res = audit.seeds(reg, "scale")
    assert [x["seed"] for x in res["runs"]] == [42, 52]


def test_labels_select_runs(reg):
    rid = run(reg, "ilc", label="tuned")
    run(reg, "ilc")
    assert audit.resolve_run(reg, "tuned")[0]["id"] == rid


def test_seed_sweep_groups_only_seeds(reg):
    """`audit seeds --method scale` averages the SDP seeds of the default SCALE, not the controls."""
    s42 = run(reg, sdp_seed=42)
    s52 = run(reg, sdp_seed=52, correct={"bbh/a": [1, 1, 1, 1], "bbh/b": [0, 0, 0, 0]})
    run(reg, sdp_rate=0.0)
    run(reg, scale_merger="linear")
    run(reg, random_views=True)
    res = audit.seeds(reg, "scale")
    assert [(x["run"], x["seed"], x["seed_key"]) for x in res["runs"]] == [(s42, 42, "sdp_seed"), (s52, 52, "sdp_seed")]
    assert res["summary"]["n"] == 2
    assert any("left out" in n and "sdp_rate=0.0" in n and "random_views=True" in n for n in res["notes"])
    ctl = audit.seeds(reg, "scale[sdp_rate=0]")
    assert [x["seed"] for x in ctl["runs"]] == [42]
    r = runner.invoke(app, ["audit", "seeds", "--method", "scale", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["n"] == 2


def test_paired_default_rows_are_configurations(reg):
    """Without --runs, every configuration is its own row, named by its selector; no variant stands in for a method."""
    base = run(reg, "ilc")
    run(reg, "lasrc")
    run(reg, "lasrc", merger_params={"no_guard": True})
    res = audit.paired(reg, None, base, n_samples=100)
    assert sorted(x["configuration"] for x in res["results"]) == ["lasrc", "lasrc[merger_params.no_guard=true]"]
    assert res["baseline"]["configuration"] == "ilc"
