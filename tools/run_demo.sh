#!/usr/bin/env bash
# The CPU demo, end to end from nothing: make the shapes dataset, train RetinaNet
# and Mask R-CNN (RedNet-26-tiny, involution FPN/heads) from scratch with
# tools/train.py, evaluate on val and draw predictions and involution kernels;
# then the classification demo (tools/run_cls_demo.sh) in WORK_DIR/classification.
# Usage: tools/run_demo.sh [WORK_DIR]   (PYTHON=... picks the interpreter)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${1:-work_dirs/demo}
# One intra-op thread per process: on a small shared CPU, OpenMP spinning on
# busy cores costs far more than it gains.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -f data/shapes_coco/annotations/instances_val.json ] ||
  "$PY" tools/dataset_converters/make_shapes_coco.py data/shapes_coco

for model in retinanet_rednet26-tiny_involution-fpn_shapes \
             mask-rcnn_rednet26-tiny_involution-fpn_involution-head_shapes; do
  cfg=configs/demo/$model.py
  start=$(date +%s)
  "$PY" tools/train.py "$cfg" --work-dir "$WORK/$model"
  trained=$(date +%s)
  ckpt=$(ls -t "$WORK/$model"/epoch_*.pth | head -n 1)
  "$PY" tools/test.py "$cfg" "$ckpt" --work-dir "$WORK/$model/test" \
      --show-dir "$WORK/$model/predictions"
  "$PY" tools/visualize_kernels.py "$cfg" "$ckpt" data/shapes_coco/val/000001.png \
      --out-dir "$WORK/$model/kernels"
  echo "$model: trained in $((trained - start)) s; predictions in $WORK/$model/predictions"
done

PYTHON="$PY" bash tools/run_cls_demo.sh "$WORK/classification"
