PYTHON ?= python3
FER_DATA_DIR ?= ../shared
export FER_DATA_DIR
export FER_MODELS_DIR ?= $(FER_DATA_DIR)/models

.PHONY: install test test-deps proto proto-check train ship train-w050 train-gpu run-server run-client

# Development install: serving (no torch) + [train] + tests. torch first, alone, so pip takes the pinned CPU
# wheel that pip's configured find-links/index offer here (offline); then ".[dev]" finds it satisfied.
# Users: README installs it from PyTorch's CPU index instead (PyPI alone resolves the pin to the CUDA build).
install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

# The suite, as CI runs it: test-deps first installs what the tests drive besides Python (Xvfb, xdotool,
# ImageMagick, openssl, node/npm) when any is missing; tests/conftest.py starts Xvfb when $$DISPLAY is unset.
test: test-deps
	$(PYTHON) -m pytest -q

test-deps:
	PYTHON=$(PYTHON) .ci/test-deps

# Regenerates the Python code next to the .proto; never edit the generated files by hand.
proto:
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos protos/ferstream/v1/emotion.proto

# Fails when the committed generated code is not what `make proto` produces.
proto-check: proto
	git diff --exit-code -- protos

# Replays the chain of commands behind the shipped model (model/shipped/ferstream-emotion.pt; its meta
# records the chain): a 40-epoch plan stopped by hand after 13 epochs and resumed with the cosine schedule
# re-planned to end at epoch 28 (2026-11-27); then 54 more epochs from its best weights with a fresh
# schedule and lighter erasing (2026-11-28; the model shipped until 2026-12-01); then a 10-epoch
# fine-tune without label smoothing and with rotations up to 15 degrees (2026-12-01), whose final
# epoch is the shipped model: calibratable by one temperature, steadier on rolled and edge-cut faces
# (docs/model-card.md, docs/history.md). Those runs trained on the JPEGs' pixels as read; --no-equalize makes today's
# fer-train do the same. Then `make ship` installs it with its served forms.
# On a machine without runs/: `make train INIT=model/shipped/ferstream-emotion.pt` continues the committed
# model with the last stage's recipe instead (a fresh schedule from its weights).
INIT ?=
FER2013 = $(FER_DATA_DIR)/datasets/fer2013
FINE_TUNE = --width 0.25 --dropout 0.1 --lr 0.005 --epochs 10 --erase-probability 0.25 --label-smoothing 0 \
	--max-rotation 15 --seed 9 --no-equalize
train:
ifeq ($(INIT),)
	fer-train --data $(FER2013) --out runs/w025 --width 0.25 --dropout 0.1 --epochs 40 --seed 0 --no-equalize \
		--stop-after 13
	fer-train --out runs/w025 --resume --epochs 28
	fer-train --data $(FER2013) --out runs/w025-long --init runs/w025/best.pt --width 0.25 --dropout 0.1 --lr 0.02 \
		--epochs 54 --erase-probability 0.25 --seed 1 --no-equalize
	fer-train --data $(FER2013) --out runs/ls0r15 --init runs/w025-long/best.pt $(FINE_TUNE)
else
	fer-train --data $(FER2013) --out runs/continued --init $(INIT) $(FINE_TUNE)
endif

# Installs MODEL as the shipped model and writes what the server loads: the ONNX file with temperature
# scaling fitted on PublicTest, and its int8 OpenVINO IR quantized on Training faces (tests check all three
# agree; README's model table comes from `fer-eval`).
MODEL ?= runs/ls0r15/final.pt
ship:
	cp $(MODEL) model/shipped/ferstream-emotion.pt
	fer-export model/shipped/ferstream-emotion.pt --out model/shipped/ferstream-emotion.onnx \
		--calibrate $(FER2013)/test --int8 $(FER2013)/train

# The width-0.5 experiment of 2026-11-30, not shipped (docs/history.md): the shipped model grown to width 0.5
# (Net2WiderNet), a 36-epoch schedule stopped by hand after 12 epochs, re-planned to end at epoch 20 and
# stopped after 2 more (test runs shared the two cores, so epochs took 3-18 minutes), then its last 6
# epochs by the fer-train that equalises crops. Needs runs/w025-long/best.pt (or INIT=the shipped model).
train-w050:
	fer-train --data $(FER2013) --out runs/w050 --init $(or $(INIT),runs/w025-long/best.pt) --width 0.5 --dropout 0.1 \
		--lr 0.02 --epochs 36 --erase-probability 0.25 --seed 5 --no-equalize --stop-after 12
	fer-train --out runs/w050 --resume --epochs 20 --stop-after 2
	fer-train --out runs/w050 --resume --equalize

# The GPU recipe (training/gpu_recipe.py): the full-width reference VGG as a teacher, bf16 on one CUDA GPU
# (minutes), into runs/gpu/teacher with its log, metrics and curves. Then distil it into the served width
# on the CPU (hours): $(PYTHON) -m ferstream.training.gpu_recipe --data $(FER2013) --out runs/gpu --stage student
train-gpu:
	$(PYTHON) -m ferstream.training.gpu_recipe --data $(FER2013) --out runs/gpu --stage teacher

run-server:
	fer-server

run-client:
	fer-client --server 127.0.0.1:50051 --source 0
