#!/usr/bin/env bash
# The train command on one TPU VM worker, detached from the ssh session that starts it (launch/tpu_train.sh
# runs it on every worker). A dropped ssh connection or a dead `tee` can then no longer kill process 0
# before it saves: the run logs to a file, and its exit status lands in a file that tpu_train.sh polls.
#
#   bash launch/tpu_run.sh start -- TRAIN_FLAGS...   end a stale run holding the TPU, clear libtpu's lock,
#                                                    start `python -m diffariff_jax.train TRAIN_FLAGS` detached
#   bash launch/tpu_run.sh status                    one line: "diffariff-status HOST running|exit N|lost"
#   bash launch/tpu_run.sh stop                      end the run (SIGTERM: it saves and exits 75)
# Files: ~/diffariff_logs/train-HOST.log, train.pid (the run's process group), train.status (its exit status).
set -euo pipefail
cd "$(dirname "$0")/.."

LOGS="${DIFFARIFF_LOGS:-$HOME/diffariff_logs}"
PYTHON="${PYTHON:-.venv/bin/python}"
LIBTPU_LOCK="${LIBTPU_LOCK:-/tmp/libtpu_lockfile}"
# Device files a process holding the TPU has open (v4/v5e/v6e: /dev/accel*, v5p: /dev/vfio/*).
TPU_DEVICES="${TPU_DEVICES:-^/dev/(accel[0-9]+|vfio/[0-9]+)$}"
STOP_GRACE="${STOP_GRACE:-60}"
HOST=$(hostname)
PIDFILE="$LOGS/train.pid"
STATUS="$LOGS/train.status"
LOG="$LOGS/train-$HOST.log"

tpu_holders() {  # pids (other than ours) with a TPU device open
  local fd target pid
  for fd in /proc/[0-9]*/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    [[ "$target" =~ $TPU_DEVICES ]] || continue
    pid=${fd#/proc/}; pid=${pid%%/*}
    [ "$pid" != "$$" ] && echo "$pid"
  done | sort -u
}

end() {  # end <kill target>...: SIGTERM, up to STOP_GRACE s to exit, then SIGKILL
  local waited=0
  kill -TERM "$@" 2>/dev/null || return 0
  while kill -0 "$@" 2>/dev/null && [ "$waited" -lt "$STOP_GRACE" ]; do sleep 1; waited=$((waited + 1)); done
  kill -KILL "$@" 2>/dev/null || true
}

stop_run() {
  if [ -f "$PIDFILE" ]; then
    local group
    group=$(cat "$PIDFILE")
    if kill -0 -- "-$group" 2>/dev/null; then
      echo "tpu_run: ending the previous run on $HOST (process group $group)"
      end -- "-$group"
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  start)
    shift
    [ "${1:-}" = "--" ] && shift
    mkdir -p "$LOGS"
    stop_run
    for pid in $(tpu_holders); do
      echo "tpu_run: process $pid still holds the TPU on $HOST ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)); ending it"
      end "$pid"
    done
    # A run killed hard leaves libtpu's lock behind, and the next one then refuses to start; nobody holds
    # the TPU any more at this point.
    rm -f "$LIBTPU_LOCK" "$STATUS" "$STATUS.tmp"
    # setsid: a session of its own, so the ssh session's hangup does not reach it; the pid is its group id.
    DIFFARIFF_DISTRIBUTED=1 setsid bash -c 'log=$1 status=$2; shift 2; "$@" > "$log" 2>&1
      echo $? > "$status.tmp"; mv "$status.tmp" "$status"' tpu-run "$LOG" "$STATUS" \
      "$PYTHON" -m diffariff_jax.train "$@" < /dev/null > /dev/null 2>&1 &
    echo "$!" > "$PIDFILE"
    echo "tpu_run: started on $HOST (process group $!); log $LOG"
    ;;
  status)
    if [ -f "$STATUS" ]; then
      echo "diffariff-status $HOST exit $(cat "$STATUS")"
    elif [ -f "$PIDFILE" ] && kill -0 -- "-$(cat "$PIDFILE")" 2>/dev/null; then
      echo "diffariff-status $HOST running"
    else
      echo "diffariff-status $HOST lost"  # no run, or it died without writing its status (a VM restart)
    fi
    ;;
  stop)
    stop_run
    ;;
  *)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
