"""Lockstep weight searches end to end: one task under ``ilc`` and ``scale``, searches one after another
(today's path, ``SCALECTL_LOCKSTEP=0``) against lockstep (the default), measured in the same run.

    python benchmarks/lockstep.py [--task bbh/navigate] [--limit 10] [--steps 40] [--methods ilc,scale]

On the embedded default (SmolLM2-135M-Instruct) and the demo skill pool (registry/smollm2-skills.toml),
with the search cache off, each method is run twice through :func:`scalectl.evaluate.run_eval`, the same
backbone in memory: ``sequential`` (each cluster's, each view's search alone) and ``lockstep`` (all of a
task's searches in one batched forward pass per step: :func:`scalectl.search.search_many`). It prints both
wall times and their ratio, and checks that the two runs' records (every query's output and path) and plans
(candidates, weights, every search step) are identical; the exit status is 1 if they are not. Targets:
``ilc`` at least 1.5x, ``scale`` (3 views) at least 2x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "forward_seconds", "lockstep", "cached"}  # differ between the paths by design


def strip(x):
    """``x`` without its timing fields, recursively."""
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def measure(reg, bb, method: str, task: str, limit: int, steps: int, lockstep: bool):
    from scalectl.evaluate import run_eval
    from scalectl.methods import MethodConfig
    from scalectl.search import SearchConfig

    os.environ["SCALECTL_LOCKSTEP"] = "1" if lockstep else "0"
    t = time.perf_counter()
    res = run_eval([task], reg=reg, bb=bb, pool="smollm2-skills", limit=limit,
                   method=MethodConfig(method=method, search=SearchConfig(steps=steps)))
    wall = time.perf_counter() - t
    run = reg.run(res.run_id)
    recs = [{k: v for k, v in r.items() if k not in ("run_id", "id", "created")} for r in reg.records(res.run_id)]
    return wall, strip(recs), strip(run["summary"]["plans"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="bbh/navigate")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--methods", default="ilc,scale")
    args = ap.parse_args()
    os.environ.setdefault("SCALECTL_HOME", tempfile.mkdtemp(prefix="scalectl-bench-"))
    os.environ["SCALECTL_SEARCH_CACHE"] = "0"

    from scalectl.backbone import load_backbone
    from scalectl.index import build_index
    from scalectl.methods import MethodConfig
    from scalectl.registry import Registry

    reg = Registry()
    reg.add_sources(manifest=ROOT / "registry" / "smollm2-skills.toml", replace=True)
    for v in dict.fromkeys(["balanced"] + list(MethodConfig(method="scale").views)):
        build_index(reg, "smollm2-skills", v)
    bb = load_backbone("smollm2-135m", device="cpu")
    print(f"{args.task}: {args.limit} queries, {args.steps} search steps, search cache off", flush=True)
    ok = True
    for m in args.methods.split(","):
        seq, seq_recs, seq_plans = measure(reg, bb, m, args.task, args.limit, args.steps, lockstep=False)
        lock, lock_recs, lock_plans = measure(reg, bb, m, args.task, args.limit, args.steps, lockstep=True)
        same = seq_recs == lock_recs and seq_plans == lock_plans
        ok &= same
        print(f"{m:6s} sequential {seq:8.1f} s   lockstep {lock:8.1f} s   {seq / lock:5.2f}x   "
              f"records and plans identical: {'yes' if same else 'NO'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
