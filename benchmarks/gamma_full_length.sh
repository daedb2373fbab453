#!/usr/bin/env bash
# The paper's training length for the rasmus2015 models: 1,000,000 ADADELTA updates of 50 patches
# each (Rasmus et al. 2015, §2.2), on a GPU, then the gamma probe on every model and the Table 1
# comparison. Not run on the project's 2-core CPU box (there: 50,000 updates, see
# docs/models/ladder.md).
#
#   bash benchmarks/gamma_full_length.sh [STEPS] [OUT]      # defaults: 1000000, /tmp/rasmus2015-full
#
# Expect the step rate, not the arithmetic, to bound it: a batch of 50 keeps a GPU mostly idle,
# so Lightning's per-step overhead (~1-2 ms) makes 1M updates roughly 20-40 minutes per model;
# run fewer STEPS (e.g. 200000) to fit a shorter budget. The models are the gallery's entries
# with --max-steps instead of --epochs.
set -euo pipefail
STEPS=${1:-1000000}
OUT=${2:-/tmp/rasmus2015-full}
VIZKIT=${VIZKIT:-vizkit}
mkdir -p "$OUT"
for spec in "mod 1622,50" "add 839,336" "nolat 590,589" "linear 0"; do
  set -- $spec
  name=$1 layers=$2
  extra=()
  [ "$name" != linear ] && extra=(--layers "$layers")
  mkdir -p "$OUT/models"
  $VIZKIT train ladder --decoder "$name" "${extra[@]}" --data patches -D size=16 -D whiten=pca -D contrast=divisive \
    --max-steps "$STEPS" --batch-size 50 --accelerator gpu --devices 1 -q \
    --log-dir "$OUT/logs" --out "$OUT/models/$name.pt"
  layer=h2
  [ "$name" = linear ] && layer=h1
  $VIZKIT probe --plugin gamma "$OUT/models/$name.pt" --layer "$layer" -o transform all -o sets 2000 \
    --device cuda --out "$OUT/$name/gamma-$layer"
done
python "$(dirname "$0")/gamma_table1.py" "$OUT"
