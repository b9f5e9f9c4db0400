#!/usr/bin/env bash
# What dist_train.sh and dist_test.sh share: check the launch, then start SCRIPT on NUM_PROCESSES processes per
# node with torchrun (torch.distributed), with --launcher pytorch appended to its options:
#   tools/torchrun.sh SCRIPT NUM_PROCESSES [SCRIPT options]
# GPUs when there are, else CPU processes with the gloo backend. NNODES, NODE_RANK, MASTER_ADDR, PORT as usual.
set -euo pipefail
usage() { echo "usage: $0 SCRIPT NUM_PROCESSES [SCRIPT options]"; echo "see the comment at the top of $0 for the environment variables"; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
SCRIPT=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
PYTHON=${PYTHON:-python}
DIR="$(cd "$(dirname "$0")" && pwd)"
"$PYTHON" -m mlla_dense.utils.launch_check --nproc "$NPROC" --port "$PORT" --node-rank "$NODE_RANK"
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$SCRIPT" "$@" --launcher pytorch
