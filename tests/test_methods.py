"""`scalectl eval --method`: zero-shot, lorahub, ilc, lasrc, lmix-fr, lmix-sr, logo end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
from helpers import write_bbh
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.evaluate import run_eval
from scalectl.index import build_index
from scalectl.methods import METHODS, MethodConfig
from scalectl.methods.scale import aggregate
from scalectl.registry import Registry
from scalectl.search import SearchConfig

runner = CliRunner()
EMB = "hash:64"


@pytest.fixture
def tiny_bbh(tmp_path):
    ex = [{"input": f"sort these: c{i} a b" if i % 2 else f"add {i} and 2", "target": "a b c" if i % 2 else str(i + 2)}
          for i in range(18)]
    return write_bbh(tmp_path / "bbh", {"tiny_mix": ex})


@pytest.fixture
def indexed(method_adapters):
    reg = Registry()
    reg.add_sources([str(p) for p in method_adapters], pool="tiny")
    build_index(reg, "tiny", "balanced", embedder=EMB)
    return reg


def _cfg(method, **kw):
    return MethodConfig(method=method, n_global=2, n_local=2, search=SearchConfig(steps=4), **kw)


def test_every_method_runs_and_records_its_path(tiny_bbh, llama_base, indexed):
    from scalectl.backbone import load_backbone

    bb = load_backbone(str(llama_base), device="cpu")
    runs = {}
    for m in METHODS:
        cfg = _cfg(m, lorahub_k=2, lorahub_seed=4) if m == "lorahub" else _cfg(m, views=["balanced"])
        res = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", method=cfg, bbh_dir=str(tiny_bbh), limit=6)
        runs[m] = res
        run = indexed.run(res.run_id)
        assert run["status"] == "done" and run["method"] == m
        recs = indexed.records(res.run_id)
        assert len(recs) == 6
        if m in ("zero-shot", "scale"):  # scale's per-view records: test_scale_views_aggregations_and_controls
            continue
        plan = run["summary"]["plans"]["bbh/tiny_mix"]
        assert plan["support_ids"] == [f"tiny_mix/{i}" for i in range(10, 15)]
        for r in recs:
            x = r["extra"]
            assert x["support_ids"] == plan["support_ids"] and x["candidates"] and x["weights"]
        if m in ("ilc", "lasrc", "lmix-fr", "lorahub"):
            for g in plan["groups"]:
                s = g["search"]
                hist = s["history"]
                assert len(hist) == 4 and len(hist[0]["weights"]) == len(g["candidates"])  # every step stored
                assert s["k"] == len(g["candidates"]) and s["rule"] == "lorahub"  # the factor rule, as the peers
                # iLoRAComp: two stages (3 + 1 of 4 steps), stage 2 starting from stage 1's result; LoRAHub: one
                assert s["stages"] == ([4] if m == "lorahub" else [3, 1])
                assert s["warning"] and s["warning"] in plan["notes"]  # 4 steps < 2(K + 1): said where users look
        if m in ("ilc", "lasrc", "lmix-fr"):  # the local list of the cluster's support example only (iLoRAComp)
            local = plan["retrieval"]["local"]
            assert [g["candidates"] for g in plan["groups"]] == \
                   [[c["name"] for c in local[int(g["label"].split("-")[1])]["candidates"]] for g in plan["groups"]]
    # the other matched rows are ilc with only the merge changed: same retrieval, clusters, weights, routing
    gi = indexed.run(runs["ilc"].run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert {g["merger"] for g in gi} == {"lorahub"}  # iLoRAComp merges with the factor rule
    for m, merger in (("ilc-linear", "linear"), ("lasrc", "lasrc"), ("ties", "ties"), ("dare-linear", "dare-linear"),
                      ("dare-ties", "dare-ties"), ("sdp+lasrc", "sdp+lasrc")):
        gl = indexed.run(runs[m].run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
        assert [(g["label"], g["candidates"], g["weights"], g["queries"]) for g in gi] == \
               [(g["label"], g["candidates"], g["weights"], g["queries"]) for g in gl], m
        assert {g["merger"] for g in gl} == {merger}, m
    sdp = indexed.run(runs["sdp+lasrc"].run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert all(g["params"] == {"sdp.drop_rate": 0.5, "sdp.seed": 42} for g in sdp)
    # lmix-fr is the ilc cluster with the lowest support loss, applied to every query
    fr = indexed.run(runs["lmix-fr"].run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert len(fr) == 1 and fr[0]["queries"] == 6
    # logo: per-query weights sum to 1 over at most k adapters
    for r in indexed.records(runs["logo"].run_id):
        w = r["extra"]["weights"]
        assert sum(w) == pytest.approx(1.0, abs=1e-5) and all(v >= 0 for v in w)


def test_logo_top1_and_uniform(tiny_bbh, llama_base, indexed):
    for variant, check in (("top1", lambda w: sorted(w)[-1] == pytest.approx(1.0) and sum(v > 0 for v in w) == 1),
                           ("uniform", lambda w: len({round(v, 5) for v in w if v > 0}) == 1)):
        res = run_eval("tiny_mix", reg=indexed, base=str(llama_base), pool="tiny", bbh_dir=str(tiny_bbh), limit=3,
                       method=_cfg("logo", logo_variant=variant, logo_k=2))
        for r in indexed.records(res.run_id):
            assert check(r["extra"]["weights"]), r["extra"]["weights"]


@pytest.mark.parametrize("signal,k", [("l2", 2), ("entropy", 3), ("l2", 3)])
def test_logo_selects_as_logos_own_code(llama_base, method_adapters, indexed, signal, k):
    """Our LoGo weights against a transcription of archon159/LoGo ``utils/model.py`` (``get_mixed_lora_model``,
    ``get_lora_matrices_for``, ``select_and_predict``): every adapter active in a PeftMixedModel, hidden_states[L]
    of the last layer L, o_i = (h A_i^T) B_i^T s_i at the last token, norm or 1/(entropy + 1e-6), top k,
    weights metric / sum."""
    import torch
    from peft import PeftMixedModel
    from transformers import AutoModelForCausalLM

    from scalectl.backbone import format_prompts, load_backbone
    from scalectl.context import RunContext
    from scalectl.methods.logo import logo_weights

    bb = load_backbone(str(llama_base), device="cpu")
    prompts = ["add 1 and 2", "sort these: c a b"]
    ours, probe = logo_weights(RunContext(indexed, bb, "tiny"), ["arith", "sorting", "dates"], prompts,
                               _cfg("logo", logo_signal=signal, logo_k=k))
    assert probe["module"] == "model.layers.1.self_attn.q_proj" and probe["layer"] == 1

    # --- LoGo's code, transcribed (CPU instead of .cuda(); the tiny model has 2 layers: layer_idx 1) ---
    base = AutoModelForCausalLM.from_pretrained(str(llama_base))
    peft_model = PeftMixedModel.from_pretrained(base, str(method_adapters[0]), adapter_name="__bootstrap__")
    for i, path in enumerate(method_adapters):
        peft_model.load_adapter(str(path), adapter_name=f"lora_{i}")
    peft_model.set_adapter([f"lora_{i}" for i in range(len(method_adapters))])
    peft_model.delete_adapter("__bootstrap__")
    module = dict(peft_model.named_modules())["base_model.model.model.layers.1.self_attn.q_proj"]
    mats = {a: (module.lora_A[a].weight.data, module.lora_B[a].weight.data, module.scaling[a])
            for a in sorted(peft_model.active_adapters, key=lambda a: int(a.split("_")[1]))}  # lora_i = adapter i
    for qi, text in enumerate(format_prompts(bb, prompts)):
        inputs = bb.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = peft_model(input_ids=inputs["input_ids"], output_hidden_states=True, return_dict=True)
        x = out.hidden_states[1]
        proj = torch.stack([(x @ A.T) @ B.T * s for A, B, s in mats.values()], dim=1)[:, :, -1]  # (1, K, D)
        if signal == "l2":
            metric = torch.norm(proj, dim=-1)
        else:
            p = torch.softmax(proj, dim=-1)
            metric = 1 / (-(p * torch.log(p + 1e-8)).sum(dim=-1) + 1e-6)
        top, idx = torch.topk(metric, k=k, dim=-1)
        want = torch.zeros(3)
        want[idx[0]] = top[0] / top[0].sum()
        assert torch.allclose(ours[qi], want, atol=1e-5), (ours[qi], want)


def test_method_bad_input(tiny_bbh, llama_base, indexed, method_adapters):
    with pytest.raises(EvalError, match="did you mean lasrc"):
        MethodConfig(method="lasr").check()
    r = runner.invoke(app, ["eval", "--method", "ilc", "--pool", "tiny", "--view", "qa", "--task", "tiny_mix",
                            "--bbh-dir", str(tiny_bbh), "--base", str(llama_base), "--limit", "2", "--steps", "2"])
    assert r.exit_code == 1 and "scalectl index" in r.stderr  # no qa index yet: says which command builds it
    assert Registry().runs() == []  # refused before a run was recorded
    r = runner.invoke(app, ["eval", "--method", "ilc", "--pool", "nopool", "--task", "tiny_mix",
                            "--bbh-dir", str(tiny_bbh), "--base", str(llama_base)])
    assert r.exit_code == 1 and "no pool 'nopool'" in r.stderr


def test_eval_method_cli_json(tiny_bbh, llama_base, indexed):
    r = runner.invoke(app, ["eval", "--method", "lasrc", "--pool", "tiny", "--task", "tiny_mix", "--global", "2",
                            "--local", "1", "--steps", "3", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base),
                            "--limit", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["method"] == "lasrc" and out["n_queries"] == 4


def _fitted_adapter(base, out, examples):
    """A real LoRA fitted to the task's format on the tiny backbone, so the search has something to find."""
    import torch
    from peft import LoraConfig, get_peft_model

    from scalectl.backbone import load_backbone
    from scalectl.train import _batch, _token_loss, encode_examples

    bb = load_backbone(str(base), device="cpu")
    torch.manual_seed(0)
    pm = get_peft_model(bb.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=3e-2)
    enc = encode_examples(bb, examples, 64)
    for _ in range(30):
        s, c = _token_loss(bb, pm, _batch(bb, enc))
        opt.zero_grad()
        (s / c).backward()
        opt.step()
    pm.save_pretrained(str(out))
    (out / "scalectl.json").write_text(json.dumps({"description": "sorting and adding", "examples": [
        {"input": e["input"], "output": e["target"]} for e in examples[:3]]}))
    return out


def test_compose_task_retrieves_searches_composes(tmp_path, tiny_bbh, llama_base, indexed):
    ex = json.loads((tiny_bbh / "tiny_mix.json").read_text())["examples"][:10]  # not the support examples
    indexed.add_sources([str(_fitted_adapter(llama_base, tmp_path / "fitted", ex))], pool="tiny")
    build_index(indexed, "tiny", "balanced")
    r = runner.invoke(app, ["compose", "--merger", "lasrc", "--task", "bbh/tiny_mix", "--pool", "tiny", "--global", "3",
                            "--steps", "12", "--bbh-dir", str(tiny_bbh), "--out", str(tmp_path / "c"), "--json",
                            "--no-register"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["candidates"]) == 3 and len(out["search_history"]) == 12
    assert out["support_loss"] < out["search_history"][0]["ce"]  # better than the base model (step 1: all zeros)
    prov = json.loads((tmp_path / "c" / "scalectl_provenance.json").read_text())
    assert prov["operator"] == "lasrc" and [i["name"] for i in prov["inputs"]] == out["candidates"]


def test_scale_views_aggregations_and_controls(tiny_bbh, llama_base, indexed):
    from scalectl.backbone import load_backbone

    build_index(indexed, "tiny", "qa", embedder=EMB)
    bb = load_backbone(str(llama_base), device="cpu")
    cfg = _cfg("scale", views=["balanced", "qa"], sdp_rate=0.5, sdp_seed=42)
    res = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", method=cfg, bbh_dir=str(tiny_bbh), limit=5)
    run = indexed.run(res.run_id)
    assert run["summary"]["path_cost"]["paths_per_query"] == 2.0
    plan = run["summary"]["plans"]["bbh/tiny_mix"]
    assert set(plan["views"]) == {"balanced", "qa"}
    assert all(g["merger"] == "sdp+lasrc" and g["params"] == {"sdp.drop_rate": 0.5, "sdp.seed": 42}
               for v in plan["views"].values() for g in v["groups"])
    recs = indexed.records(res.run_id)
    for r in recs:
        x = r["extra"]
        norm = {v: d["normalized"] for v, d in x["views"].items()}
        assert r["normalized"] == aggregate(norm, x["view_losses"], "support")[0]
    derived = res.config["derived_runs"]
    assert set(derived) == {"uniform", "best-view", "oracle"}
    oracle = indexed.run(derived["oracle"])
    assert oracle["method"] == "scale-oracle" and oracle["config"]["uses_labels"] is True
    assert all(r["extra"]["uses_labels"] for r in indexed.records(derived["oracle"]))
    assert indexed.run(derived["uniform"])["config"]["uses_labels"] is False
    # the oracle picks, per task, the view with the best query accuracy; "any view correct" bounds it
    o = oracle["summary"]
    accs = {v: sum(r["extra"]["views"][v]["correct"] for r in recs) / len(recs) for v in ("balanced", "qa")}
    assert o["macro_accuracy"] == pytest.approx(max(accs.values()))
    assert o["any_view_correct"] >= o["macro_accuracy"]
    # controls: no SDP, linear per view
    res2 = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", bbh_dir=str(tiny_bbh), limit=5,
                    method=_cfg("scale", views=["balanced", "qa"], sdp_rate=0.0, scale_merger="linear"))
    plan2 = indexed.run(res2.run_id)["summary"]["plans"]["bbh/tiny_mix"]
    assert all(g["merger"] == "linear" for v in plan2["views"].values() for g in v["groups"])
    # the random-views control: its own searches are search time (not decoding), and the summary's compose seconds
    # are path_cost's
    res3 = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", bbh_dir=str(tiny_bbh), limit=5,
                    method=_cfg("scale", views=["balanced", "qa"], random_views=True, sdp_seed=7))
    s3 = indexed.run(res3.run_id)["summary"]
    views3 = s3["plans"]["bbh/tiny_mix"]["views"].values()
    distinct = {json.dumps(g["search"], sort_keys=True): g["search"] for v in views3 for g in v["groups"]}  # run once
    searched = sum(x["seconds"] for x in distinct.values() if not x["cached"])
    # (lockstep searches of every view ran before the views: each view's plan holds its share, rounded to ms)
    assert s3["path_cost"]["search_seconds"] >= searched - 0.001 * len(distinct) and searched > 0
    assert s3["compose_seconds"] == s3["path_cost"]["compose_seconds"] > 0


def test_aggregate_rules():

    losses = {"a": 1.0, "b": 2.0, "c": 3.0}
    assert aggregate({"a": "x", "b": "y", "c": "y"}, losses, "uniform")[0] == "y"  # 2 votes of 3
    # support: omega = softmax(-L): a has 0.665 > b + c = 0.335
    assert aggregate({"a": "x", "b": "y", "c": "y"}, losses, "support")[0] == "x"
    assert aggregate({"a": "x", "b": "y"}, {"a": 1.0, "b": 1.0}, "uniform")[0] == "x"  # tie: lowest-loss view (then name)
    assert aggregate({"a": "x", "b": "y", "c": "z"}, losses, "best-view")[:2] == ("x", "a")
    assert aggregate({"a": "x", "b": "y"}, {"a": 1.0, "b": 2.0}, "oracle", oracle_view="b")[0] == "y"


def test_lasrc_ablation_switch_reaches_the_merge(tiny_bbh, llama_base, indexed):
    from scalectl.merge.table import MergeError

    with pytest.raises(MergeError):
        MethodConfig(method="lasrc", merger_params={"no_such_switch": "true"}).check()
    with pytest.raises(EvalError, match="LASRC parameters"):
        MethodConfig(method="ilc", merger_params={"fixed_alpha": "true"}).check()
    res = run_eval("tiny_mix", reg=indexed, base=str(llama_base), pool="tiny", bbh_dir=str(tiny_bbh), limit=3,
                   method=_cfg("lasrc", merger_params={"fixed_alpha": "true"}))
    groups = indexed.run(res.run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert all(g["params"] == {"fixed_alpha": "true"} for g in groups)
    assert indexed.run(res.run_id)["config"]["method_config"]["merger_params"] == {"fixed_alpha": "true"}


def test_scale_composes_each_view_group_once(tiny_bbh, llama_base, indexed, monkeypatch):
    """The view support loss is measured while the decoded update is in the weights: one composition per group."""
    import scalectl.methods.plan as plan_mod

    build_index(indexed, "tiny", "qa", embedder=EMB)
    calls = []
    real = plan_mod.compose_deltas

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(plan_mod, "compose_deltas", counting)
    res = run_eval("tiny_mix", reg=indexed, base=str(llama_base), pool="tiny", bbh_dir=str(tiny_bbh), limit=4,
                   method=_cfg("scale", views=["balanced", "qa"]))
    plan = indexed.run(res.run_id)["summary"]["plans"]["bbh/tiny_mix"]
    assert len(calls) == sum(len(v["groups"]) for v in plan["views"].values())
    pc = indexed.run(res.run_id)["summary"]["path_cost"]
    assert pc["decode_seconds"] <= res.decode_seconds and pc["search_seconds"] >= 0


def test_search_cache_on_disk_is_reused_and_keyed_by_content(tiny_bbh, llama_base, indexed, monkeypatch):
    import scalectl.methods.plan as plan_mod
    from scalectl.backbone import load_backbone
    from scalectl.paths import home

    bb = load_backbone(str(llama_base), device="cpu")
    first = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", method=_cfg("ilc"), bbh_dir=str(tiny_bbh), limit=4)
    files = sorted((home() / "cache" / "search").glob("*.json"))
    assert files  # one per distinct (candidates, support) search

    def no_search(*a, **k):
        raise AssertionError("searched again despite the cache")

    monkeypatch.setattr(plan_mod, "search_many", no_search)
    again = run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", method=_cfg("ilc"), bbh_dir=str(tiny_bbh), limit=4)
    g1 = indexed.run(first.run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    g2 = indexed.run(again.run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert [g["weights"] for g in g1] == [g["weights"] for g in g2]
    assert all(g["search"]["cached"] for g in g2) and not any(g["search"]["cached"] for g in g1)
    assert [r["raw_output"] for r in indexed.records(first.run_id)] == [r["raw_output"] for r in indexed.records(again.run_id)]
    # another search config is another key: it must search (and here, fail loudly)
    with pytest.raises(AssertionError, match="searched again"):
        run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", method=MethodConfig(
            method="ilc", n_global=2, n_local=2, search=SearchConfig(steps=5)), bbh_dir=str(tiny_bbh), limit=4)
    # the cache can be turned off
    monkeypatch.setenv("SCALECTL_SEARCH_CACHE", "0")
    assert plan_mod.disk_cache_dir() is None


def test_each_weight_file_is_verified_once_per_run(tiny_bbh, llama_base, indexed, monkeypatch):
    """The run's context loads (and sha256-verifies) each adapter once, however many searches and merges use it."""
    from collections import Counter

    from scalectl.backbone import load_backbone

    build_index(indexed, "tiny", "qa", embedder=EMB)
    bb = load_backbone(str(llama_base), device="cpu")
    loads: Counter = Counter()
    real = Registry.load_factors

    def counting(self, name, pool=None, allow_pickle=False):
        loads[name] += 1
        return real(self, name, pool, allow_pickle)

    monkeypatch.setattr(Registry, "load_factors", counting)
    monkeypatch.setenv("SCALECTL_SEARCH_CACHE", "0")
    for m in ("lasrc", "scale", "lmix-sr", "logo"):
        loads.clear()
        run_eval("tiny_mix", reg=indexed, bb=bb, pool="tiny", bbh_dir=str(tiny_bbh), limit=4,
                 method=_cfg(m, views=["balanced", "qa"]))
        assert loads and max(loads.values()) == 1, (m, loads)


def test_library_errors_name_settings_the_cli_names_flags(tiny_bbh, llama_base, indexed):
    from scalectl.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^sdp_rate must be in \[0, 1\), got 1.5$"):
        _cfg("scale", sdp_rate=1.5).check()
    with pytest.raises(ParameterError, match="^limit must be at least 1"):
        run_eval("tiny_mix", reg=indexed, base=str(llama_base), base_only=True, bbh_dir=str(tiny_bbh), limit=0)
    with pytest.raises(ParameterError, match="^method ilc needs pool"):
        run_eval("tiny_mix", reg=indexed, base=str(llama_base), method="ilc", bbh_dir=str(tiny_bbh))
    for args, msg in ((["--method", "scale", "--sdp", "1.5"], "--sdp must be in [0, 1), got 1.5"),
                      (["--method", "logo", "--logo-k", "0"], "--logo-k must be at least 1"),
                      (["--method", "ilc", "--pool", "tiny", "--param", "fixed_alpha=true"],
                       "--param sets LASRC parameters of the methods lasrc, sdp+lasrc, scale, not ilc"),
                      (["--method", "ilc", "--seeds", "1,2"], "--seeds sweeps the seed of --method scale")):
        r = runner.invoke(app, ["eval", "--task", "tiny_mix", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base),
                                *args])
        assert r.exit_code == 1 and msg in r.stderr, (args, r.stderr)


def test_factor_rule_on_mixed_ranks_is_one_clear_line(tiny_bbh, llama_base, llama_adapters):
    """The peers refuse to merge adapters of different ranks with the factor rule; so does ilc, naming the way out."""
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="mixed")  # ranks 4, 4, 2
    build_index(reg, "mixed", "balanced", embedder=EMB)
    args = ["eval", "--pool", "mixed", "--task", "tiny_mix", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base),
            "--global", "3", "--local", "3", "--steps", "4", "--limit", "2"]
    r = runner.invoke(app, args + ["--method", "ilc"])
    assert r.exit_code == 1 and "needs equal ranks" in r.stderr and "--search-rule linear" in r.stderr, r.stderr
    r = runner.invoke(app, args + ["--method", "ilc-linear", "--search-rule", "linear", "--json"])
    assert r.exit_code == 0, r.output
    run = reg.run(json.loads(r.stdout)["run_id"])
    groups = run["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert {g["search"]["rule"] for g in groups} == {"linear"} and {g["merger"] for g in groups} == {"linear"}


def test_lorahub_seeds_sweep_the_draw(tiny_bbh, llama_base, indexed):
    """LoRAHub reports the mean of 5 draws: --seeds runs one draw each, in draw order, and audit seeds averages them."""
    r = runner.invoke(app, ["eval", "--method", "lorahub", "--pool", "tiny", "--task", "tiny_mix", "--lorahub-k", "2",
                            "--seeds", "1,2,3", "--steps", "3", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base),
                            "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    import random

    names = [x["name"] for x in indexed.list(pool="tiny")]
    for seed, res in zip((1, 2, 3), json.loads(r.stdout)):
        run = indexed.run(res["run_id"])
        assert run["config"]["method_config"]["lorahub_seed"] == seed
        [g] = run["summary"]["plans"]["bbh/tiny_mix"]["groups"]
        assert g["candidates"] == random.Random(seed).sample(names, 2)  # draw order, never re-sorted
    r = runner.invoke(app, ["audit", "seeds", "--method", "lorahub", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(s["seed"] for s in json.loads(r.stdout)["runs"]) == [1, 2, 3]


def test_audit_geometry_shows_why_lasrc_moved_or_not(tiny_bbh, llama_base, indexed):
    res = run_eval("tiny_mix", reg=indexed, base=str(llama_base), pool="tiny", bbh_dir=str(tiny_bbh), limit=4,
                   method=MethodConfig(method="lasrc", n_global=2, n_local=2,
                                       search=SearchConfig(steps=6, init=0.3, l1=0.0)))
    groups = indexed.run(res.run_id)["summary"]["plans"]["bbh/tiny_mix"]["groups"]
    assert all(len(g["geometry"]) == 2 for g in groups)  # the tiny Llama's two blocks, per composed group
    r = runner.invoke(app, ["audit", "geometry", "--run", "lasrc", "--json"])
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)["tasks"]["bbh/tiny_mix"]
    assert g["groups"] == len(groups) and g["blocks"] == 2 * len(groups)
    assert 0 <= g["overlap"] <= 1 and 0.05 - 1e-9 <= g["alpha_median"] <= 0.5 + 1e-9 and 0 <= g["at_floor"] <= 1
    w = [abs(x) for grp in groups for x in grp["weights"]]
    assert g["max_abs_w"] == pytest.approx(max(w)) and g["k"] == pytest.approx(sum(map(len, (x["weights"] for x in groups)))
                                                                               / len(groups))
    table = runner.invoke(app, ["audit", "geometry", "--run", "lasrc"])
    assert table.exit_code == 0 and "composition geometry" in table.output


def test_logo_on_an_encoder_decoder_says_so(t5_base, t5_adapter, tmp_path):
    from scalectl.backbone import load_backbone
    from scalectl.context import RunContext
    from scalectl.methods.logo import logo_weights

    reg = Registry()
    reg.add_sources([str(t5_adapter)], pool="t5")
    bb = load_backbone(str(t5_base), device="cpu")
    W, probe = logo_weights(RunContext(reg, bb, "t5"), ["t5-skill"], ["add 1 and 2"], _cfg("logo", logo_k=1))
    assert probe["module"] == "decoder.block.1.layer.0.SelfAttention.q"  # the last decoder block's self-attention
    assert "encoder-decoder" in probe["input"] and W.shape == (1, 1) and float(W[0, 0]) == pytest.approx(1.0)


def test_methods_that_do_not_retrieve_never_draw_a_composition(indexed, tmp_path):
    """A composition registered in the pool is made of pool adapters: LoRAHub's random draw, LoGo's whole pool and
    the random-views control leave it out, as retrieval does (else its rank breaks LoRAHub's equal-rank rule)."""
    from types import SimpleNamespace

    from scalectl.context import RunContext
    from scalectl.methods import get

    names = [x["name"] for x in indexed.list(pool="tiny")]
    r = runner.invoke(app, ["compose", "--merger", "linear", "--adapters", ",".join(names[:2]), "--pool", "tiny",
                            "--out", str(tmp_path / "comp")])
    assert r.exit_code == 0, r.output
    ctx = RunContext(reg=Registry(), bb=None, pool="tiny")
    assert "comp" in ctx.names() and ctx.candidates() == names
    cfg = MethodConfig(method="lorahub", lorahub_k=len(names) + 1, lorahub_seed=1)
    plan = SimpleNamespace(notes=[])
    assert sorted(get("lorahub").candidates(ctx, cfg, plan, None, [])) == sorted(names) and plan.notes
