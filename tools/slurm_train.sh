#!/usr/bin/env bash
# Training on a Slurm cluster:
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS are read
# from the environment (see tools/slurm.sh).
set -euo pipefail
: "${4:?usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]}"
source "$(cd "$(dirname "$0")" && pwd)/slurm.sh"
srun_script "$1" "$2" train.py "$3" --work-dir="$4" --launcher slurm "${@:5}"
