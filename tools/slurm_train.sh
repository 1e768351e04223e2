#!/usr/bin/env bash
# Training on a Slurm cluster:
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS are read
# from the environment (see tools/slurm.sh).
#
# The run resumes from WORK_DIR's last_checkpoint when there is one (--resume; a
# new WORK_DIR starts afresh), so a job that Slurm requeues goes on where it
# stopped. Submitted with sbatch --signal=USR1@120 --requeue, the run saves a
# checkpoint 120 s before the time limit and requeues its job (SIGTERM, as on
# preemption or scancel, saves and stops without a requeue); see
# docs/user_guides/preemption.md.
set -euo pipefail
: "${4:?usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]}"
source "$(cd "$(dirname "$0")" && pwd)/slurm.sh"
srun_script "$1" "$2" train.py "$3" --work-dir="$4" --launcher slurm --resume "${@:5}"
