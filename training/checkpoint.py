"""OUT/last.pt: a model file whose training_state section lets `fer-train --resume` continue bit for bit.

The model file holds the EMA weights (what best.pt and final.pt hold too, so `load_model` reads every
file the trainer writes); the training_state section adds what the next epoch needs:

  config      the run's TrainConfig fields
  epoch       the last finished epoch, 0-based
  model       the raw (non-EMA) weights SGD updates
  ema         the EMA's state (its weights and the number of updates averaged)
  optimizer   SGD's state (momentum buffers)
  history     one row per finished epoch (the metrics.json rows)
  rng         the torch and NumPy global generators, which shuffle, augment and drop out
  provenance  the chain of commands so far, this one's record closed at this epoch

Beside it, OUT/resume.pt is the compact form the repository can hold when a stage stops part-way (a
width-0.25 network: 1.7 MB; width 0.5: about 7 MB, against 53 MB for its last.pt): the EMA weights in
float16 and the same section without model, ema and optimizer. Resuming from it (`--resume` when OUT has
no last.pt) loses SGD's own weights (it continues from the EMA weights), its momentum (it restarts at
zero) and the weights' float32 digits; the schedule, the history, the generators and the chain of
commands continue exactly.

Checkpoints written before this format (`torch.save` of a dict with config, epoch, model, ema,
optimizer, history, torch_rng, numpy_rng and command) are read too, so a run started with the old code
continues with this one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferstream.model.archspec import ArchSpec
from ferstream.model.modelfile import read_payload, read_training_state, save_model
from ferstream.model.preprocess import Preprocessing

from .provenance import chain_of

# The keys of a pre-format checkpoint (git show 0faf6fe:training/train.py, `checkpoint = {...}`).
LEGACY_KEYS = frozenset({"config", "epoch", "model", "ema", "optimizer", "history", "torch_rng", "numpy_rng",
                         "command"})


@dataclass
class Checkpoint:
    """A resumable training state, read from either format. Fields as in the module docstring."""

    config: dict[str, Any]
    epoch: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    history: list[dict[str, float]]
    rng: dict[str, Any]
    provenance: list[dict[str, Any]]
    legacy: bool = False  # read from a pre-format checkpoint
    compact: bool = False  # read from a resume.pt: model holds the EMA weights; ema and optimizer are empty


LAST = "last.pt"
COMPACT = "resume.pt"


def resumable(out: Path) -> Path:
    """The checkpoint --resume continues in out: last.pt, else the compact resume.pt, else last.pt (missing)."""
    return out / COMPACT if not (out / LAST).is_file() and (out / COMPACT).is_file() else out / LAST


def capture_rng() -> dict[str, Any]:
    """The torch and NumPy global generator states, in types a weights-only torch.load reads back."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}


def restore_rng(rng: dict[str, Any]) -> None:
    """Set the torch and NumPy global generators to a capture_rng() state."""
    torch.set_rng_state(rng["torch"])
    state = rng["numpy"]
    np.random.set_state((state["kind"], state["keys"].numpy().astype(np.uint32), state["position"],
                         state["has_gauss"], state["cached_gaussian"]))


def write_checkpoint(path: Path, network: torch.nn.Module, spec: ArchSpec, preprocessing: Preprocessing,
                     meta: dict[str, Any], state: Checkpoint) -> None:
    """Write path as a model file of network (the EMA weights) with state as its training_state section.

    save_model writes a temporary file and renames it, so a run killed while writing keeps the last one.
    """
    training_state = {"config": state.config, "epoch": state.epoch, "model": state.model, "ema": state.ema,
                      "optimizer": state.optimizer, "history": state.history, "rng": state.rng,
                      "provenance": state.provenance}
    save_model(path, network, spec, preprocessing, meta, training_state=training_state)


def write_compact(path: Path, network: torch.nn.Module, spec: ArchSpec, preprocessing: Preprocessing,
                  meta: dict[str, Any], state: Checkpoint) -> None:
    """Write path as the compact resume.pt of state (module docstring): network (the EMA module) in float16,
    the training_state section without model, ema and optimizer."""
    training_state = {"config": state.config, "epoch": state.epoch, "history": state.history, "rng": state.rng,
                      "provenance": state.provenance, "compact": True}
    save_model(path, copy.deepcopy(network).half(), spec, preprocessing, meta, training_state=training_state)


def read_checkpoint(path: Path) -> Checkpoint:
    """The training state in path, a last.pt of either format.

    FileNotFoundError when path is missing; ValueError when it is neither a model file with a
    training_state section nor a pre-format checkpoint.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume")
    try:
        state = read_training_state(path)
    except ValueError as error:
        legacy = read_legacy(path)
        if legacy is None:
            raise error from None
        return legacy
    if state.get("compact"):
        weights = {name: tensor.float() if tensor.is_floating_point() else tensor
                   for name, tensor in read_payload(path)["state_dict"].items()}
        return Checkpoint(config=state["config"], epoch=state["epoch"], model=weights, ema={}, optimizer={},
                          history=state["history"], rng=state["rng"], provenance=state["provenance"], compact=True)
    return Checkpoint(config=state["config"], epoch=state["epoch"], model=state["model"], ema=state["ema"],
                      optimizer=state["optimizer"], history=state["history"], rng=state["rng"],
                      provenance=state["provenance"])


def read_legacy(path: Path) -> Checkpoint | None:
    """A pre-format checkpoint's state, or None when path is not one.

    Read weights-only, with NumPy's array types allowed for the stored generator state, so a file
    cannot run code while it loads.
    """
    from numpy._core.multiarray import _reconstruct

    allowed = [_reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]
    try:
        with torch.serialization.safe_globals(allowed):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a file that is not this pickle
        return None
    if not isinstance(payload, dict) or set(payload) != LEGACY_KEYS:
        return None
    kind, keys, position, has_gauss, cached_gaussian = payload["numpy_rng"]
    rng = {"torch": payload["torch_rng"],
           "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                     "position": int(position), "has_gauss": int(has_gauss),
                     "cached_gaussian": float(cached_gaussian)}}
    return Checkpoint(config=payload["config"], epoch=payload["epoch"], model=payload["model"], ema=payload["ema"],
                      optimizer=payload["optimizer"], history=payload["history"], rng=rng,
                      provenance=chain_of({"training_command": payload["command"]}), legacy=True)

