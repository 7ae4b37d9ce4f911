# make test: fresh Debian machine (as root) -> fluidsynth + chromium-headless-shell, .venv, pinned requirements,
# the package, pytest. make demo: the same install, then the whole pipeline on a demo set (docs/demo.md);
# make demo-quick: the same driver at smoke size.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2
# The TPU compiler for ahead-of-time checks (python -m diffariff_jax.aot; the jax[tpu]==0.10.2 pin), kept
# out of the venv's importable packages: importable, every `import jax` on a CPU or GPU host probes it,
# prints TPU start-up errors and contends for libtpu's lock file. The aot command finds it here.
LIBTPU := libtpu==0.0.42.1
LIBTPU_DIR := $(VENV)/aot-libtpu

.PHONY: test test-pipeline install system-deps clean demo demo-quick

system-deps:
	@command -v fluidsynth >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends fluidsynth; \
	  else \
	    echo "fluidsynth is missing: run 'sudo apt-get install -y --no-install-recommends fluidsynth'"; exit 1; \
	  fi; }
	@command -v chromium-headless-shell >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium-headless-shell; \
	  else \
	    echo "chromium-headless-shell is missing: run 'sudo apt-get install -y --no-install-recommends chromium-headless-shell'"; exit 1; \
	  fi; }

$(STAMP): requirements.txt requirements-test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps --upgrade --target $(LIBTPU_DIR) $(LIBTPU)
	touch $(STAMP)

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS) --durations=15 -m "not pipeline" tests

test-pipeline: install
	$(PY) -m pytest -q $(PYTEST_ARGS) -m pipeline tests

demo: install
	$(PY) -m diffariff_jax.demo --out demo

demo-quick: install
	$(PY) -m diffariff_jax.demo --out demo_quick --size quick

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
