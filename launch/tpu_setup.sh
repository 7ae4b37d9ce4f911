#!/usr/bin/env bash
# Per-worker setup on a Cloud TPU VM (run on every worker by launch/tpu_train.sh). Idempotent: a stamp
# keyed on the requirements' hash skips work already done, so a relaunch after preemption is quick.
#   bash launch/tpu_setup.sh [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "tpu_setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

JAX_VERSION=$(sed -n 's/^jax==\(.*\)$/\1/p' requirements.txt)
STAMP=".venv/.tpu-setup-$(cat requirements.txt setup.py | sha256sum | cut -c1-16)"

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

if [ -f "$STAMP" ] && [ "$DRY_RUN" = 0 ]; then
  echo "tpu_setup: $(hostname) already set up ($STAMP)"
  exit 0
fi
command -v python3 >/dev/null || { echo "tpu_setup: python3 is missing on $(hostname)" >&2; exit 1; }
[ -x .venv/bin/python ] || run python3 -m venv .venv
run .venv/bin/python -m pip install -q --upgrade pip
# The pinned CPU stack first, then the TPU build of the same JAX version on top of it.
run .venv/bin/python -m pip install -q -r requirements.txt
run .venv/bin/python -m pip install -q "jax[tpu]==${JAX_VERSION}" \
  -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
run .venv/bin/python -m pip install -q --no-deps -e .
run touch "$STAMP"
[ "$DRY_RUN" = 1 ] || echo "tpu_setup: $(hostname) ready (jax ${JAX_VERSION}, TPU build)"
