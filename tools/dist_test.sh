#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (see tools/torchrun.sh).
set -euo pipefail
TOOLS="$(cd "$(dirname "$0")" && pwd)"
source "$TOOLS/torchrun.sh"
: "${3:?usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]}"
torchrun_script "$TOOLS/test.py" "$3" "$1" "$2" --launcher pytorch "${@:4}"
