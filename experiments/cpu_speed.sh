#!/usr/bin/env bash
# The CPU figures of docs/performance.md: each measurement in its own process,
# under the machine lock when there is one (shared machines), repeated.
#   bash experiments/cpu_speed.sh [repeats] [torch_python] > runs.jsonl
# Prints the benchmark's JSON lines; `lever` names the XLA flags of the run
# ("project" = the project's own, "ynn" = jaxlib's default convolutions).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
torch_python=${2:-python}
lock() { if [ -e /tmp/cpu.lock ]; then flock /tmp/cpu.lock "$@"; else "$@"; fi; }
bench() {  # lever, then benchmark flags
  local lever=$1; shift
  local flags=''
  [ "$lever" = ynn ] && flags='--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
  XLA_FLAGS="$flags" lock python -m experiments.benchmark --config=experiments/configs/mpii.py \
    --image_size=248 "$@" 2>/dev/null | sed "s/^{/{\"lever\": \"$lever\", /"
}
for _ in $(seq "$repeats"); do
  bench project --what=train_step --batch=2 --steps=3 --compare_torch --torch_python="$torch_python"
  bench project --what=inference --batch=1 --steps=5 --compare_torch --torch_python="$torch_python"
  bench ynn --what=train_step --batch=2 --steps=3
  bench ynn --what=inference --batch=1 --steps=5
done
