#!/usr/bin/env bash
# Classification demo, end to end on CPU, from nothing: the shapes dataset in
# ImageNet's folder-per-class layout (tools/dataset_converters/make_shapes_imagenet.py)
# -> the ImageNet RedNet classifier, slimmed to a tiny RedNet-26, trained from scratch
# with tools/train.py -> top-1 on val and prediction images with tools/test.py.
# Usage: tools/run_cls_demo.sh [WORK_DIR]   (PYTHON=... picks the interpreter)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${1:-work_dirs/demo/classification}  # where make demo puts it
CONFIG=configs/demo/rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py
# One intra-op thread: on a small shared CPU, OpenMP spinning costs more than it gains.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
begin=$(date +%s)

[ -f data/shapes_imagenet/LOC_synset_mapping.txt ] ||
  "$PY" tools/dataset_converters/make_shapes_imagenet.py data/shapes_imagenet
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK"
trained=$(date +%s)
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK/test" \
  --show-dir "$WORK/predictions"
echo "classification demo: trained in $((trained - start)) s, $(( $(date +%s) - begin )) s in all;" \
  "predictions in $WORK/predictions"
