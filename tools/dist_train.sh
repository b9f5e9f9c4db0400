#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed), as mmdet's dist_train.sh:
#   tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]
# GPUs when there are, else CPU processes with the gloo backend. NNODES, NODE_RANK, MASTER_ADDR, PORT as usual
# (see tools/torchrun.sh).
set -euo pipefail
usage() { echo "usage: $0 CONFIG NUM_PROCESSES [train.py options]"; echo "see tools/torchrun.sh for the environment variables"; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
DIR="$(cd "$(dirname "$0")" && pwd)"
CONFIG=$1
NPROC=$2
shift 2
exec bash "$DIR/torchrun.sh" "$DIR/train.py" "$NPROC" "$CONFIG" "$@"
