#!/usr/bin/env bash
# Per-worker setup on a Cloud TPU VM (run on every worker by launch/tpu_train.sh). Idempotent: a stamp
# keyed on the requirements' hash skips work already done, so a relaunch after preemption is quick.
#   bash launch/tpu_setup.sh [--dry-run]
# jax 0.10 and numpy 2.4 need Python >= 3.11; the default image (tpu-ubuntu2204-base) has 3.10 and no
# `venv` module, so there `uv` (installed to ~/.local/bin) provides a Python 3.11 and the .venv. A .venv
# that is not a working Python >= 3.11 with pip (a run killed half-way) is rebuilt, stamp or not. Only what
# training needs is installed: no torch/transformers (CLAP and export run elsewhere), then jax[tpu].
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "tpu_setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

PYTHON_MIN="3.11"
# Packages of requirements.txt a TPU training worker never imports (CLAP, export, the demo renderer, plots).
NOT_ON_TPU='^(torch|transformers|tokenizers|music21|pretty_midi|matplotlib)([=<>~ ]|$)'
JAX_VERSION=$(sed -n 's/^jax==\(.*\)$/\1/p' requirements.txt)
STAMP=".venv/.tpu-setup-$(cat requirements.txt setup.py launch/tpu_setup.sh | sha256sum | cut -c1-16)"
UV="${UV:-$HOME/.local/bin/uv}"

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

# A Python >= 3.11 that can run pip (a venv's) or make a venv (a system one).
recent() { "$1" -c "import sys; sys.exit(sys.version_info < (${PYTHON_MIN/./, }))" >/dev/null 2>&1; }
venv_ok() { [ -x .venv/bin/python ] && recent .venv/bin/python && .venv/bin/python -m pip --version >/dev/null 2>&1; }

if venv_ok && [ -f "$STAMP" ]; then
  echo "tpu_setup: $(hostname) already set up ($STAMP)"
  exit 0
fi
if [ -e .venv ] && ! venv_ok; then
  echo "tpu_setup: .venv on $(hostname) is not a working Python >= $PYTHON_MIN with pip; rebuilding it"
  run rm -rf .venv
fi
if ! venv_ok; then
  if command -v python3 >/dev/null && recent python3 && python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    run python3 -m venv .venv
  else
    echo "tpu_setup: python3 on $(hostname) is $(python3 --version 2>&1 || echo missing), not >= $PYTHON_MIN with venv;" \
      "using uv for Python $PYTHON_MIN"
    if ! command -v "$UV" >/dev/null; then
      run sh -c "curl -LsSf https://astral.sh/uv/install.sh | sh"
    fi
    run "$UV" venv --seed --python "$PYTHON_MIN" .venv
  fi
fi
TPU_REQUIREMENTS=$(mktemp)
trap 'rm -f "$TPU_REQUIREMENTS"' EXIT
grep -v -E "$NOT_ON_TPU" requirements.txt > "$TPU_REQUIREMENTS"
[ "$DRY_RUN" = 1 ] && echo "# TPU requirements: $(grep -v '^#' "$TPU_REQUIREMENTS" | tr '\n' ' ')"
run .venv/bin/python -m pip install -q --upgrade pip
# The pinned stack first, then the TPU build of the same JAX version on top of it.
run .venv/bin/python -m pip install -q -r "$TPU_REQUIREMENTS"
run .venv/bin/python -m pip install -q "jax[tpu]==${JAX_VERSION}" \
  -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
run .venv/bin/python -m pip install -q --no-deps -e .
run touch "$STAMP"
[ "$DRY_RUN" = 1 ] || echo "tpu_setup: $(hostname) ready (jax ${JAX_VERSION}, TPU build)"
