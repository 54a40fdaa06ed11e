"""The two-hop probe: a seeded world with correct answers, and the whole comparison on the tiny model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.probe import make_world
from scalectl.registry import Registry

runner = CliRunner()


def test_facts_world_is_consistent_and_seeded():
    w = make_world("facts", n_people=12, n_groups=3, seed=5)
    home = {r["input"].split(" live")[0].split()[-1]: r["target"] for r in w.hop1}
    country = {r["input"].rsplit(" ", 1)[-1].rstrip("?"): r["target"] for r in w.hop2}
    for q in w.two_hop:
        person = q["input"].split(" live")[0].split()[-1]
        assert q["target"] == country[home[person]]
    assert make_world("facts", 12, 3, 5).two_hop == w.two_hop and make_world("facts", 12, 3, 6).two_hop != w.two_hop
    # disjoint training data: no first-hop record mentions a country, no second-hop record a person
    assert not any(c in r["input"] for r in w.hop1 for c in country.values())
    assert not any(p in r["input"] for r in w.hop2 for p in home)


def test_math_world_answers_are_products():
    w = make_world("math", n_people=8, n_groups=2, seed=1)
    crates = {r["input"].split(" does ")[1].split(" from ")[0]: int(r["target"]) for r in w.hop1}
    size = {r["input"].rsplit(" ", 1)[-1].rstrip("?"): int(r["target"]) for r in w.hop2}
    for q in w.two_hop:
        person, town = q["input"].split(" fills")[0].split(" from ")
        assert int(q["target"]) == crates[person] * size[town]
    with pytest.raises(EvalError, match="unknown probe variant"):
        make_world("chess")


def test_probe_end_to_end_on_tiny_model(llama_base):
    r = runner.invoke(app, ["probe", "two-hop", "--base", str(llama_base), "--people", "4", "--groups", "2", "--steps", "2",
                            "--rank", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    conds = [row["condition"] for row in out["rows"]]
    assert conds[0] == "base model" and conds[-1].startswith("union adapter") and len(conds) == 8
    assert any("lasrc" in c for c in conds) and any("logo" in c for c in conds)
    assert all(0 <= row[k] <= 1 for row in out["rows"] for k in ("hop1", "hop2", "two_hop"))
    assert out["verdict"].startswith("composition ") and isinstance(out["integrated"], bool)
    assert ("did not integrate" in out["verdict"]) == (not out["integrated"])
    assert {r["name"] for r in Registry().list(pool="probe-two-hop-facts-0")} == {"hop1", "hop2", "union"}


def test_verdict_needs_retained_hops_and_more_than_chance(monkeypatch, llama_base):
    """A composition that forgot both hops does not 'integrate' knowledge, even with a few lucky two-hop answers."""
    import scalectl.probe as probe

    answers = iter([
        (0.0, 0.0, 0.0),  # base
        (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),  # single adapters
        (0.0, 0.0, 0.5), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0),  # linear 1/2 (lucky, forgot both hops), linear 1, lasrc
    ])

    calls = {"n": 0}
    real_acc = probe._accuracy

    def acc(bb, records, batch_size=16):
        # three calls per condition (hop1, hop2, two_hop) for the merged conditions; logo decodes on its own
        if calls["n"] % 3 == 0:
            acc.cur = next(answers, None)
        calls["n"] += 1
        if acc.cur is None:
            return real_acc(bb, records, batch_size)
        return acc.cur[(calls["n"] - 1) % 3]

    acc.cur = None
    monkeypatch.setattr(probe, "_accuracy", acc)
    res = probe.run_two_hop("facts", base=str(llama_base), n_people=4, n_groups=2, steps=1, rank=2)
    lin = next(r for r in res.rows if r["condition"].startswith("parameter averaging"))
    assert lin["two_hop"] == 0.5 and lin["hop1"] == 0.0
    assert res.integrated is False and "did not integrate" in res.verdict and "50% or more" in res.verdict
