"""Retrieval speed on a large synthetic index against a brute-force reference measured in the same run.

    python benchmarks/retrieve.py [--adapters 10000] [--dim 384] [--support 5] [--queries 250] [--repeats 20]
                                  [--no-registry]

Rows (all on the same seeded unit vectors; the index is already in memory):

- ``scalectl rank``: :func:`scalectl.retrieve.rank`, i.e. what ``scalectl retrieve`` does after
  embedding: global top-20 from the mean support vector, local top-20 per support example
  (one (1 + k, dim) x (dim, N) product and a partial sort), and routing of every query;
- ``scalectl top_k``: the top-k step alone;
- ``reference``: a NumPy brute-force loop over the rows (one ``np.dot`` per adapter and
  vector, then a full sort; routing by a loop over the support vectors). Ratios are to it.

Both must return the same candidates and routes (checked). Target: ``scalectl rank`` under
50 ms at 10,000 x 384. Unless ``--no-registry``, it also times reading the same index out of
a throw-away registry (``load_index``: SQLite BLOBs to one float32 matrix), the "loading" that
precedes retrieval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def unit(x):
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference(matrix, sup, queries, n_global: int, n_local: int):
    """Brute force: a Python loop over the rows, np.dot each, sort by (-score, row)."""
    import numpy as np

    def top(vec, k):
        scores = [(float(np.dot(row, vec)), i) for i, row in enumerate(matrix)]
        return [i for _, i in sorted(scores, key=lambda t: (-t[0], t[1]))[:k]]

    mean = unit(sup.mean(axis=0))
    glob = top(mean, n_global)
    local = [top(s, n_local) for s in sup]
    routes = [max(range(len(sup)), key=lambda j: (float(np.dot(q, sup[j])), -j)) for q in queries]
    return glob, local, routes


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def load_from_registry(names, matrix, repeats: int) -> float:
    """Write the index into a throw-away registry (bare rows), then time load_index."""
    home = tempfile.mkdtemp(prefix="scalectl-bench-")
    os.environ["SCALECTL_HOME"] = home
    from scalectl.index import load_index, to_blob
    from scalectl.registry import Registry

    reg = Registry()
    with reg.transaction() as db:
        db["pools"].insert({"name": "bench", "base_model": "synthetic", "created": "now"})
        db["adapters"].insert_all([{"id": i + 1, "pool": "bench", "name": n, "source": f"hf:bench/{n}", "status": "remote",
                                    "created": "now"} for i, n in enumerate(names)])
        db["embeddings"].insert_all([{"adapter_id": i + 1, "pool": "bench", "name": n, "view": "balanced",
                                      "recipe": "balanced", "embedder": "synthetic", "dim": matrix.shape[1],
                                      "text_hash": "-", "vector": to_blob(matrix[i]), "created": "now"}
                                     for i, n in enumerate(names)])
    import numpy as np

    t, idx = timed(lambda: load_index(reg, "bench", "balanced"), repeats)
    assert idx.names == list(names) and np.array_equal(idx.matrix, matrix)
    reg.close()
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--support", type=int, default=5)
    ap.add_argument("--queries", type=int, default=250)
    ap.add_argument("--global", dest="n_global", type=int, default=20)
    ap.add_argument("--local", dest="n_local", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-registry", action="store_true", help="Skip timing load_index from SQLite.")
    a = ap.parse_args()

    import numpy as np

    from scalectl.retrieve import rank, top_k

    rng = np.random.default_rng(0)
    names = [f"adapter-{i:05d}" for i in range(a.adapters)]
    matrix = unit(rng.normal(size=(a.adapters, a.dim)))
    sup = unit(rng.normal(size=(a.support, a.dim)))
    queries = unit(sup[rng.integers(0, a.support, a.queries)] + 0.5 * rng.normal(size=(a.queries, a.dim)))
    stacked = np.concatenate([unit(sup.mean(axis=0))[None], sup])

    rank(names, matrix, sup, sup, queries, a.n_global, a.n_local)  # warm-up (BLAS threads, page faults)
    t_rank, res = timed(lambda: rank(names, matrix, sup, sup, queries, a.n_global, a.n_local), a.repeats)
    t_topk, _ = timed(lambda: top_k(matrix, stacked, max(a.n_global, a.n_local)), a.repeats)
    t_ref, (glob, local, routes) = timed(lambda: reference(matrix, sup, queries, a.n_global, a.n_local), 1)

    assert [n for n, _ in res.global_candidates] == [names[i] for i in glob], "global candidates differ from the reference"
    assert [[n for n, _ in x] for x in res.local_candidates] == [[names[i] for i in x] for x in local], "local lists differ"
    assert res.routes == routes, "routes differ from the reference"

    print(f"retrieval over {a.adapters:,} x {a.dim} float32 unit vectors; {a.support} support examples, "
          f"{a.queries} queries, top-{a.n_global} global + top-{a.n_local} local; median of {a.repeats} runs; "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"{'row':<28}{'ms':>10}{'vs reference':>16}")
    rows = (("scalectl rank (all of it)", t_rank), ("scalectl top_k (1+k rows)", t_topk), ("reference (loop, 1 run)", t_ref))
    for label, t in rows:
        print(f"{label:<28}{1000 * t:>10.2f}{t_ref / t:>15.0f}x")
    print(f"same candidates and routes as the reference: yes; target < 50 ms: {'met' if t_rank < 0.05 else 'MISSED'}")
    if not a.no_registry:
        t_load = load_from_registry(names, matrix, max(3, a.repeats // 4))
        print(f"{'load_index from SQLite':<28}{1000 * t_load:>10.2f}   (loading, before retrieval)")
    return 0 if t_rank < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
