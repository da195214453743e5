"""The model file: weights plus the metadata needed to use them, and `load_model` for inference.

One format for everything we ship or evaluate: a torch.save'd dict with
  format      "ferstream-emotion-v1"
  arch        ArchSpec fields (rebuilds the network)
  state_dict  the weights
  meta        class names, input size and normalisation, training command and data, metrics,
              and the sha256 of the weights (checked on load)
Training checkpoints (last.pt) are this plus optimiser state, so either loads here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .labels import EMOTIONS
from .architectures import ArchSpec, build_model, count_parameters, fold_batch_norm

FORMAT = "ferstream-emotion-v1"
INPUT_SIZE = 48
# Fixed normalisation of uint8 grey: (x / 255 - MEAN) / STD.
MEAN = 0.5
STD = 0.25
SHIPPED_MODEL = Path(__file__).parent / "shipped" / "ferstream-emotion.pt"


def default_model_path() -> Path:
    return Path(os.environ.get("FER_MODEL", SHIPPED_MODEL))


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_payload(model: nn.Module, spec: ArchSpec, meta: dict[str, Any]) -> dict[str, Any]:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {
        "class_names": list(EMOTIONS),
        "input_size": INPUT_SIZE,
        "normalization": {"mean": MEAN, "std": STD},
        **meta,
        "weights_sha256": weights_sha256(state),
    }
    return {"format": FORMAT, "arch": spec.to_dict(), "state_dict": state, "meta": meta}


def save_model(path: str | os.PathLike, model: nn.Module, spec: ArchSpec, meta: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(model_payload(model, spec, meta), temporary)
    temporary.replace(path)


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file, with long explanations
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable model file ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ferstream model file (expected format {FORMAT})")
    return payload


def to_input_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, 48, 48) uint8 grey crops -> (N, 1, 48, 48) normalised float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).unsqueeze(1).float()
    return (x / 255.0 - MEAN) / STD


@dataclass
class EmotionClassifier:
    """A loaded model: call it on (N, 48, 48) uint8 grey crops to get (N, 7) probabilities."""

    network: nn.Module
    spec: ArchSpec
    meta: dict[str, Any]
    path: str
    # The trained network's count, which folding batch norm for inference does not change.
    parameters: int = 0

    def __post_init__(self) -> None:
        self.parameters = self.parameters or count_parameters(self.network)

    def for_inference(self) -> EmotionClassifier:
        """This model as the server runs it: batch norm folded into the convolutions (same outputs, faster).

        Keep the original for fine-tuning or export; the returned one cannot be trained.
        """
        return replace(self, network=fold_batch_norm(self.network))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @torch.inference_mode()
    def logits(self, crops: np.ndarray) -> torch.Tensor:
        if crops.ndim != 3 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}) crops, got {crops.shape}")
        return self.network(to_input_tensor(crops).contiguous(memory_format=torch.channels_last))

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return torch.softmax(self.logits(crops), dim=1).numpy()


def load_model(path: str | os.PathLike | None = None) -> EmotionClassifier:
    """The model at path (default: the shipped model), ready for inference on the CPU."""
    path = Path(path) if path is not None else default_model_path()
    payload = read_payload(path)
    spec = ArchSpec(**payload["arch"])
    state = payload["state_dict"]
    expected = payload["meta"].get("weights_sha256")
    if expected and weights_sha256(state) != expected:
        raise ValueError(f"{path}: weights do not match their recorded sha256")
    network = build_model(spec)
    network.load_state_dict(state)
    network.eval()
    return EmotionClassifier(network=network, spec=spec, meta=payload["meta"], path=str(path))
