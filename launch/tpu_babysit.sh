#!/usr/bin/env bash
# Keep a TPU training run going through preemptions: run launch/tpu_train.sh (same flags) until the
# train command exits 0. It stops on a user error (1: bad input, named in one line; 2: bad flags), and
# relaunches on everything else: 75 (preempted after saving), 70 (a crash that is not the input's fault),
# 76 (gcloud failed, workers unreachable, slice not READY in time) or any other status. A relaunch waits
# --wait seconds after a preemption, and doubles the wait (up to --max-wait) after each failure in a row;
# tpu_train.sh waits for a slice that is CREATING or REPAIRING, recreates a preempted one, and the run
# resumes from its newest checkpoint in the gs:// workdir.
#   bash launch/tpu_babysit.sh [--max-restarts N] [--wait S] [--max-wait S] [--dry-run] TPU_TRAIN_FLAGS...
set -uo pipefail
cd "$(dirname "$0")/.."

MAX_RESTARTS=100
WAIT=60
MAX_WAIT=1800
DRY_RUN=0
TPU_TRAIN="${TPU_TRAIN:-launch/tpu_train.sh}"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts) MAX_RESTARTS="$2"; shift 2 ;;
    --wait) WAIT="$2"; shift 2 ;;
    --max-wait) MAX_WAIT="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; ARGS+=("$1"); shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

backoff="$WAIT"
for attempt in $(seq 0 "$MAX_RESTARTS"); do
  echo "tpu_babysit: attempt $attempt: bash $TPU_TRAIN ${ARGS[*]}"
  bash "$TPU_TRAIN" "${ARGS[@]}"
  rc=$?
  if [ "$DRY_RUN" = 1 ]; then
    echo "tpu_babysit: (dry run) would stop on exit 0, 1 or 2 and relaunch on any other status"
    exit "$rc"
  fi
  case "$rc" in
    0) echo "tpu_babysit: training finished"; exit 0 ;;
    1|2) echo "tpu_babysit: the run failed with a user-facing error (exit $rc); not relaunching" >&2; exit "$rc" ;;
    75) delay="$WAIT"; backoff="$WAIT"
        echo "tpu_babysit: preempted after saving (exit 75); relaunching in ${delay}s" ;;
    *) delay="$backoff"; backoff=$((backoff * 2 > MAX_WAIT ? MAX_WAIT : backoff * 2))
       echo "tpu_babysit: exit $rc (70 crash, 76 gcloud/unreachable); relaunching in ${delay}s" >&2 ;;
  esac
  sleep "$delay"
done
echo "tpu_babysit: gave up after $MAX_RESTARTS restarts" >&2
exit 1
