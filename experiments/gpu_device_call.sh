#!/usr/bin/env bash
# One prepared device call (~9 minutes on one H100/H200), run from the project
# root with ../shared/bench/gpu copied to .gpu (docs/performance.md, "GPU: the
# device call"):
#   1. the convolution matrix, experiments/gpu_conv_matrix.py (MATRIX_S s);
#   2. its winners written into the model's table, rhpe_jax/model/conv_table.json;
#   3. the bfloat16 training step and inference on them (experiments.benchmark,
#      as .gpu/run.sh runs it), then tuned torch (.gpu/torch_tuned.py):
#      inference, then the torch.compile training step, while time is left.
# Everything lands in $OUT: conv_matrix.json/.txt, table.txt, conv_table.json
# (the table, to commit), results.txt, env.txt. Env: BUDGET (s, 530), MATRIX_S (s, 270).
# On CPU it runs too, e.g. BUDGET=200 MATRIX_S=60 MATRIX_ARGS=--tiny JAX_ARGS=
# "--batch=1 --image_size=64 --config.width=0.125" TORCH=off.
set -u
T0=$SECONDS
BUDGET=${BUDGET:-530}
MATRIX_S=${MATRIX_S:-270}
G=$PWD/.gpu
O=${OUT:-/tmp/out}
mkdir -p "$O"
left() { echo $((BUDGET - (SECONDS - T0))); }

if [ -d "$G/whl" ]; then  # the device image lacks ml_collections
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$G"/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export TF_CPP_MIN_LOG_LEVEL=2 RHPE_JAX_CACHE_DIR=${RHPE_JAX_CACHE_DIR:-/tmp/rhpe_jax_cache}
PY=${PY:-python3}
{ nvidia-smi -L 2>/dev/null
  $PY -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  $PY -c "import torch; print('torch', torch.__version__)" 2>/dev/null; } 2>&1 | tee "$O/env.txt"

echo "== conv matrix (${MATRIX_S} s; progress in conv_matrix.txt)"
timeout $((MATRIX_S + 120)) $PY -m experiments.gpu_conv_matrix --budget_s="$MATRIX_S" \
  --out="$O/conv_matrix.json" ${MATRIX_ARGS:-} > "$O/conv_matrix.txt" 2> "$O/conv_matrix.err"
echo "matrix exit status $? after $((SECONDS - T0)) s"
grep -E '^== process|results in' "$O/conv_matrix.txt"
sed -n '/^conv matrix:/,/^$/p' "$O/conv_matrix.txt"
sed -n '/^convolution ms per training step/,$p' "$O/conv_matrix.txt"
tail -3 "$O/conv_matrix.err"

echo "== table"
$PY -m experiments.gpu_conv_matrix --write_table="$O/conv_matrix.json" 2>&1 | tee "$O/table.txt"
cp rhpe_jax/model/conv_table.json "$O/conv_table.json"

jx() {
  local t; t=$(left)
  if [ "$t" -lt 60 ]; then echo "skipped, ${t} s left: jax $*"; return; fi
  echo "== jax $* (${t} s left)"
  timeout $((t - 10)) $PY -m experiments.benchmark --config=experiments/configs/mpii.py \
    --steps=10 ${JAX_ARGS:---batch=20 --image_size=248 --config.compute_dtype=bfloat16} "$@" \
    2>&1 | grep -E '^\{|rror'
}
tt() {
  local t; t=$(left)
  if [ "${TORCH:-on}" = off ] || [ "$t" -lt 40 ]; then echo "skipped, ${t} s left: torch $*"; return; fi
  echo "== torch-tuned $* (${t} s left)"
  timeout $((t - 5)) $PY "$G/torch_tuned.py" "$@" 2>&1 | grep -E '^\{|rror'
}
{
  jx --what=train_step
  jx --what=inference
  tt inference 20 bf16 eager
  tt train_step 20 bf16 compile
} 2>&1 | tee "$O/results.txt"
echo "done after $((SECONDS - T0)) s"
