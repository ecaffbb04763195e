# Every target sets up what it needs: a .venv with the CPU torch from disk first (any other torch
# requirement would pull a multi-GB CUDA build), then this package with its extras.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint format train data base bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,medical]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The embedded default dataset (MNI152 brain tissue), built offline from the copy inside nilearn's wheel.
DEFAULT_DATA := data/mni152-tissue
$(DEFAULT_DATA)/prepare_report.json: $(STAMP)
	$(VENV)/bin/msa-hf build-default-data $(DEFAULT_DATA) --overwrite

data: $(DEFAULT_DATA)/prepare_report.json

# Pretrain the small base model on the synthetic data engine (hours on 2 CPU cores, minutes on a GPU).
# Resumable: run it again after an interruption. `accelerate launch -m msa_hf.cli pretrain-base ...` for GPUs.
base: $(STAMP)
	$(VENV)/bin/msa-hf pretrain-base runs/base

train: data
	@echo "make train: the training job lands with issue #5 (train.py); see README 'Status'." >&2
	@exit 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
