"""Adapter I/O: inspection, block mapping, factor loading, and writing PEFT directories."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import make_adapter

from scalectl.adapters import (
    block_norms,
    block_of,
    delta_sq_norm,
    inspect_adapter,
    load_factors,
    lora_scaling,
    save_adapter,
)
from scalectl.errors import AdapterError, ScalectlError


def _peft_deltas(base, adapter_dir):
    """The updates PEFT itself applies: merged weight minus base weight, per adapted module."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = AutoConfig.from_pretrained(str(base))
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    ref = dict(cls.from_pretrained(str(base)).named_parameters())
    merged = PeftModel.from_pretrained(cls.from_pretrained(str(base)), str(adapter_dir)).merge_and_unload()
    out = {}
    for n, p in merged.named_parameters():
        if n.endswith(".weight") and not torch.equal(p, ref[n]):
            out[n[: -len(".weight")]] = (p - ref[n]).detach()
    return out


@pytest.mark.parametrize("name,block", [
    ("model.layers.3.self_attn.q_proj", "layer.3"),
    ("encoder.block.0.layer.0.SelfAttention.q", "encoder.0"),
    ("decoder.block.1.layer.1.EncDecAttention.v", "decoder.1"),
    ("transformer.h.11.attn.c_attn", "layer.11"),
    ("model.decoder.layers.2.self_attn.k_proj", "decoder.2"),
    ("lm_head", "lm_head"),
])
def test_block_of(name, block):
    assert block_of(name) == block


def test_inspect_llama_adapter(llama_adapters):
    info = inspect_adapter(llama_adapters[0])
    assert info.r == 4 and info.lora_alpha == 8 and info.scaling == 2.0
    assert info.target_modules == ["q_proj", "v_proj"]
    assert len(info.modules) == 4 and info.blocks == ["layer.0", "layer.1"]
    m = info.modules["model.layers.0.self_attn.v_proj"]
    assert (m.d_in, m.d_out, m.r) == (32, 16, 4)  # v_proj: 2 kv heads x head dim 8
    assert len(info.sha256) == 64 and info.size_bytes > 0 and info.dtype == "float32"


def test_t5_encoder_and_decoder_blocks_apart(t5_adapter):
    info = inspect_adapter(t5_adapter)
    assert info.blocks == ["decoder.0", "decoder.1", "encoder.0", "encoder.1"]
    dec0 = [m for m in info.modules.values() if m.block == "decoder.0"]
    # decoder block: self-attention q, v and cross-attention q, v
    assert sorted(m.name.split("block.0.")[1] for m in dec0) == [
        "layer.0.SelfAttention.q", "layer.0.SelfAttention.v", "layer.1.EncDecAttention.q", "layer.1.EncDecAttention.v"]


@pytest.mark.parametrize("which", ["llama", "t5"])
def test_factors_reproduce_peft_deltas(which, llama_base, llama_adapters, t5_base, t5_adapter):
    base, ad = (llama_base, llama_adapters[1]) if which == "llama" else (t5_base, t5_adapter)
    f = load_factors(inspect_adapter(ad))
    want = _peft_deltas(base, ad)
    assert set(want) == set(f.modules)
    for m in f.modules:
        torch.testing.assert_close(f.delta(m), want[m], rtol=1e-5, atol=1e-6)
        assert math.isclose(delta_sq_norm(f.A[m], f.B[m], f.scaling[m]), float(want[m].pow(2).sum()), rel_tol=1e-4)


def test_rslora_and_rank_pattern(tmp_path, llama_base):
    ad = make_adapter(llama_base, tmp_path / "rs", r=4, alpha=8, use_rslora=True,
                      rank_pattern={"v_proj": 2})
    info = inspect_adapter(ad)
    q, v = info.modules["model.layers.0.self_attn.q_proj"], info.modules["model.layers.0.self_attn.v_proj"]
    assert (q.r, v.r) == (4, 2)
    assert q.scaling == pytest.approx(lora_scaling(4, 8, True)) == pytest.approx(4.0)
    assert v.scaling == pytest.approx(8 / math.sqrt(2))
    f = load_factors(info)
    want = _peft_deltas(llama_base, ad)
    for m in f.modules:
        torch.testing.assert_close(f.delta(m), want[m], rtol=1e-5, atol=1e-6)


def test_save_adapter_roundtrip_loads_in_peft(tmp_path, llama_base, llama_adapters):
    """A rank-sum factor set with mixed ranks, scaling folded into B, loads in PEFT with the same deltas."""
    fs = [load_factors(inspect_adapter(p)) for p in llama_adapters]
    w = [0.5, -0.25, 1.5]
    A = {m: torch.cat([f.A[m] for f in fs]) for m in fs[0].modules}
    B = {m: torch.cat([wi * f.scaling[m] * f.B[m] for wi, f in zip(w, fs)], dim=1) for m in fs[0].modules}
    # drop one module to check that exactly the written modules are adapted
    dropped = "model.layers.1.self_attn.q_proj"
    A.pop(dropped), B.pop(dropped)
    out = save_adapter(tmp_path / "combo", A, B, base_model=str(llama_base))
    got = _peft_deltas(llama_base, out)
    assert set(got) == set(A)
    for m in A:
        want = sum(wi * f.delta(m) for wi, f in zip(w, fs))
        torch.testing.assert_close(got[m], want, rtol=1e-5, atol=1e-6)
    info = inspect_adapter(out)
    assert {m.r for m in info.modules.values()} == {10}


def test_save_adapter_refuses_existing_dir_and_cleans_up(tmp_path):
    A = {"model.layers.0.self_attn.q_proj": torch.ones(2, 4)}
    B = {"model.layers.0.self_attn.q_proj": torch.ones(4, 2)}
    (tmp_path / "out").mkdir()
    with pytest.raises(ScalectlError, match="exists"):
        save_adapter(tmp_path / "out", A, B)
    # an interrupted write leaves nothing behind
    import scalectl.adapters as ad

    def boom(*a, **k):
        raise KeyboardInterrupt

    orig = ad.json.dumps
    try:
        ad.json.dumps = boom
        with pytest.raises(KeyboardInterrupt):
            save_adapter(tmp_path / "new", A, B)
    finally:
        ad.json.dumps = orig
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_block_norms(llama_adapters):
    f = load_factors(inspect_adapter(llama_adapters[0]))
    rows = block_norms(f)
    assert [r["block"] for r in rows] == ["layer.0", "layer.1"]
    want = math.sqrt(sum(float(f.delta(m).pow(2).sum()) for m in f.modules if f.blocks[m] == "layer.0"))
    assert rows[0]["delta_norm"] == pytest.approx(want, rel=1e-4)


# ---- bad input at the I/O level (the CLI-level tests check exit codes and the registry)

def test_bad_inputs_raise_adapter_errors(tmp_path, adapter_copy):
    with pytest.raises(AdapterError, match="no such file"):
        inspect_adapter(tmp_path / "nope")
    d = adapter_copy(0, "nocfg")
    (d / "adapter_config.json").unlink()
    with pytest.raises(AdapterError, match="missing adapter_config.json"):
        inspect_adapter(d)
    d = adapter_copy(0, "garbled")
    (d / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        inspect_adapter(d)
    d = adapter_copy(0, "trunc")
    data = (d / "adapter_model.safetensors").read_bytes()
    (d / "adapter_model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(AdapterError, match="truncated"):
        inspect_adapter(d)
    d = adapter_copy(0, "corrupt")
    (d / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"garbage!" * 20)
    with pytest.raises(AdapterError, match="corrupt"):
        inspect_adapter(d)
    d = adapter_copy(0, "rank")
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["r"] = 8
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="contradict the declared rank 8"):
        inspect_adapter(d)


@pytest.mark.parametrize("umask,fmode,dmode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_save_adapter_and_atomic_file_use_the_umask_modes(tmp_path, umask, fmode, dmode):
    import os
    import stat

    from scalectl.fsutil import atomic_dir, atomic_file, current_umask

    A = {"model.layers.0.self_attn.q_proj": torch.ones(2, 4)}
    B = {"model.layers.0.self_attn.q_proj": torch.ones(4, 2)}
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        out = save_adapter(tmp_path / "ad", A, B, extra_files={"scalectl.json": "{}"})
        with atomic_file(tmp_path / "page.md") as f:
            f.write("x\n")
        with atomic_dir(tmp_path / "tree") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "priv").write_text("x")
            os.chmod(tmp / "sub" / "priv", 0o600)  # as a library's private temp file would be
            os.chmod(tmp / "sub", 0o700)
    finally:
        os.umask(old)
    assert mode(out) == dmode
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "scalectl.json"]
    assert {p.name: oct(mode(p)) for p in out.iterdir()} == {p.name: oct(fmode) for p in out.iterdir()}
    assert mode(tmp_path / "page.md") == fmode
    assert (mode(tmp_path / "tree"), mode(tmp_path / "tree" / "sub"), mode(tmp_path / "tree" / "sub" / "priv")) \
        == (dmode, dmode, fmode)
