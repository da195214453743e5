PYTHON ?= python3
FER_DATA_DIR ?= ../shared
export FER_DATA_DIR
export FER_MODELS_DIR ?= $(FER_DATA_DIR)/models

.PHONY: install test proto proto-check train run-server run-client

install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

# Regenerates the Python code next to the .proto; never edit the generated files by hand.
proto:
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos protos/ferstream/v1/emotion.proto

# Fails when the committed generated code is not what `make proto` produces.
proto-check: proto
	git diff --exit-code -- protos

# Reproduces the shipped model: a 40-epoch plan stopped after 13 epochs and resumed with the cosine
# schedule re-planned to end at epoch 28 (how the first session's CPU time was fitted), then 54 more
# epochs from its best weights with a fresh schedule and lighter erasing (the second session; see README).
train:
	fer-train --data $(FER_DATA_DIR)/datasets/fer2013 --out runs/w025 --width 0.25 --dropout 0.1 --epochs 40 --seed 0 --stop-after 13
	fer-train --out runs/w025 --resume --epochs 28
	fer-train --data $(FER_DATA_DIR)/datasets/fer2013 --out runs/w025-long --init runs/w025/best.pt --width 0.25 \
		--dropout 0.1 --lr 0.02 --epochs 54 --erase-probability 0.25 --seed 1

run-server:
	fer-server

run-client:
	fer-client --server 127.0.0.1:50051 --source 0
