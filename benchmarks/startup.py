"""Foundation targets, printed as a table with ratios against references measured in the same run.

    python benchmarks/startup.py [--n 100] [--skip-backbone]

- ``scalectl --help`` (target < 0.5 s); reference: ``python -c pass`` (interpreter start).
- ``pool add`` of N local adapters of LoRAHub's shape (FLAN-T5-large, rank 16, q and v,
  144 modules, bf16) in one call (target < 10 s for N = 100); reference: sha256 of the
  same files (the I/O floor every registration pays).
- Embedded backbone: the second ``load_backbone`` (from the safetensors cache; target
  < 3 s); reference: the one-time GGUF conversion when this home has none yet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from scalectl.adapters import save_adapter
from scalectl.fsutil import sha256_file


def best_of(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def t5_large_adapter(out: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    A, B = {}, {}
    mods = [f"encoder.block.{i}.layer.0.SelfAttention.{p}" for i in range(24) for p in "qv"]
    mods += [f"decoder.block.{i}.layer.{j}.{att}.{p}" for i in range(24)
             for j, att in ((0, "SelfAttention"), (1, "EncDecAttention")) for p in "qv"]
    for m in mods:
        A[m] = torch.randn(16, 1024, generator=g) * 0.01
        B[m] = torch.randn(1024, 16, generator=g) * 0.01
    save_adapter(out, A, B, base_model="google/flan-t5-large", task_type="SEQ_2_SEQ_LM", dtype=torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--skip-backbone", action="store_true")
    a = ap.parse_args()
    exe = Path(sys.executable).with_name("scalectl")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="scalectl-bench-"))
    env = {**os.environ, "SCALECTL_HOME": str(work / "home")}
    try:
        ref = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        t = best_of(lambda: subprocess.run([str(exe), "--help"], check=True, capture_output=True, env=env))
        rows.append(("scalectl --help", t, 0.5, "python -c pass", ref))

        src = work / "adapters"
        t5_large_adapter(src / "a000", 0)
        for i in range(1, a.n):
            shutil.copytree(src / "a000", src / f"a{i:03d}")  # same bytes: hashing cost is what matters
        files = sorted(src.glob("*/adapter_model.safetensors"))
        size = sum(f.stat().st_size for f in files)
        ref = best_of(lambda: [sha256_file(f) for f in files], n=1)
        t0 = time.perf_counter()
        subprocess.run([str(exe), "pool", "add", *map(str, sorted(src.iterdir())), "--pool", "bench", "--json"],
                       check=True, capture_output=True, env=env)
        t = time.perf_counter() - t0
        rows.append((f"pool add x{a.n} (LoRAHub shape, {size / 2**20:.0f} MiB)", t, 10.0, "sha256 of the files", ref))

        if not a.skip_backbone:
            # The load proper: torch and transformers (with the Llama classes) are imported first, as in any
            # command that uses a model; the cold-process total is printed beside it.
            code = ("import time; t0=time.perf_counter(); import torch; "
                    "from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM; "
                    "from scalectl.backbone import load_backbone; t=time.perf_counter(); "
                    "load_backbone(None, device='cpu'); e=time.perf_counter(); print(e-t, e-t0)")

            def once() -> tuple[float, float]:
                out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
                load, total = map(float, out.stdout.split()[-2:])
                return load, total

            first, first_total = once()
            second, second_total = once()
            rows.append(("embedded backbone, second load (after imports)", second, 3.0,
                         "first load (GGUF conversion)", first))
            rows.append(("  same, cold process incl. torch/transformers import", second_total, None,
                         "first, cold process", first_total))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tab = Table(title="scalectl foundation benchmark (this machine, one run)")
    for h in ("measure", "seconds", "target s", "meets", "reference", "ref seconds", "ratio to ref"):
        tab.add_column(h)
    for name, t, target, refname, ref in rows:
        meets = "-" if target is None else ("yes" if t < target else "NO")
        tab.add_row(name, f"{t:.3f}", "-" if target is None else f"< {target}", meets, refname, f"{ref:.3f}",
                    f"{t / ref:.2f}x")
    Console(width=200).print(tab)


if __name__ == "__main__":
    main()
