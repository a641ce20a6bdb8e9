#!/usr/bin/env bash
# The paper's CIFAR-10 comparison on an offline GPU host, from the repository
# root with the bundle of prepare.sh in .accel/ and an output folder in $OUT:
#
#     OUT=/path/to/out benchmarks/accelerator/run.sh
#
# Installs the carried wheels offline (pip --no-index --no-deps --target),
# unpacks the prepared CIFAR-10 and runs paper_run.py, which measures the
# throughput, picks the epochs that fit TIME_BUDGET_S (default 480 s of
# training, for a 600 s limit) and trains default and mimetic (and
# trunc_normal if time allows). $OUT gets results.md, accuracy.png,
# runs.tar.gz and log.txt, updated after every run.
#
# DRY_RUN=1 rehearses it on a CPU at toy scale, in .accel-image-venv (made by
# prepare.sh: what the GPU image holds, no TensorFlow); $OUT defaults to a
# temporary folder there.
set -euo pipefail
cd "$(dirname "$0")/../.."

dry_run=${DRY_RUN:-0}
if [[ "$dry_run" == 1 ]]; then
  OUT=${OUT:-$(mktemp -d)}
  python=${PYTHON:-.accel-image-venv/bin/python}
else
  python=${PYTHON:-python3}
fi
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
echo "== run.sh $(date -u +%FT%TZ) on $(hostname); DRY_RUN=$dry_run; OUT=$OUT"
[[ -d .accel/wheels && -f .accel/cifar10.tar.gz ]] || {
  echo "Error: .accel/ is missing or incomplete; run benchmarks/accelerator/prepare.sh on a connected machine first."; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

scratch=$(mktemp -d)
site=$scratch/site
"$python" -m pip install --quiet --no-index --no-deps --target "$site" .accel/wheels/*.whl
tar -xzf .accel/cifar10.tar.gz -C "$scratch"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" - <<'PY'
import importlib.metadata as m
import jax
print("jax", jax.__version__, "flax", m.version("flax"), "tfds",
      m.version("tensorflow-datasets"), "devices", jax.devices())
try:
  import tensorflow  # noqa: F401
  print("tensorflow: importable")
except ImportError:
  print("tensorflow: not installed (not needed)")
PY

data=$(dirname "$(find "$scratch/cifar10" -name dataset_info.json | head -n 1)")
args=(--data "$data" --out "$OUT" --work "$scratch/work"
      --time_budget_s "${TIME_BUDGET_S:-480}")
[[ "$dry_run" == 1 ]] && args+=(--dry_run --time_budget_s "${TIME_BUDGET_S:-120}")
"$python" -m benchmarks.accelerator.paper_run "${args[@]}"
echo "== run.sh done; $OUT:"
ls -la "$OUT"
