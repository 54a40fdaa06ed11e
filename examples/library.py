"""The scalectl pipeline from Python, one step at a time: register -> index -> retrieve -> search ->
compose -> evaluate. This is what `scalectl compose --task` and `scalectl eval --adapters` do,
spelled out with the library calls they make.

    python examples/library.py                                  # bbh/navigate, 60 queries, 40 steps
    python examples/library.py --task bbh/boolean_expressions --limit 0   # every query
    python examples/library.py --limit 2 --steps 2 --global 5   # a smoke run (CI)

State goes to $SCALECTL_HOME (registry.db, the converted base model, caches), as for the CLI.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scalectl.backbone import load_backbone
from scalectl.compose import compose
from scalectl.evaluate import run_eval
from scalectl.index import build_index
from scalectl.registry import Registry
from scalectl.retrieve import retrieve
from scalectl.search import SearchConfig, search_weights
from scalectl.tasks import bbh

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "registry" / "smollm2-skills.toml"  # the shipped demo pool: 96 rank-8 LoRAs on SmolLM2-135M


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="bbh/navigate", help="one BBH task (default bbh/navigate)")
    ap.add_argument("--limit", type=int, default=60, help="queries evaluated (default 60; 0 = every query)")
    ap.add_argument("--steps", type=int, default=40, help="weight-search steps (default 40, as in method.md)")
    ap.add_argument("--global", dest="n_global", type=int, default=20, help="candidates retrieved (default 20)")
    ap.add_argument("--merger", default="lasrc", help="merge operator (default lasrc; `scalectl compose --list`)")
    ap.add_argument("--pool", default="smollm2-skills", help="pool name (default smollm2-skills)")
    ap.add_argument("--out", type=Path, default=None,
                    help="where the composed PEFT adapter goes (default ./composed/<task>-<merger>-py)")
    args = ap.parse_args()
    limit = args.limit or None
    short = args.task.split("/", 1)[-1]
    out = args.out or Path.cwd() / "composed" / f"{short}-{args.merger.replace('+', '-')}-py"

    # 1. Register. Registry() opens $SCALECTL_HOME/registry.db; add_sources() takes adapter
    #    directories, hf:ORG/NAME ids and/or a manifest, validates all of them, then writes them in
    #    one transaction. replace=True makes a re-run harmless.
    reg = Registry()
    added = reg.add_sources(manifest=MANIFEST, pool=args.pool, replace=True)
    print(f"1. registered {len(added.added)} adapters in pool {added.pool!r}")
    # (Compositions registered in the pool are tagged `composed`; the index leaves them out.)

    # 2. Index: embed each adapter's text (the 'balanced' view: description, source task and
    #    input -> output example pairs) with MiniLM; only changed adapters are re-embedded.
    summary = build_index(reg, args.pool, "balanced")
    print(f"2. indexed {summary['adapters']} adapters with view 'balanced' ({summary['embedder']}, {summary['dim']} dims): "
          f"{summary['embedded']} embedded now, {summary['unchanged']} unchanged")

    # 3. Retrieve. A BBH task is split as in method.md: examples[10:15] are the 5 labelled support
    #    examples, every other example is a query. Retrieval ranks the pool by cosine between the
    #    mean support embedding and each adapter's (global top-G; local lists per support example).
    task = bbh.load_tasks(args.task)[0]
    queries = task.queries[:limit] if limit else task.queries
    r = retrieve(reg, args.pool, "balanced", task.support, queries, n_global=args.n_global, n_local=1)
    names = [n for n, _ in r.global_candidates]
    print(f"3. {task.name}: {len(task.support)} support examples, {len(queries)} queries; top candidates:")
    for n, s in r.global_candidates[:5]:
        print(f"     {s:.3f}  {n}")

    # 4. Search weights. The base model is the pool's (the embedded SmolLM2-135M-Instruct: its hub
    #    id resolves to the embedded copy, converted once under $SCALECTL_HOME/models). The
    #    candidates are attached as one stacked LoRA branch per module and nevergrad looks for one
    #    weight per candidate minimizing the support cross-entropy + 0.05 mean|w|.
    bb = load_backbone(reg.pool(args.pool)["base_model"])
    factors = [reg.load_factors(n, args.pool) for n in names]  # sha256-verified LoRA factors
    t0 = time.perf_counter()
    sr = search_weights(bb, factors, task.support, SearchConfig(steps=args.steps), rule="linear")
    print(f"4. weight search: {sr.steps} steps in {time.perf_counter() - t0:.1f}s, support loss {sr.support_loss:.4f}")
    for n, w in sorted(zip(sr.names, sr.weights), key=lambda t: -abs(t[1]))[:5]:
        print(f"     {w:+.3f}  {n}")
    if not any(sr.weights):
        print("   every weight stayed 0: the base model fits the support set best; nothing to compose")
        return 0

    # 5. Compose: merge the weighted candidates with the merger and write a PEFT adapter directory
    #    (adapter_config.json, adapter_model.safetensors, scalectl_provenance.json). The output is
    #    registered in the same pool under its directory name, so it can be evaluated by name.
    res = compose(reg, names, sr.weights, args.merger, None, out=out, pool=args.pool, overwrite=True)
    print(f"5. composed with {res.merger}: {res.out} (rank {res.rank}, exact={res.exact}); registered as {res.registered}")

    # 6. Evaluate: the composition (one adapter with the linear merger is that adapter) and the base
    #    model alone, on the same queries. Each call is a run with one record per query in the registry.
    composed = run_eval([task], reg=reg, bb=bb, adapters=[out.name], pool=args.pool, limit=limit)
    base = run_eval([task], reg=reg, bb=bb, base_only=True, limit=limit)
    for label, e in ((f"composed ({out.name})", composed), ("base model", base)):
        print(f"6. {label:<32} EM {100 * e.macro_accuracy:5.1f}%  over {e.n_queries} queries  (run {e.run_id})")
    print(f"   query by query: scalectl runs compare {composed.run_id} {base.run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
