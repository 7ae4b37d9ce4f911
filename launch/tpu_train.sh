#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create (or reuse) the slice, copy the code to every worker, set up each
# worker (launch/tpu_setup.sh), then run the same train command on all workers (--worker=all); each
# worker tees its log to ~/diffariff_logs/train-<hostname>.log. The workdir should be a gs:// bucket.
#
#   bash launch/tpu_train.sh --name ldm-pod --zone us-central2-b --accelerator-type v4-32 \
#       --runtime-version tpu-ubuntu2204-base --workdir gs://BUCKET/runs/ldm \
#       --config configs/ldm.py:paper -- --config.data.records_dir=gs://BUCKET/latents
#   add --dry-run to print the gcloud commands instead of running them.
# Exit status: the train command's (75 = preempted after saving; launch/tpu_babysit.sh relaunches).
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

usage() { sed -n '2,12p' "$0"; exit 2; }
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
    --dry-run) DRY_RUN=1; shift ;;
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
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+'; for word in "$@"; do printf ' '; quote "$word"; done; printf '\n'
  else "$@"; fi
}

# 1. The slice: reuse it when it exists and is READY; otherwise create it.
STATE=""
if [ "$DRY_RUN" = 0 ]; then
  STATE=$("${GCLOUD[@]}" describe "$NAME" "${LOC[@]}" --format='value(state)' 2>/dev/null || true)
else
  echo "# dry run: would reuse $NAME if 'gcloud compute tpus tpu-vm describe' says READY, else (re)create it"
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

# 3. Per-worker environment (idempotent), 4. the same command on all workers, a log per worker.
TRAIN="python -m diffariff_jax.train --config $CONFIG --workdir $WORKDIR"
for arg in "${EXTRA[@]+"${EXTRA[@]}"}"; do TRAIN+=" $(printf '%q' "$arg")"; done
REMOTE="set -o pipefail; $FETCH && cd ~/$REMOTE_DIR && bash launch/tpu_setup.sh && mkdir -p ~/diffariff_logs && DIFFARIFF_DISTRIBUTED=1 .venv/bin/$TRAIN 2>&1 | tee ~/diffariff_logs/train-\$(hostname).log"
run "${GCLOUD[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command "$REMOTE"
