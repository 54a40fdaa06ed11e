"""The BBH-27 sweep on a GPU: zero-shot, ilc, lasrc and scale on the embedded default, wall time and queries/s
per row.

    python benchmarks/gpu.py [--device cuda] [--batch auto] [--tasks bbh] [--limit 0] [--methods ...]
    make bench-gpu

Every row is a ``scalectl eval`` run (:func:`scalectl.evaluate.run_eval`) over every query of the BBH tasks
(6,376 for all 27) on the demo skill pool (registry/smollm2-skills.toml, its indexes built first), bfloat16 on
CUDA (the backbone's default there), decoding ``--batch`` queries at a time (``auto``: each run probes the
fastest size on the device first, :mod:`scalectl.batching`, and prints the size it used), weight searches in
lockstep, the search cache off so every row does its own work. Targets on one H200: zero-shot under 60 s, ilc
under 5 minutes. ``--device cpu --tasks bbh/navigate --limit 5`` runs the same script here as a smoke check.
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
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", default="auto", help="queries per decoding batch, or auto (probed per run)")
    ap.add_argument("--tasks", default="bbh", help="tasks or a suite (bbh: all 27)")
    ap.add_argument("--limit", type=int, default=0, help="queries per task (0: all)")
    ap.add_argument("--methods", default="zero-shot,ilc,lasrc,scale")
    args = ap.parse_args()
    os.environ.setdefault("SCALECTL_HOME", tempfile.mkdtemp(prefix="scalectl-gpu-"))
    os.environ["SCALECTL_SEARCH_CACHE"] = "0"

    import torch

    from scalectl.backbone import load_backbone
    from scalectl.evaluate import run_eval
    from scalectl.index import build_index
    from scalectl.methods import MethodConfig
    from scalectl.registry import Registry
    from scalectl.tasks import bbh

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a smoke check", file=sys.stderr)
        return 2
    reg = Registry()
    reg.add_sources(manifest=ROOT / "registry" / "smollm2-skills.toml", replace=True)
    for v in dict.fromkeys(["balanced"] + list(MethodConfig(method="scale").views)):
        build_index(reg, "smollm2-skills", v)
    tasks = bbh.resolve(args.tasks, bbh.bbh_dir())
    bb = load_backbone("smollm2-135m", device=args.device)
    print(f"{len(tasks)} tasks on {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
          f"{bb.model.dtype}, batch {args.batch}", flush=True)
    print(f"{'row':10s} {'queries':>8s} {'wall s':>9s} {'queries/s':>10s} {'accuracy':>9s}", flush=True)
    for m in args.methods.split(","):
        kw = {"base_only": True} if m == "zero-shot" else {"method": MethodConfig(method=m), "pool": "smollm2-skills"}
        t = time.perf_counter()
        res = run_eval(tasks, reg=reg, bb=bb, limit=args.limit or None, batch_size=args.batch, **kw)
        wall = time.perf_counter() - t
        used = reg.run(res.run_id)["config"]["batch_size"]
        print(f"{m:10s} {res.n_queries:8d} {wall:9.1f} {res.n_queries / wall:10.1f} {res.macro_accuracy:9.3f}"
              f"  batch {used}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
