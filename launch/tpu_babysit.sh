#!/usr/bin/env bash
# Keep a TPU training run going through preemptions: run launch/tpu_train.sh (same flags) until the
# train command exits 0. Exit 75 (preempted after saving), a lost ssh session or a slice that is no
# longer READY all lead to a relaunch; tpu_train.sh recreates a preempted slice and the run resumes from
# its newest checkpoint in the gs:// workdir.
#   bash launch/tpu_babysit.sh [--max-restarts N] [--wait S] [--dry-run] TPU_TRAIN_FLAGS...
set -uo pipefail
cd "$(dirname "$0")/.."

MAX_RESTARTS=100
WAIT=60
DRY_RUN=0
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts) MAX_RESTARTS="$2"; shift 2 ;;
    --wait) WAIT="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; ARGS+=("$1"); shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

for attempt in $(seq 0 "$MAX_RESTARTS"); do
  echo "tpu_babysit: attempt $attempt: bash launch/tpu_train.sh ${ARGS[*]}"
  bash launch/tpu_train.sh "${ARGS[@]}"
  rc=$?
  if [ "$DRY_RUN" = 1 ]; then
    echo "tpu_babysit: (dry run) would relaunch after ${WAIT}s on any exit status but 0"
    exit "$rc"
  fi
  if [ "$rc" = 0 ]; then
    echo "tpu_babysit: training finished"
    exit 0
  fi
  if [ "$rc" = 1 ] || [ "$rc" = 2 ]; then
    echo "tpu_babysit: the run failed with a user-facing error (exit $rc); not relaunching" >&2
    exit "$rc"
  fi
  echo "tpu_babysit: exit $rc (75 = preempted after saving); relaunching in ${WAIT}s"
  sleep "$WAIT"
done
echo "tpu_babysit: gave up after $MAX_RESTARTS restarts" >&2
exit 1
