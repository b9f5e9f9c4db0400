#!/usr/bin/env bash
# Distributed evaluation with torchrun: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py options]
# NNODES, NODE_RANK, MASTER_ADDR, PORT as usual (see tools/torchrun.sh).
set -euo pipefail
usage() { echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [test.py options]"; echo "see tools/torchrun.sh for the environment variables"; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 3 ]]; then usage >&2; exit 2; fi
DIR="$(cd "$(dirname "$0")" && pwd)"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
exec bash "$DIR/torchrun.sh" "$DIR/test.py" "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
