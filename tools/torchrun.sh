# Sourced by dist_train.sh and dist_test.sh: torchrun_script SCRIPT NPROC [script args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Interpreter: PYTHON (default python).
# On one node with no PORT given, torchrun picks a free port itself (--standalone),
# so two jobs on one machine never race for the same port.
torchrun_script() {
    local script=$1 nproc=$2
    local root rendezvous
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [[ ${NNODES:-1} == 1 && -z ${PORT:-} ]]; then
        rendezvous=(--standalone)
    else
        rendezvous=(--nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}"
                    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}")
    fi
    PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" \
    "${PYTHON:-python}" -m torch.distributed.run "${rendezvous[@]}" \
        --nproc_per_node="$nproc" "$script" "${@:3}"
}
