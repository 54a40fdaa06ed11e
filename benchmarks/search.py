"""Cost of the 40-step support-weight search against bare forward passes, measured in the same run.

    python benchmarks/search.py [--task bbh/navigate] [--k 20] [--steps 40]

On the embedded default (SmolLM2-135M-Instruct) with K adapters of the demo skill pool and
the task's 5 support examples (method.md: batch 5):

- ``bare``: ``steps`` support forward passes of the base model, no adapters (the reference);
- ``scalectl search``: :func:`scalectl.search.search_weights` (NGOpt, stacked LoRA attached
  once, one forward per step); target at most 1.3x ``bare``;
- ``lorahub-style``: LoRAHub's loop: each step rebuilds the merged LoRA state dict
  (``A = sum w A_n``, ``B = sum w B_n`` over every module) and loads it into a PEFT model
  (``set_peft_model_state_dict``) before the forward pass, with the same NGOpt.

Retrieval speed is in ``benchmarks/retrieve.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="bbh/navigate")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    os.environ.setdefault("SCALECTL_HOME", tempfile.mkdtemp(prefix="scalectl-bench-"))

    import nevergrad as ng
    import numpy as np
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from scalectl.backbone import load_backbone
    from scalectl.registry import Registry
    from scalectl.search import SearchConfig, encode_support, search_weights, support_loss
    from scalectl.tasks import bbh

    reg = Registry()
    res = reg.add_sources(manifest=ROOT / "registry" / "smollm2-skills.toml", replace=True)
    names = [r["name"] for r in res.added][: args.k]
    factors = [reg.load_factors(n, res.pool) for n in names]
    task = bbh.load_tasks(args.task)[0]
    support = [{"input": e.input, "target": e.target} for e in task.support]
    bb = load_backbone("smollm2-135m", device="cpu")
    enc = encode_support(bb, support)
    support_loss(bb, bb.model, enc)  # warm-up
    print(f"{args.task}: {len(support)} support examples, K={len(names)} adapters, {args.steps} steps", flush=True)

    t = time.perf_counter()
    for _ in range(args.steps):
        support_loss(bb, bb.model, enc)
    bare = time.perf_counter() - t

    t = time.perf_counter()
    ours = search_weights(bb, factors, support, SearchConfig(steps=args.steps))
    ours_s = time.perf_counter() - t

    # LoRAHub's loop: rebuild and load the merged LoRA state dict every step
    lcfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    pm = get_peft_model(bb.model, lcfg).eval()
    sds = []
    for f in factors:
        sd = {}
        for m in f.modules:
            sd[f"base_model.model.{m}.lora_A.weight"] = f.A[m].float()
            sd[f"base_model.model.{m}.lora_B.weight"] = (f.B[m] * (f.scaling[m] / 2.0)).float()  # alpha/r = 2 in lcfg
        sds.append(sd)
    keys = list(sds[0])
    param = ng.p.Array(init=np.zeros(len(names))).set_bounds(-1.5, 1.5)
    param.random_state = np.random.RandomState(42)
    opt = ng.optimizers.NGOpt(parametrization=param, budget=args.steps)
    t = time.perf_counter()
    for _ in range(args.steps):
        x = opt.ask()
        w = x.value
        merged = {k: sum(float(wi) * sd[k] for wi, sd in zip(w, sds)) for k in keys}
        set_peft_model_state_dict(pm, merged)
        loss = support_loss(bb, pm, enc) + 0.05 * float(np.mean(np.abs(w)))
        opt.tell(x, loss)
    lorahub_s = time.perf_counter() - t
    pm.unload()

    print(f"{'row':28s} {'seconds':>9s} {'x bare':>8s}")
    for label, s in (("bare forwards", bare), ("scalectl search", ours_s), ("lorahub-style rebuild", lorahub_s)):
        print(f"{label:28s} {s:9.2f} {s / bare:8.3f}")
    print(f"scalectl search: forward time {ours.forward_seconds:.2f} s, objective {ours.objective:.4f}")
    r = ours_s / bare
    print(f"target search <= 1.3x bare: {'met' if r <= 1.3 else 'NOT met'} ({r:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
