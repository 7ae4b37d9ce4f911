#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create (or reuse) the slice, copy the code to every worker, set up each
# worker (launch/tpu_setup.sh), start the same train command on all workers detached from ssh
# (launch/tpu_run.sh: log in ~/diffariff_logs/train-<hostname>.log), then poll every worker until all exited.
# The workdir should be a gs:// bucket; latent records must be local files on every worker (docs/training.md).
#
#   bash launch/tpu_train.sh --name ldm-pod --zone us-central2-b --accelerator-type v4-32 \
#       --runtime-version tpu-ubuntu2204-base --workdir gs://BUCKET/runs/ldm \
#       --config configs/ldm.py:paper -- --config.data.records_dir=/mnt/latents
#   add --dry-run to print the gcloud commands instead of running them; --poll S (default 60).
# Before anything is created, the config is compiled here for the slice's chips (python -m diffariff_jax.aot,
# train step only; the venv of `make install`, or $PYTHON): a warning when it does not fit in HBM with 10%
# to spare, --require-fit to stop instead (exit 1), --skip-aot-check to launch without compiling.
# Exit status: the train command's (0 done, 1 user error, 75 preempted after saving, 70 internal error),
# 2 bad flags, 76 when gcloud failed or the workers could not be reached (launch/tpu_babysit.sh retries).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME="diffariff-tpu"
ZONE="us-central2-b"
ACCELERATOR="v4-8"
RUNTIME="tpu-ubuntu2204-base"
PROJECT=""
WORKDIR=""
CONFIG="configs/ldm.py:paper"
SPOT=0
CODE="copy"          # copy: tar of the git-tracked files; or a git URL to clone (with --ref)
REF="main"
DRY_RUN=0
REMOTE_DIR="diffariff-jax"
EXTRA=()
POLL=60
MAX_POLL_FAILURES=10   # consecutive unreachable polls before giving up (exit 76); --max-poll-failures
WAIT_STATES_MAX=1800   # seconds to wait for a CREATING/REPAIRING slice to become READY
RETRYABLE=76
AOT_CHECK=1
REQUIRE_FIT=0

usage() { sed -n '2,17p' "$0"; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --accelerator-type) ACCELERATOR="$2"; shift 2 ;;
    --runtime-version) RUNTIME="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --code) CODE="$2"; shift 2 ;;
    --ref) REF="$2"; shift 2 ;;
    --poll) POLL="$2"; shift 2 ;;
    --max-poll-failures) MAX_POLL_FAILURES="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --skip-aot-check) AOT_CHECK=0; shift ;;
    --require-fit) REQUIRE_FIT=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "tpu_train.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$WORKDIR" ] || { echo "tpu_train.sh: --workdir is required (a gs:// path all workers can reach)" >&2; exit 2; }
case "$WORKDIR" in gs://*) ;; *) echo "tpu_train.sh: warning: --workdir $WORKDIR is not on gs://; each worker writes its own disk" >&2 ;; esac

GCLOUD=(gcloud compute tpus tpu-vm)
LOC=(--zone "$ZONE")
[ -n "$PROJECT" ] && LOC+=(--project "$PROJECT")

quote() {  # shell-quotes one word for the dry-run listing: plain when safe, else '...'
  case "$1" in
    *[!A-Za-z0-9_./:=@,+%-]*|"") printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}
run() {  # a gcloud/git step; its failure is retryable (exit 76), never taken for a user error
  if [ "$DRY_RUN" = 1 ]; then printf '+'; for word in "$@"; do printf ' '; quote "$word"; done; printf '\n'
  else "$@" || { echo "tpu_train: failed (exit $?): $1 ${2:-} ${3:-} ${4:-}" >&2; exit "$RETRYABLE"; }; fi
}
describe() { "${GCLOUD[@]}" describe "$NAME" "${LOC[@]}" --format='value(state)' 2>/dev/null || true; }

# 0. Know before you pay: does the config fit the slice's chips? The --config.* overrides of the train
#    command apply to the compile too.
if [ "$AOT_CHECK" = 1 ]; then
  PY="${PYTHON:-.venv/bin/python}"
  [ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || PY=python3
  AOT=("$PY" -m diffariff_jax.aot --config "$CONFIG" --topology "$ACCELERATOR" --programs train
       --out "${TMPDIR:-/tmp}/diffariff-aot-$NAME.json")
  for arg in "${EXTRA[@]+"${EXTRA[@]}"}"; do case "$arg" in --config.*) AOT+=("$arg") ;; esac; done
  if [ "$DRY_RUN" = 1 ]; then
    printf '+'; for word in "${AOT[@]}"; do printf ' '; quote "$word"; done; printf '\n'
  else
    echo "tpu_train: compiling $CONFIG for $ACCELERATOR here before paying for it (--skip-aot-check skips this)"
    set +e; "${AOT[@]}"; code=$?; set -e
    if [ "$code" = 0 ]; then
      echo "tpu_train: $CONFIG fits $ACCELERATOR with 10% HBM to spare"
    else
      if [ "$code" = 3 ]; then
        echo "tpu_train: warning: $CONFIG does not fit $ACCELERATOR with 10% HBM to spare (table above): raise" \
             "--config.mesh.fsdp, set --config.train.remat=block or lower --config.train.batch_size" >&2
      else
        echo "tpu_train: warning: the AOT check could not run (exit $code, its error is above)" >&2
      fi
      [ "$REQUIRE_FIT" = 1 ] && { echo "tpu_train: --require-fit: not launching" >&2; exit 1; }
    fi
  fi
fi

# 1. The slice: reuse it when READY; wait while it is being created or repaired (deleting it then would
#    throw the work away); delete and recreate it when preempted, failed or stopped; create it when absent.
STATE=""
if [ "$DRY_RUN" = 0 ]; then
  STATE=$(describe)
  waited=0
  while [[ "$STATE" =~ ^(CREATING|REPAIRING|STARTING|RESTARTING)$ ]] && [ "$waited" -lt "$WAIT_STATES_MAX" ]; do
    echo "tpu_train: $NAME is $STATE; waiting for READY"
    sleep "$POLL"; waited=$((waited + POLL))
    STATE=$(describe)
  done
  [[ "$STATE" =~ ^(CREATING|REPAIRING|STARTING|RESTARTING)$ ]] && { echo "tpu_train: $NAME still $STATE after ${waited}s" >&2; exit "$RETRYABLE"; }
else
  echo "# dry run: would reuse $NAME if 'gcloud compute tpus tpu-vm describe' says READY, wait while CREATING/REPAIRING, else (re)create it"
fi
if [ "$STATE" = "READY" ]; then
  echo "tpu_train: reusing $NAME ($ACCELERATOR) in $ZONE"
else
  [ -n "$STATE" ] && run "${GCLOUD[@]}" delete "$NAME" "${LOC[@]}" --quiet
  CREATE=("${GCLOUD[@]}" create "$NAME" "${LOC[@]}" --accelerator-type "$ACCELERATOR" --version "$RUNTIME")
  [ "$SPOT" = 1 ] && CREATE+=(--spot)
  run "${CREATE[@]}"
fi

# 2. The code on every worker.
if [ "$CODE" = "copy" ]; then
  TARBALL="/tmp/diffariff-jax-code.tgz"
  run git archive --format=tar.gz -o "$TARBALL" HEAD
  run "${GCLOUD[@]}" scp "$TARBALL" "$NAME:/tmp/diffariff-jax-code.tgz" "${LOC[@]}" --worker=all
  FETCH="mkdir -p ~/$REMOTE_DIR && tar -xzf /tmp/diffariff-jax-code.tgz -C ~/$REMOTE_DIR"
else
  # fetch + checkout FETCH_HEAD works for a branch, a tag or a commit, on a fresh clone or a relaunch
  FETCH="{ [ -d ~/$REMOTE_DIR/.git ] || git clone -q $CODE ~/$REMOTE_DIR; } && git -C ~/$REMOTE_DIR fetch -q origin $REF && git -C ~/$REMOTE_DIR checkout -q --force FETCH_HEAD"
fi

# 3. Per-worker environment (idempotent), 4. the same train command started detached on all workers.
TRAIN="--config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR")"
for arg in "${EXTRA[@]+"${EXTRA[@]}"}"; do TRAIN+=" $(printf '%q' "$arg")"; done
REMOTE="$FETCH && cd ~/$REMOTE_DIR && bash launch/tpu_setup.sh && bash launch/tpu_run.sh start -- $TRAIN"
run "${GCLOUD[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command "$REMOTE"

# 5. Poll every worker's exit-status file until all have exited; a lost connection only costs a poll.
STATUS_CMD="bash ~/$REMOTE_DIR/launch/tpu_run.sh status"
if [ "$DRY_RUN" = 1 ]; then
  echo "# then every ${POLL}s until every worker reports an exit status:"
  run "${GCLOUD[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command "$STATUS_CMD"
  exit 0
fi
failures=0
while true; do
  sleep "$POLL"
  if ! report=$("${GCLOUD[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command "$STATUS_CMD" 2>/dev/null); then
    failures=$((failures + 1))
    state=$(describe)
    echo "tpu_train: could not reach the workers ($failures/$MAX_POLL_FAILURES); slice state: ${state:-unknown}" >&2
    # A preempted or deleted slice will not answer again: relaunch now instead of after MAX_POLL_FAILURES polls.
    [[ "$state" =~ ^(READY|REPAIRING|)$ ]] || exit "$RETRYABLE"
    [ "$failures" -ge "$MAX_POLL_FAILURES" ] && exit "$RETRYABLE"
    continue
  fi
  failures=0
  lines=$(grep '^diffariff-status ' <<< "$report" || true)
  [ -n "$lines" ] || continue
  grep -q ' running$' <<< "$lines" && continue
  if grep -q ' lost$' <<< "$lines"; then
    echo "tpu_train: a worker's run ended without an exit status (restarted VM?):" $(grep ' lost$' <<< "$lines") >&2
    exit "$RETRYABLE"
  fi
  codes=$(awk '{print $4}' <<< "$lines" | sort -u)
  echo "tpu_train: every worker exited:" $(awk '{print $2 "=" $4}' <<< "$lines")
  # One verdict for the slice: an error of a worker wins over a preemption, a preemption over success.
  for code in $codes; do [ "$code" != 0 ] && [ "$code" != 75 ] && exit "$code"; done
  grep -qx 75 <<< "$codes" && exit 75
  exit 0
done
