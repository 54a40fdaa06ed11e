"""Composition end to end: operators against peers, PEFT outputs that reproduce the composed deltas,
the stacked forward, merged weights, provenance, and every bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import make_adapter
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.compose import compose_inputs, load_inputs
from scalectl.merge.table import resolve_merger
from scalectl.registry import Registry
from scalectl.stacked import StackedLora, merged_weights

runner = CliRunner()
NAMES = ["arith", "sorting", "dates"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    r = run(*args)
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    return r


def js(*args):
    return json.loads(ok(*args, "--json").stdout)


def one_line_error(r, match, code=1):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert match.lower() in err.lower(), err


@pytest.fixture
def pool(llama_adapters):
    ok("pool", "add", *llama_adapters, "--pool", "tiny")
    return Registry()


def base_model(llama_base):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(llama_base)).eval()


def peft_logits(llama_base, adapter_dir, ids):
    from peft import PeftModel

    m = PeftModel.from_pretrained(base_model(llama_base), str(adapter_dir)).eval()
    with torch.no_grad():
        return m(input_ids=ids).logits


IDS = torch.randint(4, 100, (2, 7), generator=torch.Generator().manual_seed(0))


def composition(reg, merger, weights=(0.5, -0.3, 1.2), params=None):
    inp = load_inputs(reg, NAMES)
    return compose_inputs(inp, list(weights), resolve_merger(merger, params))


# ---------------------------------------------------------------- against the peers


def test_linear_equals_peft_cat(pool, llama_base, llama_adapters):
    from peft import PeftModel

    m = PeftModel.from_pretrained(base_model(llama_base), str(llama_adapters[0]), adapter_name="arith")
    m.load_adapter(str(llama_adapters[1]), adapter_name="sorting")
    m.load_adapter(str(llama_adapters[2]), adapter_name="dates")
    w = [0.5, -0.3, 1.2]
    m.add_weighted_adapter(NAMES, w, "combo", combination_type="cat")
    comp = composition(pool, "linear", w)
    for mod in comp.inputs.modules:
        layer = m.base_model.model.get_submodule(mod)
        want = layer.scaling["combo"] * layer.lora_B["combo"].weight @ layer.lora_A["combo"].weight
        torch.testing.assert_close(comp.delta(mod), want.detach(), rtol=1e-5, atol=1e-6)
    # cat is PEFT's name for the same update
    cat = composition(pool, "cat", w)
    for mod in comp.inputs.modules:
        torch.testing.assert_close(cat.delta(mod), comp.delta(mod))


def test_lorahub_rule(tmp_path, llama_base):
    ads = [make_adapter(llama_base, tmp_path / f"e{i}", r=4, alpha=8, seed=10 + i) for i in range(3)]
    ok("pool", "add", *ads, "--pool", "eq")
    reg = Registry()
    inp = load_inputs(reg, ["e0", "e1", "e2"])
    w = [0.7, 0.2, -0.4]
    comp = compose_inputs(inp, w, resolve_merger("lorahub"))
    for mod in inp.modules:
        A = sum(wi * f.A[mod] for wi, f in zip(w, inp.factors))
        B = sum(wi * f.B[mod] for wi, f in zip(w, inp.factors))
        torch.testing.assert_close(comp.delta(mod), 2.0 * B @ A, rtol=1e-5, atol=1e-6)


def test_ties_on_dense_deltas_equals_peft(pool):
    from peft.utils import merge_utils

    w = [0.5, -0.3, 1.2]
    comp = composition(pool, "ties", w, {"density": "0.4"})
    for mod in comp.inputs.modules:
        deltas = torch.stack([f.delta(mod) for f in comp.inputs.factors])
        want = merge_utils.ties(deltas, torch.tensor(w), 0.4, "total")
        torch.testing.assert_close(comp.dense[mod], want, rtol=1e-5, atol=1e-6)


def test_lasrc_factor_space_equals_dense_reference(pool):
    """The exact LoRA output of lasrc equals sdp-free dense LASRC computed on full deltas."""
    from scalectl.merge.lasrc import LasrcConfig, lasrc_dense

    w = [0.5, -0.3, 1.2]
    comp = composition(pool, "lasrc", w)
    fs = comp.inputs.factors
    by_block = {}
    for mod in comp.inputs.modules:
        by_block.setdefault(comp.inputs.blocks[mod], []).append(mod)
    for block, mods in by_block.items():
        V = torch.cat([torch.stack([f.delta(m).reshape(-1) for f in fs]) for m in mods], dim=1).double()
        res, st = lasrc_dense(V, torch.tensor(w, dtype=torch.float64), LasrcConfig())
        got = torch.cat([comp.delta(m).reshape(-1).double() for m in mods])
        assert float((got - res).norm() / res.norm()) < 1e-5
        row = next(b for b in comp.blocks if b["block"] == block)
        assert row["alpha"] == pytest.approx(st.alpha) and row["retained"] == len(st.kept)


# ---------------------------------------------------------------- outputs load in PEFT and reproduce the deltas


@pytest.mark.parametrize("merger,extra", [
    ("linear", []), ("cat", []), ("lasrc", []), ("lasrc", ["--param", "fixed_alpha=true"]),
    ("ties", ["--rank", "32"]), ("magnitude-prune", ["--rank", "32"]), ("dare-linear", ["--rank", "32"]),
    ("dare-ties", ["--rank", "32"]), ("sdp+lasrc", ["--rank", "32"]), ("sdp+linear", ["--rank", "32"]),
])
def test_compose_output_reproduces_composed_deltas(pool, llama_base, tmp_path, merger, extra):
    out = tmp_path / "out"
    res = js("compose", "--merger", merger, "--adapters", ",".join(NAMES), "--weights", "0.5,-0.3,1.2",
             "--out", out, *extra)
    params = {}
    for i, a in enumerate(extra):
        if a == "--param":
            k, v = extra[i + 1].split("=")
            params[k] = v
    comp = composition(pool, merger, params=params)
    model = base_model(llama_base)
    with merged_weights(model, {m: comp.delta(m) for m in comp.inputs.modules}), torch.no_grad():
        want = model(input_ids=IDS).logits
    torch.testing.assert_close(peft_logits(llama_base, out, IDS), want, rtol=1e-4, atol=1e-5)
    assert res["exact"] == (merger in ("linear", "cat", "lasrc")) and res["max_rel_error"] < 1e-5
    if res["exact"]:
        assert res["rank"] == 10  # 4 + 4 + 2
    prov = json.loads((out / "scalectl_provenance.json").read_text())
    assert prov["operator"] == merger and [i["name"] for i in prov["inputs"]] == NAMES
    assert all(len(i["sha256"]) == 64 for i in prov["inputs"]) and prov["weights"] == [0.5, -0.3, 1.2]
    row = js("pool", "show", "tiny:out")
    assert row["provenance"]["operator"] == merger and "composed" in row["tags"]


def test_svd_truncation_error_reported(pool, tmp_path):
    res = js("compose", "--merger", "ties", "--adapters", ",".join(NAMES), "--out", tmp_path / "o", "--rank", "2")
    assert res["rank"] == 2 and 0 < res["max_rel_error"] < 1
    errs = json.loads((tmp_path / "o" / "scalectl_provenance.json").read_text())["svd_rel_error"]
    assert max(errs.values()) == pytest.approx(res["max_rel_error"])
    r = ok("compose", "--merger", "ties", "--adapters", ",".join(NAMES), "--out", tmp_path / "o2", "--rank", "2")
    assert "relative Frobenius error" in r.stderr


def test_lasrc_table(pool, tmp_path):
    res = js("compose", "--merger", "lasrc", "--adapters", ",".join(NAMES), "--out", tmp_path / "o", "--no-register")
    assert [b["block"] for b in res["blocks"]] == ["layer.0", "layer.1"]
    for b in res["blocks"]:
        assert len(b["coefficients"]) == 3 and 0 <= b["overlap"] <= 1 and 0.05 <= b["alpha"] <= 0.5
        assert 1 <= b["retained"] <= 3
    r = ok("compose", "--merger", "lasrc", "--adapters", ",".join(NAMES), "--out", tmp_path / "o2", "--no-register")
    assert "overlap" in r.stdout and "layer.0" in r.stdout
    assert run("pool", "show", "o2").exit_code != 0  # --no-register


def test_sdp_masks_repeat(pool, tmp_path):
    a = composition(pool, "sdp+linear", params={"sdp.seed": "7"})
    b = composition(pool, "sdp+linear", params={"sdp.seed": "7"})
    c = composition(pool, "sdp+linear", params={"sdp.seed": "8"})
    m = a.inputs.modules[0]
    assert torch.equal(a.dense[m], b.dense[m]) and not torch.equal(a.dense[m], c.dense[m])


def test_merge_into_base(pool, llama_base, tmp_path):
    from transformers import AutoModelForCausalLM

    ok("compose", "--merger", "lasrc", "--adapters", ",".join(NAMES), "--out", tmp_path / "ad",
       "--merge-into-base", tmp_path / "full")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "full")).eval()
    with torch.no_grad():
        got = merged(input_ids=IDS).logits
    torch.testing.assert_close(got, peft_logits(llama_base, tmp_path / "ad", IDS), rtol=1e-4, atol=1e-5)
    assert (tmp_path / "full" / "scalectl_provenance.json").is_file()


# ---------------------------------------------------------------- the stacked forward


def test_stacked_forward_matches_merges(pool, llama_base, tmp_path):
    inp = load_inputs(pool, NAMES)
    model = base_model(llama_base)
    with torch.no_grad():
        base_logits = model(input_ids=IDS).logits
    w = [0.5, -0.3, 1.2]
    lin = compose_inputs(inp, w, resolve_merger("linear"))
    las = compose_inputs(inp, w, resolve_merger("lasrc"))
    with StackedLora(model, inp.factors) as st, torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, base_logits)  # zero weights: the base model
        st.set_weights(torch.tensor(w))
        got_lin = model(input_ids=IDS).logits
        st.set_block_coefficients({b["block"]: torch.tensor(b["coefficients"]) for b in las.blocks})
        got_las = model(input_ids=IDS).logits
        # per-example routing: example 0 with w, example 1 with other weights
        w2 = [0.0, 1.0, 0.25]
        st.set_example_weights(torch.tensor([w, w2]))
        got_ex = model(input_ids=IDS).logits
        st.set_weights(torch.tensor(w2))
        alone = model(input_ids=IDS[1:]).logits
    for comp, got in ((lin, got_lin), (las, got_las)):
        with merged_weights(model, {m: comp.delta(m) for m in inp.modules}), torch.no_grad():
            want = model(input_ids=IDS).logits
        # lasrc coefficients in the table are rounded to 1e-6
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_ex[0], got_lin[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_ex[1], alone[0], rtol=1e-5, atol=1e-5)
    # removed: the model is the base model again, with its original modules
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, base_logits)
    assert type(model.get_submodule(inp.modules[0])).__name__ == "Linear"


def test_merged_weights_restore_exactly(pool, llama_base):
    model = base_model(llama_base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    comp = composition(pool, "linear")
    with merged_weights(model, {m: comp.delta(m) for m in comp.inputs.modules}):
        assert not torch.equal(model.get_submodule(comp.inputs.modules[0]).weight, before[comp.inputs.modules[0] + ".weight"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- bad input: one line, non-zero, no output


def _c(tmp_path, *args):
    return run("compose", "--out", tmp_path / "out", *args)


def test_unknown_merger(pool, tmp_path):
    one_line_error(_c(tmp_path, "--merger", "lasr", "--adapters", "arith,dates"), "did you mean lasrc")
    assert not (tmp_path / "out").exists()


def test_different_base_models(pool, t5_adapter, tmp_path):
    ok("pool", "add", t5_adapter, "--pool", "tiny", "--force")
    one_line_error(_c(tmp_path, "--adapters", "arith,t5-skill"), "base models differ")


def test_different_target_modules(pool, llama_base, tmp_path):
    ok("pool", "add", make_adapter(llama_base, tmp_path / "qonly", targets=["q_proj"]), "--pool", "tiny")
    one_line_error(_c(tmp_path, "--adapters", "arith,qonly"), "target modules differ")
    assert not (tmp_path / "out").exists()
    res = js("compose", "--adapters", "arith,qonly", "--allow-partial", "--out", tmp_path / "out")
    from scalectl.adapters import inspect_adapter

    assert sorted({m.name.rsplit(".", 1)[1] for m in inspect_adapter(tmp_path / "out").modules.values()}) == ["q_proj"]
    assert res["rank"] == 8


def test_all_weights_zero(pool, tmp_path):
    one_line_error(_c(tmp_path, "--adapters", "arith,dates", "--weights", "0,0"), "all weights are zero")


def test_nan_in_factor(tmp_path, llama_base):
    from safetensors.torch import load_file, save_file

    d = make_adapter(llama_base, tmp_path / "nanad", seed=3)
    sd = load_file(str(d / "adapter_model.safetensors"))
    key = next(k for k in sd if "layers.1.self_attn.v_proj.lora_B" in k)
    sd[key][0, 0] = float("nan")
    save_file(sd, str(d / "adapter_model.safetensors"))
    ok("pool", "add", d, make_adapter(llama_base, tmp_path / "fine", seed=4), "--pool", "n")
    one_line_error(_c(tmp_path, "--adapters", "fine,nanad"), "nanad: module model.layers.1.self_attn.v_proj has NaN")


@pytest.mark.parametrize("merger,opt,val,match", [
    ("ties", "--density", "0", "density must be in (0, 1]"),
    ("ties", "--density", "1.5", "density must be in (0, 1]"),
    ("magnitude-prune", "--density", "-0.1", "density must be in (0, 1]"),
    ("dare-linear", "--drop-rate", "1.0", "drop_rate must be in [0, 1)"),
    ("dare-ties", "--drop-rate", "-0.1", "drop_rate must be in [0, 1)"),
    ("sdp+lasrc", "--drop-rate", "1", "drop_rate must be in [0, 1)"),
])
def test_bad_rates(pool, tmp_path, merger, opt, val, match):
    one_line_error(_c(tmp_path, "--merger", merger, "--adapters", "arith,dates", opt, val), match)


def test_lorahub_unequal_ranks(pool, tmp_path):
    one_line_error(_c(tmp_path, "--merger", "lorahub", "--adapters", "arith,dates"), "use --merger linear")


def test_dora_refused(tmp_path, llama_base):
    ok("pool", "add", make_adapter(llama_base, tmp_path / "do", use_dora=True), make_adapter(llama_base, tmp_path / "pl"),
       "--pool", "d")
    one_line_error(_c(tmp_path, "--adapters", "pl,do"), "DoRA")


def test_output_exists(pool, tmp_path):
    (tmp_path / "out").mkdir()
    one_line_error(_c(tmp_path, "--adapters", "arith,dates"), "--overwrite")
    js("compose", "--adapters", "arith,dates", "--out", tmp_path / "out", "--overwrite")
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_ctrl_c_mid_write_leaves_nothing(pool, tmp_path, monkeypatch):
    import scalectl.adapters as adapters

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapters, "write_safetensors", interrupted)
    r = _c(tmp_path, "--adapters", "arith,dates")
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert list(tmp_path.glob("*out*")) == [] and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_weights_count_mismatch(pool, tmp_path):
    one_line_error(_c(tmp_path, "--adapters", "arith,dates", "--weights", "1"), "1 values for 2 adapters")


def test_list_mergers():
    rows = js("compose", "--list")
    names = {r["merger"] for r in rows}
    assert {"linear", "cat", "lorahub", "lasrc", "ties", "dare-linear", "dare-ties", "magnitude-prune", "sdp"} <= names
    las = next(r for r in rows if r["merger"] == "lasrc")
    assert las["params"]["alpha_max"] == 0.5 and las["params"]["floor"] == 0.05 and las["params"]["guard"] == 0.3
    sdp = next(r for r in rows if r["merger"] == "sdp")
    assert sdp["params"] == {"drop_rate": 0.5, "rescale": True, "preserve_norm": True, "seed": 42}
    assert math.isfinite(las["params"]["kappa"])


# ---------------------------------------------------------------- file modes (shared storage)


def _modes(root):
    import os
    import stat

    out = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root)) + ("/" if p.is_dir() else "")] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


@pytest.mark.parametrize("umask,fmode,dmode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_written_files_get_the_umask_modes(pool, tmp_path, umask, fmode, dmode):
    """Weights used to be 0600 (safetensors writes them private) and dirs 0755 whatever the umask: every file and
    directory of a composed adapter and of a merged model now has what open()/mkdir give under the umask."""
    import os

    old = os.umask(umask)
    try:
        ok("compose", "--merger", "linear", "--adapters", ",".join(NAMES), "--out", tmp_path / "ad",
           "--merge-into-base", tmp_path / "full", "--no-register")
    finally:
        os.umask(old)
    for root in (tmp_path / "ad", tmp_path / "full"):
        modes = _modes(root)
        assert any(k.endswith(".safetensors") for k in modes), modes
        want = {k: (dmode if k == "." or k.endswith("/") else fmode) for k in modes}
        assert {k: oct(v) for k, v in modes.items()} == {k: oct(v) for k, v in want.items()}
