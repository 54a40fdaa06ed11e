#!/usr/bin/env bash
# Evaluate two composition methods (ilc and lasrc) and the base model on the same BBH queries,
# then ask how far to trust the difference: `scalectl audit paired --baseline ilc`.
#
#   bash examples/audit_two_methods.sh                        # 2 tasks, 30 queries each, 40-step searches (minutes on a CPU)
#   TASKS=bbh-8 LIMIT=all bash examples/audit_two_methods.sh  # the 8-task suite, every query (hours on a CPU)
#   TASKS=bbh/navigate LIMIT=2 STEPS=2 GLOBAL=2 LOCAL=2 SAMPLES=500 bash examples/audit_two_methods.sh  # smoke run (CI)
#
# Settings (environment variables):
#   TASKS    comma-separated BBH tasks or a suite (default bbh/navigate,bbh/boolean_expressions)
#   LIMIT    queries per task (default 30; "all" for every query)
#   STEPS    weight-search steps per support cluster (default 40, as in method.md)
#   GLOBAL   global candidates (default 20), LOCAL  local candidates per support example (default 20)
#   SAMPLES  permutation samples and bootstrap replicates of the audit (default 10000)
#   AUDIT_JSON  where the audit's JSON is written (default ./audit-paired.json)
#   SCALECTL_HOME, SCALECTL, PYTHON  as in compose_and_eval.sh
set -euo pipefail

# --- where things are -------------------------------------------------------------------------
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
MANIFEST="${MANIFEST:-$REPO/registry/smollm2-skills.toml}"
if [[ -z "${SCALECTL:-}" ]]; then
    if command -v scalectl >/dev/null 2>&1; then SCALECTL=scalectl; else SCALECTL="$REPO/.venv/bin/scalectl"; fi
fi
PYTHON="${PYTHON:-python3}"

# --- settings ---------------------------------------------------------------------------------
TASKS="${TASKS:-bbh/navigate,bbh/boolean_expressions}"
LIMIT="${LIMIT:-30}"
STEPS="${STEPS:-40}"
GLOBAL="${GLOBAL:-20}"
LOCAL="${LOCAL:-20}"
SAMPLES="${SAMPLES:-10000}"
AUDIT_JSON="${AUDIT_JSON:-$PWD/audit-paired.json}"
export SCALECTL_POOL="${SCALECTL_POOL:-smollm2-skills}"   # = --pool on every command below

LIMIT_ARGS=()
if [[ "$LIMIT" != "all" && -n "$LIMIT" ]]; then LIMIT_ARGS=(--limit "$LIMIT"); fi
# The retrieval and search settings both methods share; lasrc differs from ilc only in the merge.
METHOD_ARGS=(--task "$TASKS" "${LIMIT_ARGS[@]}" --steps "$STEPS" --global "$GLOBAL" --local "$LOCAL")

echo "== 1/5 register and index the demo pool '$SCALECTL_POOL'"
"$SCALECTL" pool add --manifest "$MANIFEST" --pool "$SCALECTL_POOL" --replace --json >/dev/null
"$SCALECTL" index --view balanced --json >/dev/null   # the view both methods retrieve with (--view)

# Each eval is one run in the registry, with one record per query; --json prints its summary,
# from which we keep the run id and the macro exact match.
summary() {  # summary LABEL JSON: one line per run
    "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
d = json.loads(sys.argv[2])
print(f"{sys.argv[1]:<10} EM {100 * d['macro_accuracy']:5.1f}%  over {d['n_queries']} queries  (run {d['run_id']})")
PY
}

echo "== 2/5 zero-shot: the base model alone"
ZS="$("$SCALECTL" eval --method zero-shot --task "$TASKS" "${LIMIT_ARGS[@]}" --json)"
summary zero-shot "$ZS"

echo "== 3/5 ilc (iLoRAComp): retrieve global + local candidates, one weight search per support example, linear merge"
# Each query is routed to its nearest support example and decoded with that cluster's composition.
ILC="$("$SCALECTL" eval --method ilc "${METHOD_ARGS[@]}" --json)"
summary ilc "$ILC"

echo "== 4/5 lasrc: ilc's retrieval, clusters and weights, merged with LASRC instead of linear"
# The weight searches are cached under $SCALECTL_HOME/cache/search, so lasrc reuses ilc's.
LASRC="$("$SCALECTL" eval --method lasrc "${METHOD_ARGS[@]}" --json)"
summary lasrc "$LASRC"

echo "== 5/5 the paired audit against ilc"
# --baseline ilc = the latest finished ilc run; --runs names the runs to compare with it (method
# names = their latest finished runs; run ids work too). All must cover the same queries.
#
# How to read the table:
#   macro EM     the mean over tasks of each task's exact match
#   delta        macro EM minus the baseline's, in points
#   flips        +i2c: queries the baseline got wrong and this run right; -c2i: the reverse;
#                =same: the rest. +i2c + c2i + same = the number of queries. Few flips means the
#                two methods mostly give the same answers, whatever the delta says.
#   W/L/T        tasks won / lost / tied against the baseline
#   p            two-sided paired sign-flip permutation test on the per-query differences
#                (uncorrected for the number of rows): small p = unlikely to be noise
#   95% CI       percentile bootstrap of the macro delta, resampling tasks; an interval that
#                contains 0 means no reliable difference. With one task it is a single point:
#                add --resample queries.
# --wide: every column even on a narrow terminal (at 80 columns flips, W/L/T and p are hidden).
"$SCALECTL" audit paired --baseline ilc --runs lasrc,zero-shot --per-task --samples "$SAMPLES" --wide
"$SCALECTL" audit paired --baseline ilc --runs lasrc,zero-shot --samples "$SAMPLES" --json >"$AUDIT_JSON"

"$PYTHON" - "$AUDIT_JSON" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["baseline"]
print(f"baseline {b['method']} (run {b['run']}): macro EM {100 * b['macro_accuracy']:.1f}%")
for r in d["results"]:
    sure = r["p"] < 0.05 and not (r["ci_low"] <= 0 <= r["ci_high"])
    verdict = "p < 0.05 and the CI excludes 0" if sure else "no reliable difference at this size"
    print(f"  {r['method']:<10} delta {100 * r['delta']:+.1f} pts, flips +{r['i2c']}/-{r['c2i']}/={r['unchanged']} "
          f"of {r['n_queries']}, p {r['p']:.3f}, CI [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]: {verdict}")
for note in d.get("notes", []):
    print(f"  note: {note}")
print(f"JSON written to {sys.argv[1]}")
PY
