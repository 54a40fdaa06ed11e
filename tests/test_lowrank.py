"""Low-rank export (``compose --rank/--max-error``, ``eval --rank/--max-error``): the best rank-k approximation of
the composed update computed from the factors alone, and what is scored is what is written."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_adapter, write_bbh
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.compose import compose_inputs, load_inputs
from scalectl.lowrank import LowRankSpec, choose_rank, compress, factor_svd, tail_errors
from scalectl.merge.table import resolve_merger
from scalectl.registry import Registry

runner = CliRunner()
NAMES = ["arith", "sorting", "dates"]


def js(*args):
    r = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    return json.loads(r.stdout)


def one_line(args, match):
    r = runner.invoke(app, [str(a) for a in args])
    err = r.stderr.strip()
    assert r.exit_code == 1 and err.startswith("error:") and "\n" not in err and match in err, (r.exit_code, err)


@pytest.fixture
def pool(llama_adapters):
    assert runner.invoke(app, ["pool", "add", *map(str, llama_adapters), "--pool", "tiny"]).exit_code == 0
    return Registry()


def _peft_delta(adapter_dir, module):
    """The update PEFT itself applies for ``module`` (its own scaling, rank_pattern and rslora)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"])
    m = PeftModel.from_pretrained(base, str(adapter_dir))
    return m.base_model.model.get_submodule(module).get_delta_weight("default").detach()


# ---------------------------------------------------------------- the factorization itself


@pytest.mark.parametrize("shape", [(40, 12, 30), (20, 30, 10), (8, 6, 50)])  # (d_out, R, d_in), R > d either side
def test_factor_svd_is_the_svd_of_the_product(shape):
    d_out, R, d_in = shape
    g = torch.Generator().manual_seed(1)
    B, A = torch.randn(d_out, R, generator=g), torch.randn(R, d_in, generator=g)
    U, S, Vh = factor_svd(B, A)
    D = B @ A
    want = torch.linalg.svdvals(D)
    torch.testing.assert_close(S, want[:S.numel()], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(U @ torch.diag(S) @ Vh, D, rtol=1e-4, atol=1e-4)
    for k in (1, 3, min(shape) - 1):
        low = compress({"m": (B, A)}, None, LowRankSpec(rank=k))
        err = float(torch.linalg.norm(D - low.delta("m")) / torch.linalg.norm(D))
        eckart_young = float(want[k:].pow(2).sum().sqrt() / want.pow(2).sum().sqrt())
        assert low.ranks["m"] == k and low.errors["m"] == pytest.approx(err, rel=1e-3, abs=1e-5)
        assert err == pytest.approx(eckart_young, rel=1e-3, abs=1e-5)



@pytest.mark.parametrize("spread, route", [(1.0, "GramSpectrum"), (1e-3, "GramSpectrum"), (1e-6, "Spectrum"),
                                           (0.0, "Spectrum")])
def test_the_gram_route_and_its_qr_fallback_agree_with_the_dense_svd(spread, route):
    """Well-conditioned A takes the Gram route (Cholesky of A A.T, eigh of the R x R core); rows spread over
    a wide range of scales (cond(A) ~ 1/spread) or a repeated row (spread 0: A A.T singular) take thin QR.
    Either way the top singular values and the rank-k approximation are the float64 dense SVD's."""
    from scalectl.lowrank import factor_spectrum

    g = torch.Generator().manual_seed(5)
    B, A = torch.randn(60, 16, generator=g), torch.randn(16, 48, generator=g)
    if spread:
        A = A * torch.logspace(0, torch.log10(torch.tensor(spread)), 16).unsqueeze(1)
    else:
        A[7] = A[3]  # one adapter's direction twice
    sp = factor_spectrum(B, A)
    assert type(sp).__name__ == route
    D = (B.double() @ A.double())
    want = torch.linalg.svdvals(D)
    torch.testing.assert_close(sp.S[:6].double(), want[:6], rtol=1e-5, atol=1e-6 * float(want[0]))
    for k in (1, 4):
        Ak, Bk = sp.top(k)
        err = float(torch.linalg.norm(D - Bk.double() @ Ak.double()) / torch.linalg.norm(D))
        assert err == pytest.approx(float(want[k:].pow(2).sum().sqrt() / want.pow(2).sum().sqrt()), rel=1e-5)


def test_modules_side_by_side_give_what_one_thread_gives():
    g = torch.Generator().manual_seed(2)
    factors = {f"m{i}": (torch.randn(30, 12, generator=g), torch.randn(12, 20, generator=g)) for i in range(5)}
    dense = {m: B @ A for m, (B, A) in factors.items()}
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [compress(factors, None, LowRankSpec(rank=4)), compress(None, dense, LowRankSpec(max_error=0.3))]
        torch.set_num_threads(2)
        two = [compress(factors, None, LowRankSpec(rank=4)), compress(None, dense, LowRankSpec(max_error=0.3))]
        assert torch.get_num_threads() == 2  # restored after the workers
    finally:
        torch.set_num_threads(n)
    for a, b in zip(one, two):
        assert list(a.A) == list(factors) and a.ranks == b.ranks and a.errors == b.errors
        for m in factors:
            assert torch.equal(a.A[m], b.A[m]) and torch.equal(a.B[m], b.B[m])


def test_max_error_picks_the_smallest_rank_within_it_and_rank_caps_it():
    S = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0, 0.0])
    errs = tail_errors(S)
    assert errs[0] == pytest.approx(1.0) and errs[-1] == 0.0
    for e in (0.9, 0.5, 0.25, 0.1, 0.0):
        k, err = choose_rank(S, LowRankSpec(max_error=e))
        assert err <= e and (k == 1 or errs[k - 1] > e), (e, k, err)
    assert choose_rank(S, LowRankSpec(rank=1000))[0] == 4  # never above the numerical rank
    assert choose_rank(S, LowRankSpec(rank=2, max_error=0.0))[0] == 2  # --rank caps --max-error
    assert choose_rank(torch.zeros(3), LowRankSpec(rank=2))[0] == 1  # a zero update still has r >= 1


# ---------------------------------------------------------------- compose --rank / --max-error


def test_compose_rank_writes_the_best_approximation_of_the_factor_update(pool, tmp_path):
    inp = load_inputs(pool, NAMES)
    comp = compose_inputs(inp, [0.5, -0.3, 1.2], resolve_merger("linear"))
    out = tmp_path / "r2"
    res = js("compose", "--merger", "linear", "--adapters", ",".join(NAMES), "--weights", "0.5,-0.3,1.2",
             "--out", out, "--rank", "2")
    assert res["rank"] == 2 and not res["exact"] and res["low_rank"]["rank"] == 2
    prov = json.loads((out / "scalectl_provenance.json").read_text())
    assert set(prov["ranks"].values()) == {2} and prov["low_rank"]["max_rel_error"] == pytest.approx(
        res["max_rel_error"], abs=1e-6)
    for m in inp.modules:
        D = comp.delta(m)
        S = torch.linalg.svdvals(D)
        got = _peft_delta(out, m)
        err = float(torch.linalg.norm(D - got) / torch.linalg.norm(D))
        assert err == pytest.approx(float(S[2:].pow(2).sum().sqrt() / S.pow(2).sum().sqrt()), rel=1e-3, abs=1e-5)
        assert prov["svd_rel_error"][m] == pytest.approx(err, rel=1e-3, abs=1e-5)
    # the default of a factor merger stays exact (rank sum(r) = 4 + 4 + 2)
    assert js("compose", "--merger", "linear", "--adapters", ",".join(NAMES), "--out", tmp_path / "ex")["exact"]


def test_max_error_writes_per_module_ranks_that_peft_reloads(pool, tmp_path):
    out = tmp_path / "e"
    res = js("compose", "--merger", "lasrc", "--adapters", ",".join(NAMES), "--out", out, "--max-error", "0.35")
    prov = json.loads((out / "scalectl_provenance.json").read_text())
    assert max(prov["svd_rel_error"].values()) <= 0.35 and res["max_rel_error"] <= 0.35
    cfg = json.loads((out / "adapter_config.json").read_text())
    ranks = prov["ranks"]
    assert {cfg["rank_pattern"].get(m.replace(".", "\\."), cfg["r"]) for m in ranks} == set(ranks.values())
    inp = load_inputs(pool, NAMES)
    comp = compose_inputs(inp, None, resolve_merger("lasrc"))
    for m in list(ranks)[:3]:
        D, got = comp.delta(m), _peft_delta(out, m)
        assert float(torch.linalg.norm(D - got) / torch.linalg.norm(D)) <= 0.35 + 1e-4
    one_line(["compose", "--merger", "linear", "--adapters", ",".join(NAMES), "--out", tmp_path / "x",
              "--max-error", "1.5"], "--max-error must be in [0, 1)")
    one_line(["compose", "--merger", "linear", "--adapters", ",".join(NAMES), "--out", tmp_path / "x",
              "--rank", "0"], "--rank must be at least 1")
    assert not (tmp_path / "x").exists()


def test_rslora_mixed_rank_and_bf16_inputs(llama_base, tmp_path):
    """What PEFT's own merging gets wrong or refuses: rslora scaling (alpha / sqrt(r)), a rank_pattern, bf16."""
    a = make_adapter(llama_base, tmp_path / "rs", r=4, alpha=8, seed=5, use_rslora=True)
    b = make_adapter(llama_base, tmp_path / "pat", r=4, alpha=8, seed=6,
                     rank_pattern={"model.layers.0.self_attn.q_proj": 2})
    c = make_adapter(llama_base, tmp_path / "half", r=2, alpha=4, seed=7)
    from safetensors.torch import load_file, save_file

    f = c / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(f)).items()}, str(f), metadata={"format": "pt"})
    assert runner.invoke(app, ["pool", "add", str(a), str(b), str(c), "--pool", "mix"]).exit_code == 0
    out = tmp_path / "full"
    res = js("compose", "--merger", "linear", "--adapters", "rs,pat,half", "--weights", "1,1,1", "--out", out,
             "--rank", "10", "--pool", "mix")
    assert res["max_rel_error"] < 1e-4  # rank 10 = 4 + 4 + 2 holds the whole update
    for m in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"):
        want = sum(_peft_delta(d, m).float() for d in (a, b, c))
        torch.testing.assert_close(_peft_delta(out, m), want, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- eval scores what compose writes


def test_eval_rank_scores_exactly_what_compose_writes(pool, llama_base, tmp_path):
    bbh = write_bbh(tmp_path / "bbh", {"tiny_tf": [{"input": f"t{i} and f{i % 3}", "target": "True"}
                                                  for i in range(18)]})
    common = ["--task", "bbh/tiny_tf", "--bbh-dir", bbh, "--base", llama_base, "--limit", "5", "--pool", "tiny"]
    low = js("eval", "--adapters", ",".join(NAMES), "--merger", "lasrc", "--rank", "2", *common)
    out = tmp_path / "served"
    js("compose", "--merger", "lasrc", "--adapters", ",".join(NAMES), "--out", out, "--rank", "2")
    served = js("eval", "--adapters", "served", "--weights", "1", "--merger", "linear", *common)
    exact = js("eval", "--adapters", ",".join(NAMES), "--merger", "lasrc", *common)
    preds = lambda r: [x["prediction"] for x in js("runs", "show", r["run_id"])["records"]]  # noqa: E731
    assert preds(low) == preds(served)
    comp_cfg = low["config"]["composition"]
    assert comp_cfg["low_rank"]["rank"] == 2 and not comp_cfg["exact"] and "low_rank" not in exact["config"][
        "composition"]
    one_line(["eval", "--base-only", "--rank", "2", *common[:-2]], "--rank approximates a composed update")


def test_eval_method_rank_is_part_of_the_config_and_notes(llama_base, method_adapters, tmp_path):
    from scalectl.evaluate import run_eval
    from scalectl.index import build_index
    from scalectl.methods import MethodConfig

    reg = Registry()
    reg.add_sources([str(p) for p in method_adapters], pool="m")
    build_index(reg, "m", "balanced", embedder="hash:64")
    bbh = write_bbh(tmp_path / "bbh", {"tiny_mix": [{"input": f"add {i} and 2", "target": str(i + 2)}
                                                   for i in range(18)]})
    cfg = MethodConfig(method="lorahub", lorahub_k=3, export_rank=1)
    cfg.search.steps = 12
    res = run_eval("tiny_mix", reg=reg, pool="m", method=cfg, bbh_dir=str(bbh), limit=2, base=str(llama_base))
    assert res.config["method_config"]["export_rank"] == 1
    # the composed updates a method decodes with go through plan.compose_deltas under the run's spec
    from scalectl.backbone import load_backbone
    from scalectl.context import RunContext
    from scalectl.methods.plan import compose_deltas

    ctx = RunContext(reg, load_backbone(str(llama_base)), "m", lowrank=LowRankSpec(rank=1))
    notes: list[str] = []
    got = compose_deltas(ctx, NAMES, [0.5, -0.3, 1.2], "lorahub", notes=notes)
    assert notes == [n for n in notes if n.startswith("scored the low-rank approximation (rank 1): rank 1")] != []
    exact = compose_deltas(RunContext(reg, ctx.bb, "m"), NAMES, [0.5, -0.3, 1.2], "lorahub")
    for m, d in got.items():
        assert int(torch.linalg.matrix_rank(d)) == 1
        want = compress(None, {m: exact[m]}, LowRankSpec(rank=1)).delta(m)
        torch.testing.assert_close(d, want, rtol=1e-3, atol=1e-5)
    with pytest.raises(Exception, match="export_rank approximates composed updates; logo scores none"):
        MethodConfig(method="logo", export_rank=2).check()
