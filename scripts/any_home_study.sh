#!/usr/bin/env bash
# Issue 27's learning curve: three groups of homes (the thesis's family, multi-region homes and
# held-out shape kinds) x cabinet and round table, with the priors `dualdiff train --home-aware`
# wrote (set encoder) beside a summary-reading one. docs/RESULTS.md section 8 gives the figures.
#   MODELS=artifacts/models-ha SUMMARY=artifacts/models-ha-summary SEEDS="0 1" bash scripts/any_home_study.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODELS=${MODELS:-artifacts/models-ha}
SUMMARY=${SUMMARY:-artifacts/models-ha-summary}
SEEDS=${SEEDS:-0 1}
HOMES=${HOMES:-5}
POSES=${POSES:-50}
OBS=${OBS:-1 2 4 8 16 32 64 128}
OUT=${OUT:-runs/any_home}
for seed in $SEEDS; do
  for family in box multi held_out; do
    for domain in cabinet round_table; do
      .venv/bin/dualdiff learning-curve --domain "$domain" --family "$family" --seed "$seed" --homes "$HOMES" \
        --observations $OBS --test-conditions "$POSES" --skip-scratch --home-aware 1 1.5 --home-aware-places \
        --context-kinds set summary --home-aware-model "$MODELS/$domain/home_aware.safetensors" \
        --summary-model "$SUMMARY/$domain/home_aware.safetensors" \
        --general-model "$MODELS/$domain/general.safetensors" \
        --output "$OUT/${domain}_${family}_s${seed}" > "$OUT.${domain}_${family}_s${seed}.log" 2>&1 &
    done
    wait
  done
done
