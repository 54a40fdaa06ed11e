#!/usr/bin/env bash
# Compose the shipped demo pool for one BIG-Bench Hard task and compare it with the base model.
#
#   bash examples/compose_and_eval.sh                       # bbh/navigate, 60 queries, 40 search steps
#   TASK=bbh/boolean_expressions LIMIT=all bash examples/compose_and_eval.sh
#   LIMIT=2 STEPS=2 GLOBAL=5 bash examples/compose_and_eval.sh   # a smoke run (what CI does)
#
# Every setting is an environment variable with a default for a real run:
#   TASK     the BBH task to compose for (default bbh/navigate; `scalectl eval --task nope` lists them)
#   LIMIT    queries evaluated per run (default 60; "all" evaluates every query)
#   STEPS    weight-search steps on the task's 5 support examples (default 40, as in method.md)
#   GLOBAL   candidates retrieved from the pool (default 20, as in method.md)
#   MERGER   how the weighted candidates are merged (default lasrc; `scalectl compose --list`)
#   OUT      where the composed PEFT adapter is written (default ./composed/<task>-<merger>);
#            its directory name is also its registry name
#   SCALECTL_HOME  scalectl's state directory (registry.db, the converted base model, caches)
#   SCALECTL       the scalectl executable (default: `scalectl` on PATH, else this checkout's .venv)
set -euo pipefail

# --- where things are -------------------------------------------------------------------------
# The demo pool ships in the repository's registry/ directory, next to this examples/ directory,
# so the script works from any working directory.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
MANIFEST="${MANIFEST:-$REPO/registry/smollm2-skills.toml}"

# The scalectl command: on PATH (an activated venv, pipx), else the checkout's own .venv.
if [[ -z "${SCALECTL:-}" ]]; then
    if command -v scalectl >/dev/null 2>&1; then SCALECTL=scalectl; else SCALECTL="$REPO/.venv/bin/scalectl"; fi
fi
# JSON results are read with Python's standard library (jq is not needed).
PYTHON="${PYTHON:-python3}"

# --- settings ---------------------------------------------------------------------------------
TASK="${TASK:-bbh/navigate}"
LIMIT="${LIMIT:-60}"
STEPS="${STEPS:-40}"
GLOBAL="${GLOBAL:-20}"
MERGER="${MERGER:-lasrc}"
SHORT="${TASK#bbh/}"
OUT="${OUT:-$PWD/composed/${SHORT}-${MERGER//+/-}}"
NAME="$(basename "$OUT")"

# Every command below works on the demo pool: SCALECTL_POOL is the same as --pool on each of them.
export SCALECTL_POOL="${SCALECTL_POOL:-smollm2-skills}"

# "--limit N" caps each evaluation at the task's first N queries; LIMIT=all drops the cap.
LIMIT_ARGS=()
if [[ "$LIMIT" != "all" && -n "$LIMIT" ]]; then LIMIT_ARGS=(--limit "$LIMIT"); fi

echo "== 1/5 register the demo pool ($MANIFEST) as pool '$SCALECTL_POOL'"
# 96 rank-8 LoRA adapters on SmolLM2-135M-Instruct; each weight file's sha256 is checked against
# the manifest. --replace makes a re-run of this script harmless.
"$SCALECTL" pool add --manifest "$MANIFEST" --pool "$SCALECTL_POOL" --replace --json >/dev/null
# (A composition is registered in the pool it was composed from, tagged `composed`; the index leaves
# such adapters out, so a re-run still retrieves from the 96 shipped adapters only.)
"$SCALECTL" pool pools          # every pool, its base model and size

echo "== 2/5 index the pool (view 'balanced': description, source task, input -> output pairs)"
# Embeds every adapter's text with MiniLM (an installed package, no download). Incremental: a
# re-run embeds only adapters whose text changed.
"$SCALECTL" index --view balanced

echo "== 3/5 compose for $TASK: retrieve $GLOBAL candidates, search their weights ($STEPS steps), merge with $MERGER"
# Retrieval ranks the pool against the task's 5 labelled support examples; the weight search
# (nevergrad) minimizes the support cross-entropy; the merge writes a PEFT adapter directory to
# $OUT (with scalectl_provenance.json) and registers it as '$NAME' in the pool.
# --overwrite replaces an earlier output of this script. --json keeps the long per-block table
# out of the terminal; the summary below is read from it.
COMPOSE_JSON="$("$SCALECTL" compose --merger "$MERGER" --task "$TASK" --steps "$STEPS" --global "$GLOBAL" \
    --out "$OUT" --overwrite --json)"
"$PYTHON" - "$COMPOSE_JSON" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
kept = sorted(((w, n) for n, w in zip(d["candidates"], d["weights"]) if w), key=lambda t: -abs(t[0]))
print(f"support loss {d['support_loss']:.4f}; {len(kept)} of {len(d['candidates'])} candidates kept a weight:")
for w, n in kept[:8]:
    print(f"  {w:+.3f}  {n}")
r = d["result"]
print(f"wrote {r['out']} ({r['merger']}, rank {r['rank']}); registered as {r['registered']}")
PY

echo "== 4/5 evaluate the composition on $TASK"
# One adapter with the default merger (linear, weight 1) is that adapter unchanged; it is decoded
# with its update added into the base weights. Each eval is a run in the registry (`scalectl runs list`).
COMPOSED_JSON="$("$SCALECTL" eval --adapters "$NAME" --task "$TASK" "${LIMIT_ARGS[@]}" --json)"

echo "== 5/5 evaluate the base model alone on $TASK (the zero-shot row)"
BASE_JSON="$("$SCALECTL" eval --base-only --task "$TASK" "${LIMIT_ARGS[@]}" --json)"

# --- the two exact-match scores, and how they differ query by query -------------------------
"$PYTHON" - "$COMPOSED_JSON" "$BASE_JSON" "$NAME" <<'PY'
import json, sys
comp, base = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for label, d in ((f"composed ({sys.argv[3]})", comp), ("base model", base)):
    print(f"{label:<40} EM {100 * d['macro_accuracy']:5.1f}%  over {d['n_queries']} queries  (run {d['run_id']})")
print("compare query by query:  scalectl runs compare", comp["run_id"], base["run_id"])
PY
