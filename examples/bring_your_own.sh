#!/usr/bin/env bash
# Bring your own PEFT LoRA adapters: register them from directories and/or from the Hugging Face
# hub (or its local cache), check them, compose two of them with TIES and evaluate the result.
#
#   ADAPTER_DIRS="path/to/lora_a path/to/lora_b" bash examples/bring_your_own.sh
#   HUB_ID=hf:ORG/NAME bash examples/bring_your_own.sh            # also one adapter from the hub
#   HF_HUB_OFFLINE=1 HUB_ID=hf:ORG/NAME bash examples/bring_your_own.sh   # from the HF cache only
#
# Settings (environment variables):
#   ADAPTER_DIRS  space-separated PEFT adapter directories (adapter_config.json +
#                 adapter_model.safetensors). Default: two adapters of the shipped demo pool, as
#                 stand-ins for yours.
#   HUB_ID        a hub adapter, hf:ORG/NAME[@REVISION] (default: none, the hub step is skipped).
#                 This NEEDS THE HUB (network access) the first time: scalectl snapshots the repo
#                 into the standard HF cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
#                 ~/.cache/huggingface/hub) and registers that snapshot. With HF_HUB_OFFLINE=1 it
#                 only reads the cache, which must then already hold
#                 models--ORG--NAME/{refs/main,snapshots/<commit>/...} as huggingface_hub leaves it.
#   POOL          the pool they go into (default mine). A pool holds adapters on one base model:
#                 adapters on another base are refused (use another pool, or --force).
#   MERGER        how the two are merged (default ties; `scalectl compose --list`)
#   COMPOSE       the two adapter names to compose, comma-separated (default: the hub adapter, if
#                 any, and the first directory; else the first two directories)
#   OUT           the composed adapter's directory (default ./composed/<pool>-<merger>)
#   TASK, LIMIT   the BBH task the composition is evaluated on and its query cap
#                 (default bbh/boolean_expressions, 20; LIMIT=0 skips the evaluation)
#   SCALECTL_HOME, SCALECTL, PYTHON  as in compose_and_eval.sh
set -euo pipefail

# --- where things are -------------------------------------------------------------------------
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [[ -z "${SCALECTL:-}" ]]; then
    if command -v scalectl >/dev/null 2>&1; then SCALECTL=scalectl; else SCALECTL="$REPO/.venv/bin/scalectl"; fi
fi
PYTHON="${PYTHON:-python3}"

# --- settings ---------------------------------------------------------------------------------
DEMO="$REPO/registry/smollm2-skills"
ADAPTER_DIRS="${ADAPTER_DIRS:-$DEMO/boolean-expressions $DEMO/word-sorting}"
HUB_ID="${HUB_ID:-}"
POOL="${POOL:-mine}"
MERGER="${MERGER:-ties}"
OUT="${OUT:-$PWD/composed/${POOL}-${MERGER//+/-}}"
TASK="${TASK:-bbh/boolean_expressions}"
LIMIT="${LIMIT:-20}"
read -r -a DIRS <<<"$ADAPTER_DIRS"

# names JSON: the names of the adapters a `pool add --json` registered, comma-separated
names() {
    "$PYTHON" -c 'import json, sys; print(",".join(a["name"] for a in json.loads(sys.argv[1])["added"]))' "$1"
}

echo "== 1/6 register ${#DIRS[@]} adapter directories in pool '$POOL'"
# All or nothing: a missing file, a garbled config, factor shapes that contradict the declared
# rank, a pickle-only adapter (without --allow-pickle) or a different base model leaves the
# registry as it was. Each adapter is named after its directory (or the "name" in a scalectl.json
# sidecar beside it; the sidecar's description, tags and example records are picked up too).
# --replace lets you re-run this script; --tag attaches a tag to every adapter of the call.
ADDED="$("$SCALECTL" pool add "${DIRS[@]}" --pool "$POOL" --tag mine --replace --json)"
DIR_NAMES="$(names "$ADDED")"
echo "registered: $DIR_NAMES"

HUB_NAME=""
if [[ -n "$HUB_ID" ]]; then
    WHERE="downloaded unless cached"
    if [[ "${HF_HUB_OFFLINE:-0}" == 1 ]]; then WHERE="HF_HUB_OFFLINE=1: the local HF cache only"; fi
    echo "== 2/6 register $HUB_ID from the hub ($WHERE)"
    # The adapter is named after the repo (NAME in hf:ORG/NAME); its source hf:ORG/NAME and the
    # snapshot's commit are recorded. Only adapter_config.json, adapter_model.safetensors and
    # README.md are fetched.
    [[ "$HUB_ID" == hf:* ]] || HUB_ID="hf:$HUB_ID"
    ADDED="$("$SCALECTL" pool add "$HUB_ID" --pool "$POOL" --tag mine --replace --json)"
    HUB_NAME="$(names "$ADDED")"
    echo "registered: $HUB_NAME (from $HUB_ID)"
else
    echo "== 2/6 no HUB_ID given: skipping the hub step (it needs the hub, or an HF cache that holds the adapter)"
fi

echo "== 3/6 what is registered in '$POOL'"
"$SCALECTL" pool list --pool "$POOL"
FIRST="${DIR_NAMES%%,*}"
# Every recorded field of one adapter: source, base model, rank, alpha, target modules, sha256, ...
"$SCALECTL" pool show "$FIRST" --pool "$POOL"
# Load its factors (the sha256 is checked first) and print the update norm of every block.
"$SCALECTL" pool inspect "$FIRST" --pool "$POOL"

echo "== 4/6 verify: re-hash every weight file of the pool (exit 3 if one changed since registration)"
"$SCALECTL" pool verify --pool "$POOL"

if [[ -z "${COMPOSE:-}" ]]; then
    if [[ -n "$HUB_NAME" ]]; then COMPOSE="$HUB_NAME,$FIRST"; else COMPOSE="$(cut -d, -f1,2 <<<"$DIR_NAMES")"; fi
fi
NAME="$(basename "$OUT")"
echo "== 5/6 compose $COMPOSE with $MERGER -> $OUT (registered as $POOL:$NAME)"
# TIES keeps the top 20% of each update by magnitude (--density), elects a sign per entry and
# averages the agreeing entries; the dense result is truncated back to a LoRA by SVD (--rank,
# default the largest input rank). Weights default to 1/K. The output is a PEFT adapter directory
# (PeftModel.from_pretrained loads it) with scalectl_provenance.json, registered in the pool.
COMPOSE_JSON="$("$SCALECTL" compose --merger "$MERGER" --adapters "$COMPOSE" --pool "$POOL" --out "$OUT" --overwrite --json)"
"$PYTHON" - "$COMPOSE_JSON" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
err = f", max relative SVD error {r['max_rel_error']:.3f}" if not r["exact"] else ""
print(f"wrote {r['out']} ({r['merger']}, rank {r['rank']}, weights {r['weights']}{err}); registered as {r['registered']}")
PY

if [[ "$LIMIT" != 0 ]]; then
    echo "== 6/6 evaluate $NAME on $TASK (first $LIMIT queries; the base model is the pool's)"
    LIMIT_ARGS=()
    if [[ "$LIMIT" != all ]]; then LIMIT_ARGS=(--limit "$LIMIT"); fi
    "$SCALECTL" eval --adapters "$NAME" --pool "$POOL" --task "$TASK" "${LIMIT_ARGS[@]}"
else
    echo "== 6/6 LIMIT=0: evaluation skipped"
fi
