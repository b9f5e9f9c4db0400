#!/usr/bin/env bash
# Training on a Slurm cluster, as mmdet's slurm_train.sh:
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
set -euo pipefail
usage() { echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]"; echo "see the comment at the top of $0 for the environment variables"; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 4 ]]; then usage >&2; exit 2; fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
    $SRUN_ARGS python -u "$DIR/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "$@"
