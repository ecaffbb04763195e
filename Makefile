# Every target sets up what it needs: a .venv with the CPU torch from disk first (any other torch
# requirement would pull a multi-GB CUDA build), then this package with its extras. Nothing is byte-compiled
# at install (a minute of compiling modules most runs never import); Python compiles what it imports, once.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the fast tests (`make test-fast`, which the lowest-bounds and other-stack runs run too) leave out the slow
# ones: training runs, several processes, the browser
SLOW_MARKS := slow or ddp or browser
FAST_TESTS := -m pytest -m "not ($(SLOW_MARKS))"
# `make test` runs every test in two processes side by side: the training runs and the browser tests in one,
# the rest in the other (the multi-process tests with the fast ones). That evens them out in CI, where the
# lowest-bounds run shares the cores too: the process that ends last runs alone on a core the others left.
TRAINING_TESTS := -m pytest -m "slow or browser"
OTHER_TESTS := -m pytest -m "not (slow or browser)"

.PHONY: setup test test-fast dicom-tools test-lowest test-oldest-torch test-gpu-image test-newest-python lint format train train-tissue data base bench retention fallback-rules retention-clicks compare propagation clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --no-compile torch==2.13.0
	$(PY) -m pip install -q --no-compile -e ".[test,medical,demo,dicom,onnx]"
	touch $(STAMP)

setup: $(STAMP)

# The training runs (`slow`, with the `browser` tests) run in a second pytest process beside the other tests,
# with a temporary folder of their own; their output follows the other run's. Either failing (or collecting
# nothing: pytest's exit 5) fails the target.
# While two test processes share the cores, torch's OpenMP threads sleep rather than spin when they wait for
# work (docs/stack-notes.md says what spinning cost).
# The training runs' temporary folder would also move inductor's cache of compiled kernels (torch keeps it in
# the temporary folder) and leave it cold on every run: the compiled-training test alone then spends about
# two and a half minutes of CPU compiling the same kernels again. The cache stays where torch keeps it, so a
# second `make test` in a checkout compiles nothing again; its entries are keyed by the graph, torch's
# version and where its headers lie, so a change, or another checkout's venv (a fresh clone), compiles afresh.
SLOW_RUN := build/slow-tests
test test-lowest: export OMP_WAIT_POLICY ?= PASSIVE
test test-lowest: export TORCHINDUCTOR_CACHE_DIR ?= $(or $(TMPDIR),/tmp)/torchinductor_$(shell id -un)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@rm -rf $(SLOW_RUN) && mkdir -p $(SLOW_RUN)/tmp
	@(TMPDIR="$$PWD/$(SLOW_RUN)/tmp" $(VENV)/bin/python $(TRAINING_TESTS) > $(SLOW_RUN)/log 2>&1; \
	  echo $$? > $(SLOW_RUN)/rc) & \
	$(VENV)/bin/python $(OTHER_TESTS); other=$$?; \
	wait; echo "== the training runs and browser tests (slow, browser) =="; cat $(SLOW_RUN)/log; slow=$$(cat $(SLOW_RUN)/rc); \
	[ "$$other" -ne 0 ] && exit "$$other"; exit "$$slow"

# The edit loop: everything except the slow, multi-process and browser tests (about six minutes on two cores).
test-fast: $(STAMP)
	$(VENV)/bin/python $(FAST_TESTS)

# Tools of others that check our DICOM outputs (the standard's validator, a radiotherapy converter): the
# tests that use them are skipped without them. Debian and Ubuntu packages; needs root.
dicom-tools:
	apt-get install -y dicom3tools plastimatch

# The lowest versions pyproject.toml allows (.ci/lowest-bounds.txt), installed over the pinned environment
# into .lowest/ and put first on the path, then the fast tests (its bad-inputs page goes there too: messages
# differ between versions).
LOWEST := .lowest
$(LOWEST)/.installed: $(STAMP) .ci/lowest-bounds.txt
	rm -rf $(LOWEST)
	$(PY) -m pip install -q --no-compile --no-deps --target $(LOWEST) -r .ci/lowest-bounds.txt
	touch $@

test-lowest: $(LOWEST)/.installed
	MSA_HF_BAD_INPUTS_PAGE=$(LOWEST)/bad-inputs.md PYTHONPATH=$(LOWEST) $(VENV)/bin/python $(FAST_TESTS)

# Release checks, not part of `make test`: the fast tests on other stacks of library versions, each in a venv
# of its own (PyPI's torch for Linux is the CUDA build: each downloads about 4 GB and takes about 6 GB of
# disk). `test-oldest-torch`: the oldest torch pyproject.toml allows with the lowest versions of everything
# else (the compile tests skip there: --compile is refused below torch 2.7). `test-gpu-image`: the versions of
# the GPU image the benchmarks run on (.ci/gpu-image.txt), torchvision included, which the project's own venv
# leaves out. A run writes its bad-inputs page into its venv, not over docs/ (messages differ between versions).
OLDEST_TORCH := 2.5.1
OLDEST := .oldest-torch
GPU_IMAGE := .gpu-image

# $(1): the venv folder, $(2): torch's pin (and torchvision's), $(3): the constraints for everything else,
# $(4): the Python that makes the venv (default: $(PYTHON))
define other_stack
	rm -rf $(1)
	$(or $(4),$(PYTHON)) -m venv $(1)
	$(1)/bin/python -m pip install -q $(2)
	$(1)/bin/python -m pip install -q $(2) "setuptools>=68" ".[test,medical,demo,dicom,onnx]" -c $(3)
	touch $(1)/.installed
endef

$(OLDEST)/.installed: pyproject.toml .ci/lowest-bounds.txt
	$(call other_stack,$(OLDEST),torch==$(OLDEST_TORCH),.ci/lowest-bounds.txt)

$(GPU_IMAGE)/.installed: pyproject.toml .ci/gpu-image.txt
	$(call other_stack,$(GPU_IMAGE),$(shell grep '^torch' .ci/gpu-image.txt),.ci/gpu-image.txt)

# `test-newest-python`: the newest Python pyproject.toml allows (NEWEST_PYTHON; the cap above it is tested
# against this), with the newest releases of everything. It needs that interpreter: on the path, or
# NEWEST_PYTHON_EXE=/path/to/python3.14 (.ci/debian-unstable-python.sh unpacks Debian unstable's build where a
# Debian stable has none). On Python 3.14 the dicom extra's JPEG-LS codec (pyjpegls) has no wheel and is
# compiled from source: it needs g++ and the Python's headers.
NEWEST_PYTHON := 3.14
NEWEST_PYTHON_EXE ?= python$(NEWEST_PYTHON)
NEWEST := .newest-python

# the newest releases, whatever cap a pip configuration on the machine sets (PIP_CONSTRAINT replaces its file)
$(NEWEST)/.installed: export PIP_CONSTRAINT = /dev/null
$(NEWEST)/.installed: pyproject.toml
	$(call other_stack,$(NEWEST),torch,/dev/null,$(NEWEST_PYTHON_EXE))

test-newest-python: $(NEWEST)/.installed
	MSA_HF_BAD_INPUTS_PAGE=$(NEWEST)/bad-inputs.md $(NEWEST)/bin/python $(FAST_TESTS)

test-oldest-torch: $(OLDEST)/.installed
	MSA_HF_BAD_INPUTS_PAGE=$(OLDEST)/bad-inputs.md $(OLDEST)/bin/python $(FAST_TESTS)

test-gpu-image: $(GPU_IMAGE)/.installed
	MSA_HF_BAD_INPUTS_PAGE=$(GPU_IMAGE)/bad-inputs.md $(GPU_IMAGE)/bin/python $(FAST_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The embedded default dataset (brain structures of the MNI152 template), built offline from the copy inside
# nilearn's wheel; the tissue labels (CSF, grey and white matter) are its second configuration.
DEFAULT_DATA := data/mni152-objects
TISSUE_DATA := data/mni152-tissue
$(DEFAULT_DATA)/prepare_report.json: $(STAMP)
	$(VENV)/bin/msa-hf build-default-data --output-dir $(DEFAULT_DATA) --overwrite
$(TISSUE_DATA)/prepare_report.json: $(STAMP)
	$(VENV)/bin/msa-hf build-default-data --targets tissue --output-dir $(TISSUE_DATA) --overwrite

data: $(DEFAULT_DATA)/prepare_report.json $(TISSUE_DATA)/prepare_report.json

# Pretrain the small base model on the synthetic data engine (hours on 2 CPU cores, minutes on a GPU).
# Resumable: run it again after an interruption. `accelerate launch -m msa_hf.cli pretrain-base ...` for GPUs.
base: $(STAMP)
	$(VENV)/bin/msa-hf pretrain-base --output-dir runs/base

# The speed and memory suite (CPU, ViT-B geometry, modest sizes; under 10 minutes on 2 cores). Results go to
# benchmarks/results/cpu.{csv,md}; `$(PY) -m benchmarks.run --device cuda` on a GPU, `--full` for large sizes.
bench: $(STAMP)
	$(PY) -m benchmarks.run --output benchmarks/results

# The main job: adapt the base (default: the shipped synthetic-pretrained one) with MSA adapters to four
# structures of the default dataset, then print the test-split Dice table next to the zero-shot base's and the
# box-fill baseline, and the held-out structure (the ventricles, never adapted to) before and after.
# `make train-tissue TISSUE_CLASSES=csf` adapts to the tissue configuration instead.
BASE ?= tiny
CLASSES ?= deep_grey_left deep_grey_right white_matter_left white_matter_right
LAUNCH := HF_HUB_DISABLE_TELEMETRY=1 $(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 \
	--mixed_precision no --dynamo_backend no train.py --base $(BASE) --overwrite
train: data
	$(LAUNCH) --dataset $(DEFAULT_DATA) --output-dir runs/msa-mni152 --classes $(CLASSES)

TISSUE_CLASSES ?=
train-tissue: data
	$(LAUNCH) --dataset $(TISSUE_DATA) --output-dir runs/msa-mni152-tissue \
		$(if $(TISSUE_CLASSES),--classes $(TISSUE_CLASSES))

# The retention options of train.py side by side (no retention, self-distillation with and without its prompts
# kept off the adapted structures, replay, distillation and replay, the base fallback), three seeds
# each on the default data: about 40 minutes on 2 CPU cores. Writes benchmarks/results/retention.{md,csv};
# runs already complete in runs/retention are reused.
retention: data
	$(PY) -m benchmarks.retention

# Which rule should decide when a --base-fallback model answers with its base: other rules replayed on the
# fallback models of `make retention` (no training; about 7 minutes). Writes benchmarks/results/fallback-rules.md.
fallback-rules: data
	$(PY) -m benchmarks.fallback_rules

# The retention goal on more prompts: the fallback models of `make retention` replayed with each of the ten
# evaluation clicks of a slice as the first click (no training; about 12 minutes). Writes
# benchmarks/results/retention-clicks.{md,json}.
retention-clicks: data
	$(PY) -m benchmarks.retention_clicks

# The method comparison on the default data at equal budget: MSA with and without retention, LoRA, full
# fine-tuning and decoder-only, adapted and held-out structures (about 15 minutes on 2 CPU cores).
# Writes benchmarks/results/compare.md; the runs go to runs/compare.
compare: data
	$(VENV)/bin/msa-hf compare --base $(BASE) --dataset $(DEFAULT_DATA) --output-dir runs/compare --overwrite \
		--log-with none --classes $(CLASSES)
	{ echo 'Written by `make compare` (`msa-hf compare` on the default data, 600 steps each).'; echo; \
		cat runs/compare/comparison.md; } > benchmarks/results/compare.md

# 3-D interaction on the default data's test volumes: one click propagated through each slab, then two
# corrections, with the previous slice's logits carried and with boxes only, for the shipped base, make
# train's model and a depth-branch model (trained here first if missing; about 10 minutes in all on 2 cores).
runs/msa-mni152/model/config.json:
	$(MAKE) train
runs/depth-mni152/model/config.json: | data
	$(LAUNCH) --dataset $(DEFAULT_DATA) --output-dir runs/depth-mni152 --use-depth-branch --num-slices 4 \
		--steps 300 --log-with none
propagation: runs/msa-mni152/model/config.json runs/depth-mni152/model/config.json
	$(PY) -m benchmarks.propagation --model tiny --model runs/msa-mni152/model --model runs/depth-mni152/model

clean:
	rm -rf $(VENV) $(LOWEST) $(OLDEST) $(GPU_IMAGE) build *.egg-info .pytest_cache .ruff_cache
