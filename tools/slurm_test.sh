#!/usr/bin/env bash
# Testing on a Slurm cluster:
#   GPUS=8 tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS are read
# from the environment (see tools/slurm.sh).
set -euo pipefail
: "${4:?usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]}"
source "$(cd "$(dirname "$0")" && pwd)/slurm.sh"
srun_script "$1" "$2" test.py "$3" "$4" --launcher slurm "${@:5}"
