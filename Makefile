FER_DATA_DIR ?= ../shared
export FER_DATA_DIR
export FER_MODELS_DIR ?= $(FER_DATA_DIR)/models

# Everything runs in a virtual environment: the active one ($$VIRTUAL_ENV) when there is one, else .venv here,
# made on first use from SYSTEM_PYTHON (Debian's and Ubuntu's own python3 refuse `pip install` outside one).
# Its bin/ comes first on PATH for every command below, so fer-* and the tests' commands are its own.
SYSTEM_PYTHON ?= python3
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Extra pip options for every install below (the tests add --dry-run --report to see what would come).
PIP_FLAGS ?=
PIP_INSTALL = $(PYTHON) -m pip install $(PIP_FLAGS)
# What the tests, `make proto` and training need installed; made again when pyproject.toml changes.
DEV_STAMP := $(VENV)/.ferstream-dev-installed
# PyTorch's CPU wheels. PyPI alone resolves the pinned torch to the CUDA build (gigabytes of nvidia-*
# packages a CPU never uses); beside this index pip takes torch==2.13.0+cpu, the higher version.
TORCH_CPU_INDEX = https://download.pytorch.org/whl/cpu

.PHONY: install install-dev test test-quick test-deps docs proto proto-check train train-wide ship train-w050 \
	train-gpu run-server run-client

$(PYTHON):
	.ci/venv $(VENV) $(SYSTEM_PYTHON)

# The serving install (server, clients, command-line tools, in-process API): no PyTorch, CPU packages only.
install: $(PYTHON)
	$(PIP_INSTALL) -e .
	@echo "installed in $(VENV): run $(VENV)/bin/fer-server, or put the fer-* commands on PATH with . $(VENV)/bin/activate"

# The serving install plus the training extra and the test tools ([dev]), with PyTorch's CPU build: from
# PyTorch's CPU index when this machine reaches it, else from pip's configured sources (an offline mirror or
# wheel folder in pip.conf; on bare PyPI that would be the CUDA build, so the index is tried first).
install-dev: $(PYTHON)
	@if $(PYTHON) -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=15)" 2>/dev/null; \
	then index="--extra-index-url $(TORCH_CPU_INDEX)"; \
	else echo "$(TORCH_CPU_INDEX) is out of reach: PyTorch comes from pip's configured sources" >&2; index=; fi; \
	echo "$(PIP_INSTALL) $$index -e \".[dev]\"" >&2; \
	$(PIP_INSTALL) $$index -e ".[dev]"

$(DEV_STAMP): pyproject.toml | $(PYTHON)
	$(MAKE) --no-print-directory install-dev
	touch $@

# The whole suite, as CI runs it, with a line per test file and its progress. test-deps first installs what
# the tests drive besides Python (Xvfb, xdotool, ImageMagick, openssl, node/npm, chromium, Tk) when any is
# missing; tests/conftest.py starts Xvfb when $$DISPLAY is unset.
test: test-deps $(DEV_STAMP)
	@echo "make test: the whole suite (about 11 min on a quiet 2-core machine, three times that on a busy one);"
	@echo "           make test-quick leaves out the tests marked slow"
	$(PYTHON) -m pytest

# The suite without the tests marked slow (soak, training, fine-tuning, long benchmarks, install dry runs,
# full PublicTest passes, fuzzing, long timeouts): each took over about 20 s on a busy 2-core machine.
test-quick: test-deps $(DEV_STAMP)
	$(PYTHON) -m pytest -m "not slow"

test-deps: $(PYTHON)
	PYTHON=$(PYTHON) .ci/test-deps

# Makes again what the docs show, from today's model and code: the desktop app's screenshots
# (docs/client-*.png, under Xvfb), the browser page's (docs/web.png, in Chromium) and README's sample JSON line.
docs: test-deps $(DEV_STAMP)
	FER_SCREENSHOTS_DIR=docs $(PYTHON) -m pytest tests/test_client_app.py -k no_label_or_chart
	FER_WRITE_SCREENSHOTS=1 $(PYTHON) -m pytest tests/test_web.py -k camera_live
	FER_WRITE_DOCS=1 $(PYTHON) -m pytest tests/test_docs.py -k sample

# Regenerates the Python code next to the .proto; never edit the generated files by hand.
proto: $(DEV_STAMP)
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos protos/ferstream/v1/emotion.proto

# Fails when the committed generated code is not what `make proto` produces.
proto-check: proto
	git diff --exit-code -- protos

# Replays the chain of commands behind the shipped model (model/shipped/ferstream-emotion.pt; its meta
# records the chain): a 40-epoch plan stopped by hand after 13 epochs and resumed with the cosine schedule
# re-planned to end at epoch 28 (2026-11-27); then 54 more epochs from its best weights with a fresh
# schedule and lighter erasing (2026-11-28); then a 10-epoch fine-tune without label smoothing and with
# rotations up to 15 degrees (2026-12-01); then 12 epochs more with standardised crops and photometric
# augmentation (2026-12-05), whose final epoch is the shipped model: dim, flat, soft and compressed faces
# keep their emotions (docs/model-card.md, docs/history.md). The first three trained on the JPEGs' pixels
# as read: BEFORE_LIGHT makes today's fer-train do the same. Then `make ship` installs it with its served
# forms. On a machine without runs/: `make train INIT=model/shipped/ferstream-emotion.pt` continues the
# committed model with the last stage's recipe instead (a fresh schedule from its weights).
INIT ?=
FER2013 = $(FER_DATA_DIR)/datasets/fer2013
BEFORE_LIGHT = --no-equalize --no-standardize --photometric-probability 0
FINE_TUNE = --width 0.25 --dropout 0.1 --lr 0.005 --epochs 10 --erase-probability 0.25 --label-smoothing 0 \
	--max-rotation 15 --seed 9 $(BEFORE_LIGHT)
LIGHT = --width 0.25 --dropout 0.1 --lr 0.005 --epochs 12 --erase-probability 0.25 --label-smoothing 0 \
	--max-rotation 15 --seed 11 --no-equalize
train: $(DEV_STAMP)
ifeq ($(INIT),)
	fer-train --data $(FER2013) --out runs/w025 --width 0.25 --dropout 0.1 --epochs 40 --seed 0 $(BEFORE_LIGHT) \
		--stop-after 13
	fer-train --out runs/w025 --resume --epochs 28
	fer-train --data $(FER2013) --out runs/w025-long --init runs/w025/best.pt --width 0.25 --dropout 0.1 --lr 0.02 \
		--epochs 54 --erase-probability 0.25 --seed 1 $(BEFORE_LIGHT)
	fer-train --data $(FER2013) --out runs/ls0r15 --init runs/w025-long/best.pt $(FINE_TUNE)
	fer-train --data $(FER2013) --out runs/light --init runs/ls0r15/final.pt $(LIGHT)
else
	fer-train --data $(FER2013) --out runs/continued --init $(INIT) $(LIGHT)
endif

# A wider fast CNN (vgg x0.5, not shipped): from scratch on a 120-epoch cosine schedule with today's
# defaults (standardised crops, photometric augmentation), resumable across days: each `make train-wide`
# continues runs/wide for STOP_AFTER more epochs (0: to the end) from its last.pt, or from its compact
# resume.pt (about 7 MB, small enough to commit when a day ends part-way), or starts the schedule where
# there is neither. An epoch takes about 3.3 min on a 2-core AVX-512 Xeon and 6 min or more on a 2-core EPYC.
STOP_AFTER ?= 0
train-wide: $(DEV_STAMP)
	if [ -f runs/wide/last.pt ] || [ -f runs/wide/resume.pt ]; then \
		fer-train --out runs/wide --resume --stop-after $(STOP_AFTER); \
	else fer-train --data $(FER2013) --out runs/wide --width 0.5 --epochs 120 --seed 20 --stop-after $(STOP_AFTER); fi

# Installs MODEL as the shipped model and writes what the server loads: the ONNX file with temperature
# scaling fitted on PublicTest (for one view and for mirrored views, served by default), and its int8
# OpenVINO IR quantized on Training faces with both forms' PublicTest accuracy recorded (the server serves
# int8 only within 0.2 points of f32; tests check all three agree; README's model table comes from
# `fer-eval`).
MODEL ?= runs/light/final.pt
ship: $(DEV_STAMP)
	cp $(MODEL) model/shipped/ferstream-emotion.pt
	fer-export model/shipped/ferstream-emotion.pt --out model/shipped/ferstream-emotion.onnx \
		--calibrate $(FER2013)/test --int8 $(FER2013)/train --tta flip

# The width-0.5 experiment of 2026-11-30, not shipped (docs/history.md): the shipped model grown to width 0.5
# (Net2WiderNet), a 36-epoch schedule stopped by hand after 12 epochs, re-planned to end at epoch 20 and
# stopped after 2 more (test runs shared the two cores, so epochs took 3-18 minutes), then its last 6
# epochs by the fer-train that equalises crops. Needs runs/w025-long/best.pt (or INIT=the shipped model).
train-w050: $(DEV_STAMP)
	fer-train --data $(FER2013) --out runs/w050 --init $(or $(INIT),runs/w025-long/best.pt) --width 0.5 --dropout 0.1 \
		--lr 0.02 --epochs 36 --erase-probability 0.25 --seed 5 $(BEFORE_LIGHT) --stop-after 12
	fer-train --out runs/w050 --resume --epochs 20 --stop-after 2
	fer-train --out runs/w050 --resume --equalize

# The GPU recipe (training/gpu_recipe.py): the full-width reference VGG as a teacher, bf16 on one CUDA GPU
# (minutes), into runs/gpu/teacher with its log, metrics and curves. Then distil it into the served width
# on the CPU (hours): $(PYTHON) -m ferstream.training.gpu_recipe --data $(FER2013) --out runs/gpu --stage student
train-gpu: $(DEV_STAMP)
	$(PYTHON) -m ferstream.training.gpu_recipe --data $(FER2013) --out runs/gpu --stage teacher

run-server: $(PYTHON)
	fer-server

run-client: $(PYTHON)
	fer-client --server 127.0.0.1:50051 --source 0
