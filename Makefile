FER_DATA_DIR ?= ../shared
export FER_DATA_DIR
export FER_MODELS_DIR ?= $(FER_DATA_DIR)/models
FER2013 = $(FER_DATA_DIR)/datasets/fer2013

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

.PHONY: install install-dev test test-quick test-deps docs proto proto-check train train-teacher train-long ship train-gpu run-server run-client

$(PYTHON):
	.ci/venv $(VENV) $(SYSTEM_PYTHON)

# The serving install (server, clients, command-line tools, in-process API): no PyTorch, CPU packages only.
install: $(PYTHON)
	$(PIP_INSTALL) -e .
	@echo "installed in $(VENV): run $(VENV)/bin/fer-server, or put the fer-* commands on PATH with . $(VENV)/bin/activate"

# The serving install plus training and test tools ([dev]); PyTorch's CPU index first, else pip's own sources.
install-dev: $(PYTHON)
	@if $(PYTHON) -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=15)" 2>/dev/null; \
	then index="--extra-index-url $(TORCH_CPU_INDEX)"; \
	else echo "$(TORCH_CPU_INDEX) is out of reach: PyTorch comes from pip's configured sources" >&2; index=; fi; \
	echo "$(PIP_INSTALL) $$index -e \".[dev]\"" >&2; \
	$(PIP_INSTALL) $$index -e ".[dev]"

$(DEV_STAMP): pyproject.toml | $(PYTHON)
	$(MAKE) --no-print-directory install-dev
	touch $@

# Test files run side by side, one worker per core (pytest-xdist), each file whole on one worker so that its
# servers start once.
PYTEST = $(PYTHON) -m pytest -n auto --dist loadfile

# The whole suite, as CI runs it, after test-deps installs the programs the tests drive (Xvfb, node, chromium...).
test: test-deps $(DEV_STAMP)
	@echo "make test: the whole suite (about 11 min on a quiet 2-core machine, three times that on a busy one);"
	@echo "           make test-quick leaves out the tests marked slow"
	$(PYTEST)

# The suite without the tests marked slow (soak, training, fine-tuning, benchmarks, install dry runs, passes
# over PublicTest, fuzzing, the browser's longer scenarios, long timeouts): each took over about 4 s.
test-quick: test-deps $(DEV_STAMP)
	$(PYTEST) -m "not slow"

test-deps: $(PYTHON)
	PYTHON=$(PYTHON) .ci/test-deps

# Makes again the docs' screenshots (docs/client-*.png, docs/web.png) and README's sample JSON line.
docs: test-deps $(DEV_STAMP)
	FER_SCREENSHOTS_DIR=docs $(PYTHON) -m pytest tests/test_client_app.py -k no_label_or_chart
	FER_WRITE_SCREENSHOTS=1 $(PYTHON) -m pytest tests/test_web.py -k camera_live
	FER_WRITE_DOCS=1 $(PYTHON) -m pytest tests/test_docs.py -k sample
	$(PYTHON) -m ferstream.usage

# Regenerates the Python code next to the .proto; never edit the generated files by hand.
proto: $(DEV_STAMP)
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos protos/ferstream/v1/emotion.proto

# Fails when the committed generated code is not what `make proto` produces.
proto-check: proto
	git diff --exit-code -- protos

# The shipped model's chain, one recipe a stage (training/recipes); INIT=FILE continues FILE with the last one's.
INIT ?=
train: $(DEV_STAMP)
ifeq ($(INIT),)
	fer-train --config training/recipes/w025.toml
	fer-train --config training/recipes/w025-resume.toml
	fer-train --config training/recipes/w025-long.toml
	fer-train --config training/recipes/ls0r15.toml
	fer-train --config training/recipes/light.toml
else
	fer-train --config training/recipes/light.toml --init $(INIT) --out runs/continued
endif

# A teacher for the served width: a wider CNN (vgg x0.5, not served) into runs/wide; its weights are
# committed in float16 as training/teachers/wide.pt.
train-teacher: $(DEV_STAMP)
	fer-train --config training/recipes/wide.toml
	fer-train --config training/recipes/wide-end.toml

# A run that spans days (RECIPE=NAME, a recipe file's name): STOP_AFTER more epochs (0: to the end) of
# runs/NAME, continued from its last state there, or on a new machine from the compact one committed in
# training/unfinished/NAME/.
STOP_AFTER ?= 0
train-long: $(DEV_STAMP)
	@if [ -z "$(RECIPE)" ]; then echo "make train-long: give RECIPE=NAME (training/recipes/NAME.toml)" >&2; exit 2; fi
	@if [ ! -e runs/$(RECIPE)/last.pt ] && [ ! -e runs/$(RECIPE)/resume.pt ] && [ -e training/unfinished/$(RECIPE)/resume.pt ]; then mkdir -p runs/$(RECIPE) && cp training/unfinished/$(RECIPE)/resume.pt runs/$(RECIPE)/; fi
	fer-train --config training/recipes/$(RECIPE).toml --stop-after $(STOP_AFTER) $$(if [ -e runs/$(RECIPE)/last.pt ] || [ -e runs/$(RECIPE)/resume.pt ]; then echo --resume; fi)

# Installs MODEL as the shipped model with its served forms (ONNX calibrated on PublicTest, int8 IR).
MODEL ?= runs/light/final.pt
ship: $(DEV_STAMP)
	cp $(MODEL) model/shipped/ferstream-emotion.pt
	fer-export model/shipped/ferstream-emotion.pt --out model/shipped/ferstream-emotion.onnx --calibrate $(FER2013)/test --int8 $(FER2013)/train --tta flip

# The GPU recipe's teacher (training/gpu_recipe.py; its --stage student distils it on the CPU).
train-gpu: $(DEV_STAMP)
	$(PYTHON) -m ferstream.training.gpu_recipe --data $(FER2013) --out runs/gpu --stage teacher

run-server: $(PYTHON)
	fer-server

run-client: $(PYTHON)
	fer-client --server 127.0.0.1:50051 --source 0
