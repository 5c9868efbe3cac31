# Set-up and the project's two main commands; see README.md.
#   make demo         set everything up, build the synthetic dataset, train the demo
#                     network on CPU for a few minutes, evaluate and draw predictions
#   make test         set everything up and run the fast tier of the tests (every
#                     test not marked `slow`; under 8 minutes of pytest on 2 cores)
# and, for CI and maintainers:
#   make test-slow    the slow tier alone (the tests marked `slow`, 30 s to minutes
#                     each: full-size TPU compiles, long training runs, multi-process
#                     and multi-device runs, the browser; about 12.5 minutes on 2 cores)
#   make test-all     both tiers: `make test`, then `make test-slow` (what CI runs)
#   make test-latest  both tiers in one run on Python 3.12 with the newest versions
#                     pip resolves today (no lock), in .venv-latest (both tiers' time in one run)
#   make lock         re-resolve requirements/py311.txt and py312.txt (uv)

# $(call first_python,X.Y): the first Python X.Y that runs, from PATH or else
# from pyenv's installs (a pyenv shim is on PATH for every installed version
# but runs only the selected ones).
PYENV_DIR ?= $(or $(PYENV_ROOT),$(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
first_python = $(firstword $(foreach p,$(shell command -v python$(1)) \
  $(wildcard $(PYENV_DIR)/versions/$(1).*/bin/python$(1)),$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))

PYTHON ?= $(or $(call first_python,3.11),$(shell command -v python3))
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= $(CURDIR)/tensorflow_datasets
DEMO   ?= $(CURDIR)/runs/demo
PYTEST_ARGS ?=

# The versions the suite passed with, one constraints file per supported
# Python (requirements/py311.txt for Python 3.11, ...), chosen by $(PYTHON).
PY_TAG := $(shell $(PYTHON) -c 'import sys; print("py%d%d" % sys.version_info[:2])' 2>/dev/null)
LOCK   := requirements/$(PY_TAG).txt
LOCKED_PYTHONS := 3.11 3.12

.PHONY: setup demo test test-slow test-all test-latest setup-latest lock browser-deps clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard $(LOCK))
	@test -f "$(LOCK)" || { echo "error: no lock for $(PYTHON) ($(or $(PY_TAG),not found)); supported: Python $(LOCKED_PYTHONS) (make PYTHON=python3.12 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test,onnx]'
	$(XTCOCOTOOLS)
	touch $@

# xtcocotools, COCO-WholeBody's own evaluation library, the reference that
# per-group AP is tested against (tests/evaluation/test_coco_eval.py, which
# skips without it). Its only release's wheel is built for numpy 1 and its
# setup.py imports numpy, so it is compiled against the installed numpy
# (about 10 s); a failed build leaves that one test skipping, not the set-up.
XTCOCOTOOLS = $(BIN)/python -m pip install --quiet -c $(LOCK) setuptools wheel cython && \
  $(BIN)/python -m pip install --quiet --no-build-isolation --no-binary xtcocotools --no-deps \
    xtcocotools==1.14.3 || echo "warning: xtcocotools did not build; its comparison test will skip" >&2

# TFDS's build command prints its own logging and a summary of the dataset:
# kept in a log file, shown when the build fails.
BUILD_LOG = $(DATA)/synthetic_pose_build.log

demo: setup
	@mkdir -p $(DATA)
	@echo "building synthetic_pose/default in $(DATA) (under a minute; log: $(BUILD_LOG))"
	@$(BIN)/tfds build tfds_builders/synthetic_pose --config=default --data_dir=$(DATA) \
	  > $(BUILD_LOG) 2>&1 || { tail -n 20 $(BUILD_LOG); exit 1; }
	$(BIN)/python -m experiments.train --config=experiments/configs/demo.py \
	  --workdir=$(DEMO) --config.data_dir=$(DATA)
	$(BIN)/python -m experiments.evaluate --config=experiments/configs/demo.py \
	  --workdir=$(DEMO) --config.data_dir=$(DATA)
	$(BIN)/python -m experiments.predict --workdir=$(DEMO) --config=experiments/configs/demo.py \
	  --config.data_dir=$(DATA) --from_split=validation --index=0 --heatmaps \
	  --output=$(DEMO)/prediction

# The two tiers, by the `slow` marker (setup.cfg): `make test` runs the fast
# one on every edit; the slow one runs in CI (`make test-all`) and before a landing.
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadgroup -q

test: setup
	$(PYTEST) -m 'not slow' $(PYTEST_ARGS)

test-slow: setup
	$(PYTEST) -m slow $(PYTEST_ARGS)

test-all: test test-slow

# The newest versions within pyproject.toml's bounds, re-resolved on every run.
LATEST_PYTHON ?= $(call first_python,3.12)
LATEST_VENV   ?= .venv-latest

setup-latest:
	@test -n "$(LATEST_PYTHON)" || { echo "error: make test-latest needs a Python 3.12 that runs, on PATH or installed by pyenv (or LATEST_PYTHON=...)" >&2; exit 1; }
	test -x $(LATEST_VENV)/bin/python || $(LATEST_PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	@$(LATEST_VENV)/bin/python -c 'import sys; print("newest versions, Python", sys.version.split()[0])'
	@$(LATEST_VENV)/bin/python -m pip freeze | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|tensorflow(-cpu|_cpu)?|tensorflow-datasets|numpy|libtpu)==' | tr '\n' ' '; echo

test-latest: setup-latest
	$(LATEST_VENV)/bin/python -m pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

# Re-resolves the locks with uv (pinned here, installed into .venv-lock) for
# Linux x86-64 with glibc >= 2.31 (libtpu's wheels), from PyPI.
UV_VERSION ?= 0.13.9
lock:
	test -x .venv-lock/bin/uv || { $(PYTHON) -m venv .venv-lock && .venv-lock/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	for v in $(LOCKED_PYTHONS); do \
	  .venv-lock/bin/uv pip compile pyproject.toml --extra test --extra onnx --upgrade --quiet \
	    --python-version $$v --python-platform x86_64-manylinux_2_31 \
	    --custom-compile-command "make lock  (uv pip compile pyproject.toml --extra test --extra onnx --python-version $$v --python-platform x86_64-manylinux_2_31)" \
	    -o requirements/py$$(echo $$v | tr -d .).txt || exit 1; \
	done

# The browser test's programs (tests/deploy/test_web_page.py, which skips
# without them): Debian's chromium and npm, by apt-get (through sudo unless
# root); the test installs onnxruntime-web with npm into build/.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser-deps:
	command -v chromium >/dev/null && command -v npm >/dev/null || { \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium npm; }

clean:
	rm -rf $(VENV) $(LATEST_VENV) .venv-lock $(DATA) runs
