#!/usr/bin/env bash
# PyTorch vs a deployed backend on the CPU demos: export each trained demo model
# (ONNX, or an AOTInductor .pt2 with BACKEND=aoti) and evaluate both on its val set
# (tools/deployment/compare_backends.py).
# Train them first (make demo, which includes the classification demo; make seg-demo).
# Usage: [BACKEND=onnxruntime|aoti] tools/deployment/compare_demos.sh [DEMO_DIR] [SEG_DEMO_DIR] [OUT_DIR]
#        (PYTHON=... picks the interpreter)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
DEMO=${1:-work_dirs/demo}
SEG=${2:-work_dirs/seg_demo}
BACKEND=${BACKEND:-onnxruntime}
[ "$BACKEND" = aoti ] && default_out=work_dirs/aoti_demo || default_out=work_dirs/onnx_demo
OUT=${3:-$default_out}
# As in the demo scripts: one intra-op thread per process on a small shared CPU.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0

compare() {  # CONFIG CHECKPOINT NAME [--tta]
  if [ ! -f "$2" ]; then
    echo "$3: no trained checkpoint ($2); run make demo / make seg-demo first" >&2
    status=1; return
  fi
  "$PY" tools/deployment/compare_backends.py "$1" "$2" --work-dir "$OUT/$3" \
    --backend "$BACKEND" "${@:4}" || status=1
}

for model in retinanet_rednet26-tiny_involution-fpn_shapes \
             mask-rcnn_rednet26-tiny_involution-fpn_involution-head_shapes; do
  compare "configs/demo/$model.py" "$(ls -t "$DEMO/$model"/epoch_*.pth 2>/dev/null | head -n 1)" \
    "$model"
done
CLS_CONFIG=configs/demo/rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py
compare "$CLS_CONFIG" "$(cat "$DEMO/classification/last_checkpoint" 2>/dev/null)" cls_demo
SEG_CONFIG=configs/demo/fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py
compare "$SEG_CONFIG" "$(cat "$SEG/last_checkpoint" 2>/dev/null)" seg_demo
compare "$SEG_CONFIG" "$(cat "$SEG/last_checkpoint" 2>/dev/null)" seg_demo_tta --tta
exit $status
