#!/usr/bin/env bash
# Train on GPUs with JAX's own distributed runtime (one process per node, each owning all its GPUs).
#
#   Single node, N GPUs:       bash launch/gpu_train.sh --gpus 8 --config configs/ldm.py:paper --workdir runs/ldm
#   SLURM, several nodes:      sbatch -N 4 --gpus-per-node 8 --wrap "bash launch/gpu_train.sh --config ... --workdir ..."
#                              (inside an allocation it runs one task per node with srun; the coordinator is
#                               the first host of $SLURM_JOB_NODELIST)
#   Several nodes, no SLURM:   on node r of n:  bash launch/gpu_train.sh --coordinator HOST0:1234 \
#                                                   --num-nodes n --node-rank r --config ... --workdir ...
#   Extra train flags after --:  ... -- --config.train.batch_size=64
#   --dry-run prints the command(s) instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

GPUS=""
CONFIG="configs/ldm.py:paper"
WORKDIR=""
COORDINATOR=""
NUM_NODES=1
NODE_RANK=0
PORT=12355
MODE="auto"       # auto: slurm inside an allocation with more than one node, else single
PYTHON="${PYTHON:-.venv/bin/python}"
DRY_RUN=0
EXTRA=()

while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --coordinator) COORDINATOR="$2"; MODE="explicit"; shift 2 ;;
    --num-nodes) NUM_NODES="$2"; shift 2 ;;
    --node-rank) NODE_RANK="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --slurm) MODE="slurm"; shift ;;
    --single) MODE="single"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 2 ;;
    *) echo "gpu_train.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$WORKDIR" ] || { echo "gpu_train.sh: --workdir is required" >&2; exit 2; }
if [ "$MODE" = auto ]; then
  if [ -n "${SLURM_JOB_ID:-}" ] && [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then MODE=slurm; else MODE=single; fi
fi

quote() {
  case "$1" in
    *[!A-Za-z0-9_./:=@,+%-]*|"") printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+'; for word in "$@"; do printf ' '; quote "$word"; done; printf '\n'
  else exec "$@"; fi
}

TRAIN=("$PYTHON" -m diffariff_jax.train --config "$CONFIG" --workdir "$WORKDIR" "${EXTRA[@]+"${EXTRA[@]}"}")
# XLA keeps 75% of GPU memory by default; the training state and activations want most of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"

case "$MODE" in
  single)
    if [ -n "$GPUS" ]; then
      export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((GPUS - 1)))}"
      [ "$DRY_RUN" = 1 ] && echo "# CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
    fi
    run "${TRAIN[@]}"
    ;;
  slurm)
    NODELIST="${SLURM_JOB_NODELIST:-node[01-04]}"
    if command -v scontrol >/dev/null 2>&1; then
      # all of scontrol's output, then the first line: `| head -n 1` can kill scontrol with SIGPIPE, and
      # pipefail then ends this script with status 141
      HOSTS=$(scontrol show hostnames "$NODELIST")
      HEAD=${HOSTS%%$'\n'*}
    else
      HEAD="first-host-of-$NODELIST"
    fi
    NODES="${SLURM_JOB_NUM_NODES:-$NUM_NODES}"
    [ "$DRY_RUN" = 1 ] && echo "# SLURM: $NODES nodes, coordinator $HEAD:$PORT (first host of $NODELIST)"
    TRAIN_WORDS=""
    for word in "${TRAIN[@]}"; do TRAIN_WORDS+=" $(quote "$word")"; done
    # The process id is SLURM_PROCID, known only inside each task: expanded there by bash -c.
    run srun --ntasks-per-node=1 --nodes="$NODES" bash -c \
      "exec$TRAIN_WORDS --coordinator_address=$HEAD:$PORT --num_processes=$NODES --process_id=\$SLURM_PROCID"
    ;;
  explicit)
    run "${TRAIN[@]}" --coordinator_address="$COORDINATOR" --num_processes="$NUM_NODES" --process_id="$NODE_RANK"
    ;;
esac
