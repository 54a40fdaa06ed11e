"""`scalectl pool train`: a real PEFT LoRA on a synthetic skill, best held-out checkpoint, registered."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.errors import EvalError, TaskError
from scalectl.registry import Registry
from scalectl.train import TrainConfig, train_skill

runner = CliRunner()


def _cfg(base, **kw):
    d = dict(skill="boolean-expressions", base=str(base), rank=4, steps=4, seed=3, lr=5e-3, batch_size=2, max_len=64,
             heldout=4, eval_every=1)
    d.update(kw)
    return TrainConfig(**d)


def test_train_writes_loadable_peft_dir_and_registers(tmp_path, llama_base):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from scalectl.backbone import load_backbone

    bb = load_backbone(str(llama_base), device="cpu")
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    res = train_skill(_cfg(llama_base), pool="tiny-skills", out=tmp_path / "bool", bb=bb)
    # the backbone is left exactly as it was
    assert set(bb.model.state_dict()) == set(before)
    assert all(bool((before[k] == v).all()) for k, v in bb.model.state_dict().items())
    # best checkpoint = the lowest held-out loss of the curve
    assert len(res.curve) == 5 and res.curve[0]["step"] == 0
    best = min(res.curve, key=lambda c: c["heldout_loss"])
    assert res.best_step == best["step"] and res.heldout_loss_best == pytest.approx(best["heldout_loss"], abs=1e-4)
    # a PEFT directory, bf16, rank 4 on q and v
    cfg = json.loads((tmp_path / "bool" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["target_modules"] == ["q_proj", "v_proj"]  # sorted in any process
    sd = load_file(str(tmp_path / "bool" / "adapter_model.safetensors"))
    assert sd and all(v.dtype == torch.bfloat16 for v in sd.values())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(llama_base)), str(tmp_path / "bool"))
    assert sum("lora_A" in n for n, _ in model.named_parameters()) == 4  # 2 layers x (q, v)
    # registered with description, examples and provenance
    row = Registry().find("tiny-skills:boolean-expressions")
    assert "boolean" in row["description"].lower() and len(row["examples"]) == 8 and row["r"] == 4
    prov = json.loads(row["provenance"]) if isinstance(row["provenance"], str) else row["provenance"]
    assert prov["seed"] == 3 and prov["steps"] == 4
    assert prov["command"].startswith("scalectl pool train --skill boolean-expressions")
    assert "--steps 4" in prov["command"] and "--seed 3" in prov["command"]
    assert res.registered == "tiny-skills:boolean-expressions"


def test_training_is_deterministic_and_seed_dependent(tmp_path, llama_base):
    from safetensors.torch import load_file

    a = train_skill(_cfg(llama_base, steps=2, eval_every=2), register=False, out=tmp_path / "a")
    b = train_skill(_cfg(llama_base, steps=2, eval_every=2), register=False, out=tmp_path / "b")
    c = train_skill(_cfg(llama_base, steps=2, eval_every=2, seed=4), register=False, out=tmp_path / "c")
    sa, sb, sc = (load_file(str(tmp_path / x / "adapter_model.safetensors")) for x in "abc")
    assert all(bool((sa[k] == sb[k]).all()) for k in sa)
    assert any(not bool((sa[k] == sc[k]).all()) for k in sa)
    assert a.curve == b.curve and a.curve != c.curve


def test_train_reduces_heldout_loss(tmp_path, llama_base):
    res = train_skill(_cfg(llama_base, steps=12, eval_every=4, lr=5e-2, rank=8, batch_size=4), register=False,
                      out=tmp_path / "x")
    assert res.heldout_loss_best < res.heldout_loss_base - 0.2, res.curve


def test_train_bad_input(tmp_path, llama_base):
    with pytest.raises(TaskError, match="did you mean .*boolean-expressions"):
        train_skill(_cfg(llama_base, skill="boolen-expressions"), out=tmp_path / "z")
    (tmp_path / "exists").mkdir()
    with pytest.raises(EvalError, match="already exists; pass --overwrite"):
        train_skill(_cfg(llama_base), out=tmp_path / "exists")
    with pytest.raises(EvalError, match="--steps must be at least 1"):
        train_skill(_cfg(llama_base, steps=0), out=tmp_path / "z")
    assert not (tmp_path / "z").exists()


def test_pool_on_other_base_refused_before_training(tmp_path, llama_base, t5_adapter):
    Registry().add_sources([str(t5_adapter)], pool="t5pool")
    r = runner.invoke(app, ["pool", "train", "--skill", "word-sorting", "--base", str(llama_base), "--pool", "t5pool",
                            "--steps", "1", "--out", str(tmp_path / "w")])
    assert r.exit_code == 1 and "pool 't5pool' is on" in r.stderr
    assert not (tmp_path / "w").exists()


def test_cli_unknown_skill_and_list():
    r = runner.invoke(app, ["pool", "train", "--skill", "sorting-words"])
    assert r.exit_code == 1 and "unknown skill 'sorting-words'" in r.stderr
    r = runner.invoke(app, ["pool", "train", "--list", "--json"])
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert len(rows) >= 24 and {"skill", "format", "description", "example"} <= set(rows[0])


def test_cli_train_json(tmp_path, llama_base):
    r = runner.invoke(app, ["pool", "train", "--skill", "parity-check", "--base", str(llama_base), "--steps", "2",
                            "--rank", "2", "--batch-size", "2", "--heldout", "3", "--max-len", "48", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["registered"] == "skills:parity-check" and out["steps"] == 2
    rows = json.loads(runner.invoke(app, ["pool", "list", "--pool", "skills", "--json"]).stdout)
    assert [x["name"] for x in rows] == ["parity-check"] and rows[0]["r"] == 2


def test_cli_trains_a_variant_and_tags_its_family(tmp_path, llama_base):
    r = runner.invoke(app, ["pool", "train", "--skill", "parity-check.qa", "--seed", "1", "--name", "pc-qa",
                            "--base", str(llama_base), "--steps", "1", "--rank", "2", "--batch-size", "2", "--heldout", "2",
                            "--max-len", "48", "--pool", "fam", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(runner.invoke(app, ["pool", "list", "--pool", "fam", "--json"]).stdout)
    (row,) = rows
    assert {"kind:template", "skill:parity-check", "template:qa", "seed:1"} <= set(row["tags"])
    prov = json.loads(runner.invoke(app, ["pool", "show", "fam:pc-qa", "--json"]).stdout)["provenance"]
    assert "--skill parity-check.qa --base" in prov["command"] and "--name pc-qa" in prov["command"]
    r = runner.invoke(app, ["pool", "train", "--skill", "parity-check.zz"])
    assert r.exit_code == 1 and "unknown template 'zz'" in r.stderr


def test_train_on_seq2seq_backbone(tmp_path, t5_base):
    import json as _json

    res = train_skill(_cfg(t5_base, steps=2, eval_every=1), register=False, out=tmp_path / "t5")
    cfg = _json.loads((tmp_path / "t5" / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_2_SEQ_LM" and sorted(cfg["target_modules"]) == ["q", "v"]
    assert len(res.curve) == 3


def test_train_path_emits_no_future_warning(tmp_path, llama_base):
    """`pool train` and `probe two-hop` printed PEFT's FutureWarning (it reads transformers' deprecated
    `is_gradient_checkpointing`); the train path itself must emit none."""
    import warnings

    from scalectl.backbone import load_backbone

    bb = load_backbone(str(llama_base), device="cpu")  # loading is not the train path (backbone.py's own concern)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # overrides the suite's ignore::FutureWarning
        res = train_skill(_cfg(llama_base, steps=1, eval_every=1), register=False, out=tmp_path / "fw", bb=bb)
    assert res.steps == 1 and (tmp_path / "fw" / "adapter_model.safetensors").is_file()


def test_retrain_overwrite_never_leaves_a_row_of_other_files(tmp_path, llama_base, monkeypatch):
    """--overwrite of a registered output: while the new files go in place the old row is gone (never a row whose
    sha256 describes other files), and a failure before the new row is written removes the new files again."""
    import scalectl.registry as registry
    from scalectl.backbone import load_backbone

    bb = load_backbone(str(llama_base), device="cpu")
    out = tmp_path / "bool"
    train_skill(_cfg(llama_base, steps=1), pool="tiny-skills", out=out, bb=bb)
    first = Registry().find("tiny-skills:boolean-expressions")["sha256"]
    seen = []
    orig = registry.Registry.add_sources

    def spy(self, *a, **k):  # the moment the new files are in place, before the new row
        seen.append([r["sha256"] for r in Registry().list(pool="tiny-skills")])
        return orig(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(registry.Registry, "add_sources", spy)
        train_skill(_cfg(llama_base, steps=2, seed=9), pool="tiny-skills", out=out, bb=bb, overwrite=True)
    assert seen == [[]]
    row = Registry().find("tiny-skills:boolean-expressions")
    assert row["sha256"] != first and [v.status for v in Registry().verify("tiny-skills")] == ["ok"]

    def fails(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(registry.Registry, "add_sources", fails)
        with pytest.raises(KeyboardInterrupt):
            train_skill(_cfg(llama_base, steps=1, seed=5), pool="tiny-skills", out=out, bb=bb, overwrite=True)
    assert not out.exists() and Registry().list(pool="tiny-skills") == []
