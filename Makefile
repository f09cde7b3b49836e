# tvau-lightning — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch: on Linux the CPU build from PyTorch's CPU wheel index (plain PyPI gives the CUDA build there), falling
# back to PyPI's torch==$(TORCH_VERSION) when that index is unreachable; GPU=1: PyPI's default build (CUDA on
# Linux); macOS/Windows: PyPI's build. TORCH_SPEC (pip arguments) overrides all of it, e.g.
# `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC ?=
GPU ?= 0
# extras installed with the library: add decord with `make install EXTRAS=dev,decord` (PyAV is always there)
EXTRAS ?= dev
# `make test-min`: the declared lower bounds of pyproject.toml's dependencies, in their own venv
MIN_VENV ?= .venv-min
MIN_PYTEST_ARGS ?=
# the demo configs (configs/demo/*.yaml) read and write under this folder
DEMO_DIR := demo
STAMP := $(VENV)/.installed

.PHONY: help install test test-min test-slow test-all lint demo demo-weak demo-dialogue notebooks report-screenshot clean-demo

# $(call install_torch,VENV_BIN,VERSION): the torch build chosen above (a short timeout and no retries on the
# CPU index, so an unreachable index costs seconds)
define install_torch
	if [ -n "$(TORCH_SPEC)" ]; then \
	  $(1)/python -m pip install --quiet $(TORCH_SPEC); \
	elif [ "$(GPU)" = 1 ] || [ "$$(uname -s)" != Linux ]; then \
	  $(1)/python -m pip install --quiet "torch==$(2)"; \
	else \
	  $(1)/python -m pip install --quiet --timeout 10 --retries 0 --index-url $(TORCH_CPU_INDEX) "torch==$(2)" 2>/dev/null || { \
	    echo "PyTorch's CPU wheel index is unreachable: installing torch==$(2) from PyPI (on Linux: the CUDA build)"; \
	    $(1)/python -m pip install --quiet "torch==$(2)"; }; \
	fi
endef

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(call install_torch,$(BIN),$(TORCH_VERSION))
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the library with its dev tools (CPU torch on Linux; GPU=1, TORCH_SPEC=…)

test-min:  ## install the declared minimum versions into .venv-min and run the fast tests there
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	  [print(f"{m[1]}=={m[2]}") for d in deps if (m := re.match(r"([A-Za-z0-9_.-]+)(?:\[.*?\])?\s*>=\s*([^,;\s]+)", d))]' \
	  > $(MIN_VENV)/minimums.txt
	$(call install_torch,$(MIN_VENV)/bin,$$(sed -n 's/^torch==//p' $(MIN_VENV)/minimums.txt))
	$(MIN_VENV)/bin/python -m pip install --quiet -e ".[dev]" -c $(MIN_VENV)/minimums.txt
	$(MIN_VENV)/bin/python -m pip list --format=freeze | grep -iE "^($$(cut -d= -f1 $(MIN_VENV)/minimums.txt | paste -sd'|'))==" || true
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(MIN_PYTEST_ARGS)

test: $(STAMP)  ## run the default test suite (CPU, ~15 min)
	$(BIN)/python -m pytest

test-slow: $(STAMP)  ## run only the slow tests
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)  ## run every test, slow ones included
	$(BIN)/python -m pytest -m "slow or not slow"

lint: $(STAMP)  ## ruff over the sources and tests
	$(BIN)/ruff check src tests benchmarks

demo: $(STAMP)  ## synthetic UBnormal → tiny backbone → fit AHD → test → analyze a video (CPU, a few minutes)
	rm -rf $(DEMO_DIR)/runs/ahd
	$(BIN)/tvau synth-data --dataset ubnormal --out $(DEMO_DIR)/data/ubnormal
	$(BIN)/tvau make-tiny-backbone --family qwen2_5_vl --out $(DEMO_DIR)/backbones/tiny_qwen2_5_vl
	$(BIN)/tvau fit --config configs/demo/ahd_tiny.yaml
	$(BIN)/tvau test --config configs/demo/ahd_tiny.yaml --ckpt_path $(DEMO_DIR)/runs/ahd/checkpoints/best.ckpt
	video=$$(find $(DEMO_DIR)/data/ubnormal -name "$$(head -n1 $(DEMO_DIR)/data/ubnormal/scripts/abnormal_test_video_names.txt).mp4") && \
	  $(BIN)/tvau analyze "$$video" --ckpt $(DEMO_DIR)/runs/ahd/checkpoints/best.ckpt --out $(DEMO_DIR)/analyze --overwrite
	@echo "Demo done: checkpoints and TensorBoard logs in $(DEMO_DIR)/runs/ahd (tensorboard --logdir $(DEMO_DIR)/runs/ahd), evaluation artifacts in $(DEMO_DIR)/runs/ahd/tensorboard/version_*/eval"
	@echo "Report of one analyzed test video: $(DEMO_DIR)/analyze/report.html  (xdg-open $(DEMO_DIR)/analyze/report.html)"

# demo-dialogue: the synthetic demo videos last a few seconds, too short for the paper's records (8-40 frames at
# 1 fps, the builder's default), so the demo builds dense records explicitly: every frame, windows of 16 frames
demo-dialogue: $(STAMP)  ## stage 2 on the demo (after make demo): dialogue data → RAE phase A → merge → phase B → test
	rm -rf $(DEMO_DIR)/runs/rae_phase_a $(DEMO_DIR)/runs/rae_phase_b
	for split in training validation test; do \
	  $(BIN)/tvau build-dataset --source ubnormal --root $(DEMO_DIR)/data/ubnormal --split-dir $(DEMO_DIR)/data/ubnormal/scripts \
	    --split $$split --annotator ground-truth --dense-records --window 16 --window-stride 8 --restart --no-progress \
	    --out $(DEMO_DIR)/dialogues/$$split > /dev/null || exit 1; \
	done
	$(BIN)/tvau fit --config configs/demo/rae_phase_a_tiny.yaml
	$(BIN)/tvau merge-lora --ckpt $(DEMO_DIR)/runs/rae_phase_a/checkpoints/best.ckpt --out $(DEMO_DIR)/runs/rae_phase_a/merged
	$(BIN)/tvau fit --config configs/demo/rae_phase_b_tiny.yaml
	$(BIN)/tvau test --config configs/demo/rae_phase_b_tiny.yaml --ckpt_path $(DEMO_DIR)/runs/rae_phase_b/checkpoints/best.ckpt
	@echo "Stage-2 demo done: dialogues in $(DEMO_DIR)/dialogues, checkpoints in $(DEMO_DIR)/runs/rae_phase_{a,b}," \
	  "every test answer beside its question and reference in $$(ls -t $(DEMO_DIR)/runs/rae_phase_b/tensorboard/*/answers.jsonl | head -n1)"

demo-weak: $(STAMP)  ## synthetic UCF-Crime → tiny backbone → weakly supervised category AHD from video labels → AUC, AP, mAP@tIoU (CPU)
	rm -rf $(DEMO_DIR)/runs/weak_ahd
	$(BIN)/tvau synth-data --dataset ucf_crime --out $(DEMO_DIR)/data/ucf_crime --frames 16 --height 64 --width 96 --videos 4
	$(BIN)/tvau make-tiny-backbone --family qwen2_5_vl --out $(DEMO_DIR)/backbones/tiny_qwen2_5_vl
	$(BIN)/tvau fit --config configs/demo/weak_ahd_tiny.yaml
	$(BIN)/tvau test --config configs/demo/weak_ahd_tiny.yaml --ckpt_path $(DEMO_DIR)/runs/weak_ahd/checkpoints/best.ckpt
	@echo "Weak-supervision demo done: checkpoints in $(DEMO_DIR)/runs/weak_ahd"

notebooks: $(STAMP)  ## run notebooks/*.ipynb top to bottom on the demo data (after make demo); executed copies in demo/notebooks
	$(BIN)/python notebooks/execute.py --out $(DEMO_DIR)/notebooks

report-screenshot: $(STAMP)  ## docs/images/report.png from the demo's report.html (after make demo; needs chromium)
	mkdir -p docs/images
	frame=$$($(BIN)/python -c "import json;t=json.load(open('$(DEMO_DIR)/analyze/regions.json'))['tracks'];print(t[0]['start'] if t else 0)") && \
	chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1000 --virtual-time-budget=5000 \
	  --screenshot=$(CURDIR)/docs/images/report.png "file://$(CURDIR)/$(DEMO_DIR)/analyze/report.html#frame=$$frame"
	$(BIN)/python -c "from PIL import Image; Image.open('docs/images/report.png').convert('RGB').quantize(64).save('docs/images/report.png', optimize=True)"

clean-demo:  ## remove the demo outputs
	rm -rf $(DEMO_DIR)
