#!/usr/bin/env bash
# One command on a CUDA host: install CUDA JAX and torch, then time our
# training step and inference in bfloat16 side by side with the PyTorch
# reference (eager and torch.compile) on the same GPU.
#   bash experiments/gpu_benchmark.sh [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-20}
python -m pip install --quiet -e '.[cuda]' torch
for what in train_step inference; do
  python -m experiments.benchmark --what=$what --config=experiments/configs/mpii.py \
    --config.compute_dtype=bfloat16 --batch=$batch --image_size=248 --steps=20 \
    --compare_torch --torch_compile
done
