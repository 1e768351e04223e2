#!/usr/bin/env bash
# Segmentation demo, end to end on CPU, from nothing:
#   synthetic street scenes in the Cityscapes download layout (images + polygon JSON)
#   -> labelTrainIds with the Cityscapes converter -> Semantic FPN RedNet-26 (tiny)
#   trained with tools/train.py -> tested with tools/test.py, single scale (per-class
#   IoU, mIoU, prediction images) and multi-scale + flip -> the results table.
#
#   bash tools/run_seg_demo.sh                 # PY=/path/to/python to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
CONFIG=configs/demo/fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py
DATA=data/shapes_cityscapes
WORK=${WORK_DIR:-work_dirs/seg_demo}
# One intra-op thread unless told otherwise: on a small or shared CPU, OpenMP
# threads that wait for each other cost more than they bring (measured with
# other jobs on 2 cores: 8 s per step with 2 threads, 0.5 s with 1).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)

if [ ! -d "$DATA/leftImg8bit" ]; then
  # Like the official download: images and polygons, no label images yet.
  "$PY" tools/dataset_converters/make_shapes_cityscapes.py "$DATA" --no-label-ids
fi
"$PY" tools/dataset_converters/cityscapes.py "$DATA" --nproc 2
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK"
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK" \
  --show-dir "$WORK/predictions"
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK" --tta
"$PY" tools/analysis/gather_seg_results.py "$WORK" --per-class --out "$WORK/results.md"
echo "Prediction images: $WORK/predictions/vis_data/vis_image/"
echo "Total time: $(( $(date +%s) - start )) s"
