#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed), as mmdet's dist_train.sh:
#   tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]
# GPUs when there are, else CPU processes with the gloo backend. NNODES, NODE_RANK, MASTER_ADDR, PORT as usual.
set -euo pipefail
usage() { echo "usage: $0 CONFIG NUM_PROCESSES [train.py options]"; echo "see the comment at the top of $0 for the environment variables"; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
CONFIG=$1
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
    "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
