#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NPROC [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (see tools/torchrun.sh).
# Without CUDA the processes train on CPU over gloo.
set -euo pipefail
TOOLS="$(cd "$(dirname "$0")" && pwd)"
source "$TOOLS/torchrun.sh"
: "${2:?usage: tools/dist_train.sh CONFIG NPROC [train.py args...]}"
torchrun_script "$TOOLS/train.py" "$2" "$1" --launcher pytorch "${@:3}"
