# Sourced by slurm_train.sh and slurm_test.sh: srun_script PARTITION JOB_NAME SCRIPT [script args...]
# runs SCRIPT as GPUS tasks, GPUS_PER_NODE per node, with CPUS_PER_TASK CPUs each and the
# extra srun options in SRUN_ARGS, as mmdet's tools/slurm_*.sh do. Interpreter: PYTHON.
srun_script() {
    local partition=$1 job_name=$2 script=$3
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of words
    PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" \
    srun -p "$partition" --job-name="$job_name" --gres=gpu:"${GPUS_PER_NODE:-8}" \
        --ntasks="${GPUS:-8}" --ntasks-per-node="${GPUS_PER_NODE:-8}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
        "${PYTHON:-python}" -u "$root/tools/$script" "${@:4}"
}
