"""Decoding speed of a composed adapter against the base model, measured in the same run.

    python benchmarks/eval.py [--task bbh/navigate] [--queries 40] [--batch 10] [--tokens 8] [--repeats 2]

Rows, all on the embedded default (SmolLM2-135M-Instruct) over the same BBH queries and batch:

- ``base``: the backbone alone (the reference; ratios are to it);
- ``merged``: the ``linear`` composition of the demo skill pool (uniform weights) added into
  the weights, as ``scalectl eval`` decodes it (:func:`scalectl.stacked.merged_weights`);
- ``peft-unmerged``: the same composition written as a PEFT adapter (rank sum(r)) and
  decoded through ``PeftModel`` without merging;
- ``peft-unmerged-r8``: one rank-8 skill adapter through ``PeftModel`` unmerged.

Every row decodes exactly ``--tokens`` new tokens per query (min = max new tokens), so the
rows do the same work whatever the adapters make the model say. Target: merged at least
0.95x base speed. Needs the demo pool (registry/smollm2-skills.toml).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def decode_qps(bb, prompts: list[str], batch: int, tokens: int, repeats: int) -> float:
    import torch

    from scalectl.backbone import format_prompts

    tok, model = bb.tokenizer, bb.model
    texts = format_prompts(bb, prompts)
    tok.padding_side = "left"
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                     num_beams=1, pad_token_id=tok.pad_token_id, use_cache=True)
            assert out.shape[1] == enc["input_ids"].shape[1] + tokens
        best = min(best, time.perf_counter() - t0)
    return len(prompts) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="bbh/navigate")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    os.environ.setdefault("SCALECTL_HOME", tempfile.mkdtemp(prefix="scalectl-bench-"))
    import torch
    from peft import PeftModel

    from scalectl.backbone import load_backbone
    from scalectl.compose import compose_inputs, load_inputs, write_adapter
    from scalectl.merge.table import resolve_merger
    from scalectl.registry import Registry
    from scalectl.stacked import merged_weights
    from scalectl.tasks import bbh

    torch.set_num_threads(max(1, torch.get_num_threads()))
    reg = Registry()
    res = reg.add_sources(manifest=ROOT / "registry" / "smollm2-skills.toml", replace=True)
    names = [r["name"] for r in res.added]
    task = bbh.load_tasks(args.task)[0]
    prompts = [e.input for e in task.queries[: args.queries]]
    bb = load_backbone("smollm2-135m", device="cpu")
    inp = load_inputs(reg, names, pool=res.pool)
    comp = compose_inputs(inp, None, resolve_merger("linear"))
    deltas = {m: comp.delta(m).float() for m in inp.modules}
    rows = []
    rank = sum(f.A[inp.modules[0]].shape[0] for f in inp.factors)
    print(f"{args.task}: {len(prompts)} queries, batch {args.batch}, {args.tokens} new tokens each, "
          f"best of {args.repeats}; composition: linear over {len(names)} adapters (rank {rank})", flush=True)
    base_qps = decode_qps(bb, prompts, args.batch, args.tokens, args.repeats)
    rows.append(("base", base_qps))
    with merged_weights(bb.model, deltas):
        rows.append(("merged (scalectl eval)", decode_qps(bb, prompts, args.batch, args.tokens, args.repeats)))
    with tempfile.TemporaryDirectory() as d:
        write_adapter(comp, Path(d) / "composed")
        single = reg.find(names[0], res.pool)["path"]
        for label, path in (("peft-unmerged (composed)", Path(d) / "composed"), ("peft-unmerged-r8 (one adapter)", single)):
            base_model = bb.model
            pm = PeftModel.from_pretrained(base_model, str(path)).eval()
            bb.model = pm
            try:
                rows.append((label, decode_qps(bb, prompts, args.batch, args.tokens, args.repeats)))
            finally:
                bb.model = pm.unload()
    print(f"{'row':34s} {'queries/s':>10s} {'x base':>8s}")
    for label, qps in rows:
        print(f"{label:34s} {qps:10.2f} {qps / base_qps:8.3f}")
    merged = rows[1][1] / base_qps
    print(f"target merged >= 0.95x base: {'met' if merged >= 0.95 else 'NOT met'} ({merged:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
