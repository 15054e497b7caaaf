#!/usr/bin/env bash
# One part of the issue-18 search (README "The search", in parts) on a GPU machine that is lent in slices.
#
#   bash benchmarks/search_part.sh SPACE SHOTS TRIALS GPUS_PER_TRIAL [more sasi tune options, e.g. --set train.batch_size=32]
#   e.g. START_S=240 BUDGET_S=520 bash benchmarks/search_part.sh sasi-core 10 24 0.125   # sasi-core-N10 towards 24
#
# Each study's Optuna mirror (<space>-N<shots>-optuna.db: every finished trial's parameters, score and time)
# lives in benchmarks/results/search/parts/; a part warm-starts from it (so only TRIALS minus the trials
# already there are trained) and writes it back in place and under $OUT (when set, with the part's search.json). Commit the mirror after every part; the last part, with both spaces, all shot
# counts and --confirm, writes benchmarks/results/search.json.
set -euo pipefail
space=$1 shots=$2 trials=$3 gpus=$4
parts=benchmarks/results/search/parts
data=runs/ray/data/shrec-like-v1-seed0
study=$space-N$shots
[ -f "$data/dataset.yaml" ] || python3 -m sasi simulate "$data" --recipe shrec-like-v1 --seed 0
storage=runs/search-parts/$study-$(date +%Y%m%d-%H%M%S)
warm=()
[ -f "$parts/$study-optuna.db" ] && warm=(--warm-start "$parts")
# START_S: no trial starts after it and the part ends when the running ones have finished (nothing lost);
# BUDGET_S: the hard stop (SIGTERM, SIGKILL 20 s later) so that a device call's time limit never loses the
# mirror; trials still running then are lost and re-asked by the next part. Leave one trial's time between them.
start=()
[ -n "${START_S:-}" ] && start=(--start-within "$START_S")
timeout -k 20 "${BUDGET_S:-100000}" python3 -m sasi tune "search_spaces/$space.yaml" --shots "$shots" --trials "$trials" \
    --gpus-per-trial "$gpus" --storage "$storage" "${warm[@]}" "${start[@]}" "${@:5}" || echo "sasi tune ended with exit code $?"
mkdir -p "$parts"
cp "$storage/$study-optuna.db" "$parts/"
if [ -n "${OUT:-}" ]; then   # the part's search.json holds this machine's paths: kept out of the repo
  mkdir -p "$OUT/parts" && cp "$parts/$study-optuna.db" "$OUT/parts/"
  cp "$storage/$space/search.json" "$OUT/$study-search.json" 2>/dev/null || true
fi
