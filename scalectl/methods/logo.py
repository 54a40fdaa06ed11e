"""``logo`` (LoGo, archon159/LoGo; training-free): per-query adapter weights from a probe forward pass.

Every candidate is attached as its own branch; one forward pass of the query gives each branch's output
norm (or inverse entropy) at the last token of the last adapted module; the top k (20) are kept with
weights ``sig_i / sum sig_j`` (or top-1, or uniform) and generation mixes the branch outputs with them.
"""

from __future__ import annotations

from typing import Any

from ..progress import Progress, ensure
from .base import RETRIEVAL_OPTIONS, GroupMethod
from .plan import Group, new_plan, retrieve_for, timed_search


def generate_mixed(bb, factors, prompts: list[str], W, max_new_tokens: int, batch_size: int = 10,
                   on_batch: Any = None) -> list[str]:
    """LoGo's output-level mixture: every factor set attached as its own branch, per-prompt weights ``W`` (n, K);
    batched greedy decoding, stopping at a newline or EOS."""
    import torch

    from ..backbone import generate_greedy
    from ..stacked import StackedLora

    outs: list[str] = []
    with StackedLora(bb.model, factors) as st:
        for i in range(0, len(prompts), batch_size):
            st.set_example_weights(torch.as_tensor(W[i:i + batch_size]))
            outs += generate_greedy(bb, prompts[i:i + batch_size], max_new_tokens=max_new_tokens, batch_size=batch_size,
                                    stop_at_newline=True, on_batch=on_batch)
    return outs


def _signal(o, how: str):
    """A branch's signal from its output ``o`` (b, d_out): its L2 norm, or its inverse entropy."""
    import torch

    if how == "l2":
        return o.norm(dim=-1)
    pr = torch.softmax(o, dim=-1)
    ent = -(pr * torch.log(pr.clamp_min(1e-12))).sum(-1)
    return 1.0 / ent.clamp_min(1e-12)


def _keep(sig, k: int, variant: str):
    """Per-query weights from the signals (b, K): the top k, weighted by signal (or uniform; or top-1)."""
    import torch

    kk = min(k, sig.shape[1]) if variant != "top1" else 1
    top = sig.topk(kk, dim=-1)
    w = torch.zeros_like(sig)
    if variant == "uniform":
        w.scatter_(1, top.indices, 1.0 / kk)
    else:
        w.scatter_(1, top.indices, top.values / top.values.sum(-1, keepdim=True).clamp_min(1e-12))
    return w


def logo_weights(ctx, names: list[str], prompts: list[str], cfg, progress: Progress | None = None,
                 batch_size: int = 10):
    """LoGo's signal: one forward pass per query with every candidate as its own branch; (n, K) weights."""
    import torch

    from ..backbone import format_prompts

    bb = ctx.bb
    factors = ctx.factors(names)
    k = len(factors)
    mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
    probe = mods[-1]  # the last adapted module (of the last adapted layer)
    p = next(bb.model.parameters())
    A = torch.cat([f.A[probe] for f in factors]).to(p.device, torch.float32)  # (R, d_in)
    B = torch.cat([f.scaling[probe] * f.B[probe] for f in factors], dim=1).to(p.device, torch.float32)  # (d_out, R)
    seg = torch.cat([torch.full((f.A[probe].shape[0],), i) for i, f in enumerate(factors)]).to(p.device)
    captured: list[torch.Tensor] = []

    def hook(_mod, inputs):
        captured.append(inputs[0][:, -1, :].detach().float())  # last token (left padding)

    tok = bb.tokenizer
    texts = format_prompts(bb, prompts)
    out = torch.zeros(len(prompts), k)
    handle = bb.model.get_submodule(probe).register_forward_pre_hook(hook)
    prog = ensure(progress)
    prog.start("logo", f"logo: one forward pass per query ({k} branches)", len(prompts))
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        with torch.inference_mode():  # the probe forward is the base model's: branch outputs come from h
            for i in range(0, len(texts), batch_size):
                captured.clear()
                enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=bb.is_seq2seq)
                enc = {kk: v.to(bb.device) for kk, v in enc.items()}
                if bb.is_seq2seq:
                    bb.model.get_encoder()(**enc)
                else:
                    bb.model(**enc)
                h = captured[-1]  # (b, d_in)
                z = h @ A.T  # (b, R)
                sig = torch.zeros(h.shape[0], k)
                for j in range(k):
                    sig[:, j] = _signal(z[:, seg == j] @ B[:, seg == j].T, cfg.logo_signal)  # branch j's output
                out[i:i + h.shape[0]] = _keep(sig, cfg.logo_k, cfg.logo_variant)
                prog.advance("logo", h.shape[0])
    finally:
        handle.remove()
        tok.padding_side = old
    prog.finish("logo")
    return out


class LoGo(GroupMethod):
    def plan(self, ctx, cfg, task, queries, progress):
        plan = new_plan(task, self.name)
        ctx.names()
        cands = [n for n, _ in retrieve_for(ctx, cfg, plan, task, queries).global_candidates]
        with timed_search(plan):
            W = logo_weights(ctx, cands, [e.input for e in queries], cfg, progress)
        plan.groups.append(Group("instance", "logo", cands, [], list(range(len(queries))), example_weights=W))
        return plan


METHODS = [LoGo("logo", "LoGo: per-query branch weights from a probe pass, output-level mixture", "archon159/LoGo",
                RETRIEVAL_OPTIONS + ("logo_signal", "logo_k", "logo_variant"))]
