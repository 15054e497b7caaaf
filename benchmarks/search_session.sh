#!/usr/bin/env bash
# Several parts of the issue-18 search in one device call of LIMIT_S seconds, one study after another, each
# stopped in time: no trial starts later than one trial's length before the call's end (START_S), and the hard
# stop (BUDGET_S) leaves time to copy the study's Optuna mirror to $OUT.
#
#   bash benchmarks/search_session.sh LIMIT_S SPACE:SHOTS:TRIALS:GPUS:TRIAL_S ...
#   e.g. bash benchmarks/search_session.sh 560 df-core:10:24:0.125:120 sasi-core:10:24:0.25:300
#
# TRIAL_S: how long one trial of that study may take at that packing, start to finish (measured on one H200,
# 4,000 iterations, whole-step graphs: a df-core trial ~2 min with 8 packed; sasi-core, whose trials first run
# 2,760 ISS steps, reached only its first rung in ~4 min with 8 packed, so pack 4 and allow ~5 min).
# A study already at TRIALS trains nothing; a study reached with less than one trial's time left is skipped.
set -euo pipefail
limit=$1
shift
data=runs/ray/data/shrec-like-v1-seed0  # as in search_part.sh, simulated first so that the budgets below hold
[ -f "$data/dataset.yaml" ] || python3 -m sasi simulate "$data" --recipe shrec-like-v1 --seed 0
for study in "$@"; do
  IFS=: read -r space shots trials gpus trial_s <<<"$study"
  left=$((limit - SECONDS))
  if [ "$left" -lt $((trial_s + 60)) ]; then
    echo "search_session: $space N=$shots skipped ($left s left, a trial needs $trial_s s)"
    continue
  fi
  echo "search_session: $space N=$shots towards $trials trials, $left s left"
  START_S=$((left - trial_s - 30)) BUDGET_S=$((left - 15)) bash benchmarks/search_part.sh "$space" "$shots" "$trials" "$gpus"
done
