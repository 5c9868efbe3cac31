# Set-up and the project's two main commands; see README.md.
#   make demo   set everything up, build the synthetic dataset, train the demo
#               network on CPU for a few minutes, evaluate and draw predictions
#   make test   set everything up and run the whole test suite

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= $(CURDIR)/tensorflow_datasets
DEMO   ?= $(CURDIR)/runs/demo

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

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

test: setup
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) $(DATA) runs
