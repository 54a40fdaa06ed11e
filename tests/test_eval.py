"""`scalectl eval`: records per query under a run id, composition decoding, flips, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import BBH
from helpers import write_bbh
from typer.testing import CliRunner

from scalectl.audit import compare_runs
from scalectl.cli import app
from scalectl.errors import EvalError
from scalectl.evaluate import run_eval, score
from scalectl.registry import Registry
from scalectl.runrecords import QueryRecord
from scalectl.tasks import bbh

runner = CliRunner()


@pytest.fixture
def tiny_bbh(tmp_path):
    tf = [{"input": f"t{i} and f{i % 3}", "target": "True" if i % 2 else "False"} for i in range(18)]
    opt = [{"input": f"pick {i}\nOptions:\n(A) x\n(B) y", "target": "(A)" if i % 3 else "(B)"} for i in range(17)]
    return write_bbh(tmp_path / "bbh", {"tiny_tf": tf, "tiny_opt": opt})


@pytest.fixture
def pool(llama_adapters):
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    return reg


def _dump(reg):
    return {t: list(reg.db[t].rows) for t in reg.db.table_names()}


def test_base_only_records_every_query(tiny_bbh, llama_base):
    reg = Registry()
    res = run_eval("bbh/tiny_tf,tiny_opt", reg=reg, base=str(llama_base), base_only=True, bbh_dir=str(tiny_bbh))
    assert res.method == "zero-shot" and res.n_queries == 13 + 12
    run = reg.run(res.run_id)
    assert run["status"] == "done" and run["kind"] == "eval"
    cfg = run["config"]
    assert cfg["tasks"] == ["bbh/tiny_tf", "bbh/tiny_opt"]
    assert cfg["support_ids"]["bbh/tiny_tf"] == [f"tiny_tf/{i}" for i in range(10, 15)]
    assert cfg["queries"] == {"bbh/tiny_tf": 13, "bbh/tiny_opt": 12}
    assert cfg["max_new_tokens"]["bbh/tiny_tf"] == len("False") + 2  # character tokenizer
    assert {"torch", "transformers", "peft", "scalectl"} <= set(cfg["versions"])
    recs = reg.records(res.run_id)
    assert len(recs) == 25
    assert not any(r["query_id"] in cfg["support_ids"]["bbh/tiny_tf"] for r in recs)
    src = {f"tiny_tf/{i}": e for i, e in enumerate(json.loads((tiny_bbh / "tiny_tf.json").read_text())["examples"])}
    for r in recs:
        assert r["normalized"] == bbh.normalize(r["prediction"])
        assert r["correct"] == int(r["normalized"] == bbh.normalize(r["reference"]))
        if r["task"] == "bbh/tiny_tf":
            assert r["input_hash"] == bbh.input_hash(src[r["query_id"]]["input"])
            assert r["reference"] == src[r["query_id"]]["target"]
    per = {t.task: t for t in res.tasks}
    assert per["bbh/tiny_tf"].correct == sum(r["correct"] for r in recs if r["task"] == "bbh/tiny_tf")
    assert res.macro_accuracy == pytest.approx((per["bbh/tiny_tf"].accuracy + per["bbh/tiny_opt"].accuracy) / 2)
    assert run["summary"]["macro_accuracy"] == pytest.approx(res.macro_accuracy)


def test_score_keeps_extractor_apart():
    t = bbh.Task(name="bbh/x", short="x", path=None, examples=[bbh.Example("x/0", 0, "q", "(B)")] * 3)  # type: ignore[arg-type]
    q = [bbh.Example("x/0", 0, "q", "(B)"), bbh.Example("x/1", 1, "q2", "(A)")]
    recs = score(t, q, ["(B) since y", "A"])
    assert [r.correct for r in recs] == [False, False]  # EM never credits the extractor's reading
    assert [r.extracted_correct for r in recs] == [True, True]
    assert recs[0].extracted == "(B)" and recs[0].prediction == "(B) since y"


def test_composed_eval_decodes_like_peft(tiny_bbh, llama_base, llama_adapters, pool):
    """linear over one adapter with weight 1 decodes exactly like PeftModel with that adapter."""
    from peft import PeftModel

    from scalectl.backbone import generate_greedy, load_backbone

    bb = load_backbone(str(llama_base), device="cpu")
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    res = run_eval("tiny_tf", reg=pool, bb=bb, adapters=["sorting"], weights=[1.0], merger="linear", pool="tiny",
                   bbh_dir=str(tiny_bbh))
    assert all(bool((before[k] == v).all()) for k, v in bb.model.state_dict().items())  # weights restored exactly
    recs = pool.records(res.run_id)
    cfg = pool.run(res.run_id)["config"]["composition"]
    assert cfg["merger"] == "linear" and cfg["adapters"][0]["name"] == "sorting" and cfg["adapters"][0]["sha256"]
    task = bbh.load_tasks("tiny_tf", tiny_bbh)[0]
    ref_bb = load_backbone(str(llama_base), device="cpu")
    ref_bb.model = PeftModel.from_pretrained(ref_bb.model, str(llama_adapters[1])).eval()
    outs = generate_greedy(ref_bb, [e.input for e in task.queries], max_new_tokens=7, batch_size=10, stop_at_newline=True)
    assert [r["raw_output"] for r in recs] == outs
    base_outs = generate_greedy(bb, [e.input for e in task.queries], max_new_tokens=7, batch_size=10, stop_at_newline=True)
    assert base_outs != outs  # the adapter changes what is decoded


def test_compare_runs_counts_flips_and_refuses_other_queries(tiny_bbh, llama_base):
    reg = Registry()
    a = reg.create_run("eval", "a", {})
    b = reg.create_run("eval", "b", {})
    mk = lambda q, c: QueryRecord(task="bbh/t", query_id=q, idx=int(q[-1]), input_hash="h" + q, raw_output="",  # noqa: E731
                                  prediction="", normalized="", reference="x", correct=c, extracted="",
                                  extracted_correct=c).to_dict()
    reg.add_records(a, [mk("t/0", 1), mk("t/1", 1), mk("t/2", 0), mk("t/3", 0)])
    reg.add_records(b, [mk("t/0", 0), mk("t/1", 1), mk("t/2", 1), mk("t/3", 0)])
    res = compare_runs(reg, a, b)
    assert res["total"] == {"n": 4, "i2c": 1, "c2i": 1, "unchanged": 2}
    assert res["delta"] == 0
    c = reg.create_run("eval", "c", {})
    reg.add_records(c, [mk("t/0", 1), mk("t/1", 1), mk("t/2", 0)])
    with pytest.raises(EvalError, match="cover different queries .*t/3"):
        compare_runs(reg, a, c)


def test_eval_cli_json_and_table(tiny_bbh, llama_base, pool):
    r = runner.invoke(app, ["eval", "--base-only", "--task", "bbh/tiny_tf", "--bbh-dir", str(tiny_bbh),
                            "--base", str(llama_base), "--limit", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["n_queries"] == 4 and out["limit"] == 4 and out["tasks"][0]["n"] == 4
    r2 = runner.invoke(app, ["eval", "--adapters", "arith,dates", "--merger", "lasrc", "--pool", "tiny",
                             "--task", "tiny_opt", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base), "--limit", "3"])
    assert r2.exit_code == 0, r2.output
    assert "lasrc" in r2.stdout and "macro average" in r2.stdout
    runs = json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout)
    assert [x["method"] for x in runs] == ["zero-shot", "lasrc"] and all(x["status"] == "done" for x in runs)
    shown = json.loads(runner.invoke(app, ["runs", "show", runs[1]["id"], "--json"]).stdout)
    assert len(shown["records"]) == 3


@pytest.mark.parametrize("args,msg", [
    (["--base-only", "--task", "bbh/tiny_tx"], "did you mean bbh/tiny_tf"),
    (["--base-only", "--task", "bbh-27"], "unknown task 'bbh-27'"),
    (["--task", "tiny_tf"], "exactly one of --base-only, --method"),
    (["--method", "ilcc", "--pool", "tiny", "--task", "tiny_tf"], "did you mean ilc"),
    (["--method", "ilc", "--task", "tiny_tf"], "needs --pool"),
    (["--base-only", "--task", "tiny_tf", "--limit", "0"], "--limit must be at least 1"),
    (["--base-only", "--task", "tiny_tf", "--batch-size", "0"], "--batch-size must be a positive integer or auto"),
    (["--base-only", "--task", "tiny_tf", "--batch-size", "fast"], "--batch-size must be a positive integer or auto, "
                                                                   "got 'fast'"),
    (["--adapters", "arith,nope", "--pool", "tiny", "--task", "tiny_tf"], "nope"),
])
def test_eval_bad_input(tiny_bbh, llama_base, pool, args, msg):
    before = _dump(pool)
    r = runner.invoke(app, ["eval", "--bbh-dir", str(tiny_bbh), "--base", str(llama_base), *args])
    assert r.exit_code == 1, r.output
    assert msg in " ".join(r.stderr.split())
    assert _dump(Registry()) == before  # no run row for input that was refused


def test_backbone_and_pool_on_different_bases(tiny_bbh, llama_base, t5_adapter):
    reg = Registry()
    reg.add_sources([str(t5_adapter)], pool="t5pool")
    r = runner.invoke(app, ["eval", "--adapters", "t5-skill", "--pool", "t5pool", "--task", "tiny_tf",
                            "--bbh-dir", str(tiny_bbh), "--base", str(llama_base)])
    assert r.exit_code == 1
    assert "pool 't5pool' is on" in r.stderr and "but the base model is" in r.stderr and "--base" in r.stderr
    assert Registry().runs() == []


def test_failed_decode_marks_run_failed(tiny_bbh, llama_base, monkeypatch):
    import scalectl.backbone as backbone

    def boom(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(backbone, "generate_greedy", boom)
    reg = Registry()
    with pytest.raises(RuntimeError):
        run_eval("tiny_tf", reg=reg, base=str(llama_base), base_only=True, bbh_dir=str(tiny_bbh))
    (run,) = reg.runs()
    assert run["status"] == "failed" and "decoder exploded" in run["error"]


def test_real_bbh_file_through_tiny_model(llama_base):
    """The shipped BBH files decode end to end (plain prompts: the tiny tokenizer has no chat template)."""
    res = run_eval("bbh/navigate", base=str(llama_base), base_only=True, bbh_dir=str(BBH), limit=3)
    assert res.n_queries == 3 and res.tasks[0].task == "bbh/navigate"


def test_registry_from_before_runs_is_migrated(tmp_path):
    """A registry written before the runs tables existed gains them on first open, adapters kept."""
    import sqlite3

    import sqlite_utils

    from scalectl.registry import _m001_initial

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(str(path)))
    db["_migrations"].create({"name": str, "applied": str}, pk="name")
    _m001_initial(db)
    db["_migrations"].insert({"name": "001_initial", "applied": "2026-01-01"})
    db["pools"].insert({"name": "p", "base_model": "x", "created": "2026-01-01"})
    db.conn.commit()
    db.conn.close()
    reg = Registry(path)
    assert reg.schema_version >= 2 and {"runs", "records"} <= set(reg.db.table_names())
    assert [p["name"] for p in reg.pools()] == ["p"]


def test_seq2seq_backbone_plain_prompts(tiny_bbh, t5_base, t5_adapter):
    """T5 (no chat template): plain prompts, decoder output; a T5 adapter composes onto it."""
    reg = Registry()
    reg.add_sources([str(t5_adapter)], pool="t5pool")
    res = run_eval("tiny_tf", reg=reg, base=str(t5_base), adapters=["t5-skill"], pool="t5pool", bbh_dir=str(tiny_bbh),
                   limit=3)
    run = reg.run(res.run_id)
    assert run["config"]["prompt"] == "plain" and len(reg.records(res.run_id)) == 3


# ---------------------------------------------------------------- --batch-size auto


def test_batch_size_probe_picks_the_most_queries_per_second_and_stops_early():
    from scalectl.batching import candidates_for, choose

    seconds = {1: 1.0, 2: 1.2, 4: 1.6, 8: 2.0, 10: 3.5, 16: 6.0, 32: 9.0}  # queries/s 1, 1.7, 2.5, 4, 2.9, ...
    tried = []
    probe = choose(lambda b: tried.append(b) or seconds[b], candidates_for("cpu", 100))
    assert probe.chosen == 8 and tried == [1, 2, 4, 8, 10]  # 10 is clearly slower than 8: 16 and 32 untried
    oom = choose(lambda b: None if b >= 64 else b / (b + 4.0), candidates_for("cuda:0", 6376), "cuda")
    assert oom.chosen == 32 and oom.tried[-1] == (64, None)  # out of memory at 64: the best below it
    assert candidates_for("cpu", 12) == [1, 2, 4, 8, 10, 12] and candidates_for("cpu", 3) == [1, 2, 3]
    assert candidates_for("cpu", 40) == [1, 2, 4, 8, 10, 16, 32]  # never past the largest size of its device


def test_eval_batch_size_auto_probes_and_records_the_size_it_used(tiny_bbh, llama_base):
    reg = Registry()
    res = run_eval("bbh/tiny_tf", reg=reg, base=str(llama_base), base_only=True, bbh_dir=str(tiny_bbh),
                   batch_size="auto")
    cfg = reg.run(res.run_id)["config"]  # the decoding settings stand at the top of the stored config
    probe = cfg["batch_size_probe"]
    assert probe["device"] == "cpu" and [b for b, _ in probe["tried"]][:3] == [1, 2, 4]
    assert cfg["batch_size"] == probe["chosen"] == max(probe["tried"], key=lambda t: t[1])[0]
    fixed = run_eval("bbh/tiny_tf", reg=reg, base=str(llama_base), base_only=True, bbh_dir=str(tiny_bbh),
                     batch_size=probe["chosen"])
    same = {r["query_id"]: r["prediction"] for r in reg.records(fixed.run_id)}
    assert {r["query_id"]: r["prediction"] for r in reg.records(res.run_id)} == same  # the size it says it used
