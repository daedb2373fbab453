#!/usr/bin/env bash
# Capsule autoencoder on a GPU (for the lead: ~6 minutes on one H200, nothing here needs a network).
# 1. renderer and whole-training-step throughput, batched vs capsule by capsule, on cuda;
# 2. the default MNIST model (25 CCs x 9 ACs) trained 300 epochs on the offline subset, timed per epoch,
#    then the table beside the thesis, PCA and k-means (benchmarks/capsule_mnist.py);
# 3. the templates galleries of that model.
# Outputs go to ${OUT:-/tmp/capsule_gpu}; run from the repository root:
#     OUT=$OUT bash benchmarks/capsule_gpu.sh
set -euo pipefail
OUT=${OUT:-/tmp/capsule_gpu}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true
$PY benchmarks/capsule_renderer.py --device cuda --repeats 20 --batch 500 | tee "$OUT/renderer_cuda.txt"
start=$(date +%s)
$PY -m vizkit train capsule --data mnist --epochs 300 --batch-size 100 --seed 0 --accelerator gpu \
    --log-dir "$OUT/logs" --out "$OUT/capsule300.pt" --quiet
end=$(date +%s)
echo "300 epochs of the 4,000-image subset: $((end - start)) s ($(( (end - start) * 1000 / 300 )) ms/epoch incl. evaluation)" \
    | tee "$OUT/train_time.txt"
$PY benchmarks/capsule_mnist.py "$OUT/capsule300.pt" --seeds 3 --json "$OUT/table.json" | tee "$OUT/table.txt"
$PY -m vizkit probe --plugin templates "$OUT/capsule300.pt" --device cuda --out "$OUT/templates" \
    -o forced_rows 20 > /dev/null
echo "done: $OUT"
