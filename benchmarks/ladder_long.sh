#!/usr/bin/env bash
# One rasmus2015 ladder trained towards the paper's length in resumable pieces, keeping a model at
# every milestone (50k, 100k, 200k, 400k, 700k, 1M updates) so gamma can be read against length.
#
#   bash benchmarks/ladder_long.sh DECODER [SEED] [RUN_DIR] [EXTRA -D options...]
#   e.g. OMP_NUM_THREADS=1 bash benchmarks/ladder_long.sh mod 0 /work/runs/ladder-mod-cn-s0
#        OMP_NUM_THREADS=1 bash benchmarks/ladder_long.sh add 0 /work/runs/ladder-add-s0 contrast=none
#        SIZES=1937 MILESTONES=50000 bash benchmarks/ladder_long.sh mod 0 /work/runs/ladder-mod1-s0
#
# Run it again after an interruption (a session that ends, a killed process, another machine with
# the folder copied): it continues from the newest Lightning last.ckpt under RUN_DIR/logs with
# --resume, and vizkit's resume restores the data stream and the noise generators, so the pieces
# make the same run as one piece. Models land in RUN_DIR/models/DECODER-STEPS.pt; the gamma probe
# of each is benchmarks/ladder_long_gamma.py's job. The sizes are the gallery's (Table 1, CIFAR-10).
set -euo pipefail
DECODER=${1:?decoder: mod, add, nolat or linear}
SEED=${2:-0}
RUN=${3:-/tmp/ladder-$DECODER-s$SEED}
shift $(( $# < 3 ? $# : 3 ))
PY=${PY:-.venv/bin/python}
MILESTONES=${MILESTONES:-"50000 100000 200000 400000 700000 1000000"}
case $DECODER in
  mod) LAYERS=(--layers 1622,50) ;;
  add) LAYERS=(--layers 839,336) ;;
  nolat) LAYERS=(--layers 590,589) ;;
  linear) LAYERS=() ;;
  *) echo "unknown decoder $DECODER" >&2; exit 2 ;;
esac
[ -n "${SIZES:-}" ] && LAYERS=(--layers "$SIZES")  # e.g. SIZES=1937 for Table 1's one-layer rows
DATA=(-D size=16 -D whiten=pca -D contrast=divisive)  # the ladder's defaults on patches, spelled out
for extra in "$@"; do DATA+=(-D "$extra"); done
mkdir -p "$RUN/models"
newest_ckpt() {
  [ -d "$RUN/logs" ] || return 0
  find "$RUN/logs" -name last.ckpt -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-
}
steps_of() {
  $PY -c "import sys,torch; print(torch.load(sys.argv[1], map_location='cpu', weights_only=True)['global_step'])" "$1"
}
for target in $MILESTONES; do
  [ -f "$RUN/models/$DECODER-$target.pt" ] && continue
  ckpt=$(newest_ckpt)
  resume=()
  if [ -n "$ckpt" ]; then
    done_steps=$(steps_of "$ckpt")
    [ "$done_steps" -gt "$target" ] && { echo "$ckpt is past $target; skipping that milestone" >&2; continue; }
    resume=(--resume "$ckpt")
  fi
  echo "[$(date -u +%H:%M:%S)] $DECODER seed $SEED: to $target updates ${resume[*]}"
  start=$(date +%s)
  $PY -m vizkit train ladder --decoder "$DECODER" "${LAYERS[@]}" --data patches "${DATA[@]}" \
    --max-steps "$target" --batch-size 50 --seed "$SEED" -q --log-dir "$RUN/logs" \
    --out "$RUN/models/$DECODER-$target.pt" "${resume[@]}"
  echo "[$(date -u +%H:%M:%S)] $DECODER seed $SEED: $target reached ($(( $(date +%s) - start )) s this piece)"
done
