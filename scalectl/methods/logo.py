"""``logo`` (LoGo, archon159/LoGo ``utils/model.py``: ``get_mixed_lora_model``, ``get_lora_matrices_for``,
``select_and_predict``; training-free): per-query adapter weights from one probe forward pass.

Every adapter of the pool is attached and active at its own scale (no retrieval). One forward pass of the
query asks for hidden states; ``h = hidden_states[L]`` (the residual stream entering layer L, before its input
norm) at the last token, where L is the last layer and the probed module is that layer's query projection.
For each adapter i, ``o_i = s_i B_i A_i h`` with that module's factors; the signal is ``||o_i||`` (default) or
``1 / (H(softmax(o_i)) + 1e-6)``. The top k (20) of the whole pool are kept with weights ``sig_i / sum sig_j``
(or top-1, or uniform), and generation runs with only those adapters, each scaled by its weight (an
output-level mixture in every adapted layer). On an encoder-decoder the probe is the last decoder block's
self-attention query, on the decoder's first position (the record says so).
"""

from __future__ import annotations

from typing import Any

from ..progress import Progress, ensure
from .base import GroupMethod
from .plan import Group, new_plan, timed_search


def generate_mixed(bb, factors, prompts: list[str], W, max_new_tokens: int, batch_size: int = 10,
                   on_batch: Any = None) -> list[str]:
    """LoGo's output-level mixture: every factor set attached as its own branch, per-prompt weights ``W`` (n, K);
    batched greedy decoding, stopping at a newline or EOS."""
    import torch

    from ..backbone import format_prompts, generate_greedy, length_order
    from ..stacked import StackedLora

    order = length_order(bb.tokenizer, format_prompts(bb, prompts), bb.is_seq2seq)  # each prompt keeps its weights
    outs: dict[int, str] = {}
    with StackedLora(bb.model, factors) as st:
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            st.set_example_weights(torch.as_tensor(W[rows]))
            got = generate_greedy(bb, [prompts[r] for r in rows], max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, stop_at_newline=True, on_batch=on_batch, by_length=False)
            outs.update(zip(rows, got))
    return [outs[i] for i in range(len(prompts))]


def _signal(o, how: str):
    """A branch's signal from its output ``o`` (b, d_out): its L2 norm, or its inverse entropy (LoGo's
    ``entropy``: ``-sum p log(p + 1e-8)``, then ``1 / (H + 1e-6)``)."""
    import torch

    if how == "l2":
        return o.norm(dim=-1)
    pr = torch.softmax(o, dim=-1)
    ent = -(pr * torch.log(pr + 1e-8)).sum(-1)
    return 1.0 / (ent + 1e-6)


def probe_module(bb, modules: list[str]) -> tuple[str, int, str | None]:
    """LoGo's probe: the query projection of the model's last layer (encoder-decoder: of the last decoder block's
    self-attention), its layer index, and a note when the adapters do not adapt it (then: the last adapted
    module of the deepest adapted layer)."""
    import re

    n_layers = int(getattr(bb.model.config, "num_decoder_layers", None) or bb.model.config.num_hidden_layers)
    layer_re = re.compile(r"(?:^|\.)(?:layers|block|h)\.(\d+)\.")
    side = [m for m in modules if m.startswith("decoder.") or ".decoder." in m] if bb.is_seq2seq else modules

    def layer(m: str) -> int:
        found = layer_re.search(m)
        return int(found.group(1)) if found else -1

    wanted = [m for m in side if layer(m) == n_layers - 1 and re.search(r"(q_proj|\.q)$", m)
              and "EncDecAttention" not in m]
    if wanted:
        return wanted[0], n_layers - 1, None
    deepest = max(side or modules, key=lambda m: (layer(m), (side or modules).index(m)))
    return deepest, layer(deepest), (f"the adapters do not adapt the last layer's query projection; LoGo's probe "
                                     f"uses {deepest} instead")


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
    """LoGo's selection: one forward pass per query with every candidate active (module docstring); returns the
    (n, K) weights and the probe's description."""
    import torch

    from ..backbone import format_prompts
    from ..stacked import StackedLora

    bb = ctx.bb
    factors = ctx.factors(names)
    k = len(factors)
    mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
    probe, layer, note = probe_module(bb, mods)
    p = next(bb.model.parameters())
    A = torch.cat([f.A[probe] for f in factors]).to(p.device, torch.float32)  # (R, d_in)
    B = torch.cat([f.scaling[probe] * f.B[probe] for f in factors], dim=1).to(p.device, torch.float32)  # (d_out, R)
    seg = torch.cat([torch.full((f.A[probe].shape[0],), i) for i, f in enumerate(factors)]).to(p.device)
    tok = bb.tokenizer
    texts = format_prompts(bb, prompts)
    out = torch.zeros(len(prompts), k)
    prog = ensure(progress)
    prog.start("logo", f"logo: one forward pass per query ({k} adapters active)", len(prompts))
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        with StackedLora(bb.model, factors) as st, torch.inference_mode():
            st.set_weights([1.0] * k)  # every adapter active at its own scale
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=bb.is_seq2seq)
                enc = {kk: v.to(bb.device) for kk, v in enc.items()}
                if bb.is_seq2seq:
                    start = torch.full((enc["input_ids"].shape[0], 1), bb.model.config.decoder_start_token_id,
                                       device=bb.device)
                    hs = bb.model(**enc, decoder_input_ids=start, output_hidden_states=True).decoder_hidden_states
                else:
                    hs = bb.model(**enc, output_hidden_states=True).hidden_states
                h = hs[layer][:, -1, :].float()  # entering layer L, last token (left padding)
                z = h @ A.T  # (b, R)
                sig = torch.zeros(h.shape[0], k)
                for j in range(k):
                    sig[:, j] = _signal(z[:, seg == j] @ B[:, seg == j].T, cfg.logo_signal)  # o_j = s_j B_j A_j h
                out[i:i + h.shape[0]] = _keep(sig, cfg.logo_k, cfg.logo_variant)
                prog.advance("logo", h.shape[0])
    finally:
        tok.padding_side = old
    prog.finish("logo")
    where = ("decoder_hidden_states[L] at the decoder's first position (an encoder-decoder: LoGo is defined for "
             "decoder-only models; this is the last decoder block's self-attention query)") if bb.is_seq2seq else \
        "hidden_states[L] (before the layer's input norm)"
    return out, {"module": probe, "layer": layer, "input": f"{where}, every adapter active",
                 **({"note": note} if note else {})}


class LoGo(GroupMethod):
    def index_views(self, cfg):
        return []  # no retrieval: the whole pool

    def plan(self, ctx, cfg, task, queries, progress):
        plan = new_plan(task, self.name)
        plan.seconds["retrieval"] = 0.0
        cands = ctx.candidates()
        with timed_search(plan):
            W, probe = logo_weights(ctx, cands, [e.input for e in queries], cfg, progress)
        plan.notes.append(f"logo probe: {probe['module']} (layer {probe['layer']}), {probe['input']}"
                          + (f"; {probe['note']}" if "note" in probe else ""))
        keep = sorted({int(j) for j in (W > 0).nonzero()[:, 1].tolist()})  # the adapters any query selected
        plan.groups.append(Group("instance", "logo", [cands[j] for j in keep], [], list(range(len(queries))),
                                 example_weights=W[:, keep]))
        return plan


METHODS = [LoGo("logo", "LoGo: per-query adapter weights from a probe pass over the whole pool, output-level "
                "mixture", "archon159/LoGo (utils/model.py select_and_predict)", ("logo_signal", "logo_k", "logo_variant"))]
